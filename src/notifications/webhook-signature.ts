import { createHmac } from 'node:crypto';
import { ConfigError } from '../errors.js';

/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): the receiver recomputes
 * `base64(HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>"))` and compares it with
 * one of the space-separated `v1,<signature>` entries of `webhook-signature`. Signing with two
 * secrets at once lets a receiver move to a new secret without a window where deliveries fail.
 */
export interface WebhookSigner {
  /** Headers for one delivery; `timestampSec` is seconds since the epoch. */
  headers(id: string, timestampSec: number, body: string): Record<string, string>;
}

const PREFIX = 'whsec_';

/** Decodes `whsec_<base64>`; the error never repeats the value (it is a secret). */
export function decodeWebhookSecret(secret: string, variable: string): Buffer {
  const trimmed = secret.trim();
  const encoded = trimmed.startsWith(PREFIX) ? trimmed.slice(PREFIX.length) : trimmed;
  const key = /^[A-Za-z0-9+/]+={0,2}$/u.test(encoded) ? Buffer.from(encoded, 'base64') : undefined;
  if (key === undefined || key.length < 16) {
    throw new ConfigError(
      `${variable}: a webhook secret must be whsec_<base64 of at least 16 bytes>`,
      variable,
    );
  }
  return key;
}

export function webhookSigner(keys: readonly Buffer[]): WebhookSigner {
  if (keys.length === 0) throw new Error('webhookSigner needs at least one key');
  return {
    headers: (id, timestampSec, body) => {
      const timestamp = String(timestampSec);
      const content = `${id}.${timestamp}.${body}`;
      const signature = keys
        .map((key) => `v1,${createHmac('sha256', key).update(content).digest('base64')}`)
        .join(' ');
      return {
        'webhook-id': id,
        'webhook-timestamp': timestamp,
        'webhook-signature': signature,
      };
    },
  };
}
