import { appendFile } from 'node:fs/promises';
import type { SummaryNotification } from '../orders/summary.js';
import type { WebhookSigner } from './webhook-signature.js';

/** What a delivery attempt came to. */
export type DeliveryResult =
  | { readonly kind: 'delivered' }
  /** Transient (5xx, timeout, network): try again later with the same idempotency key. */
  | { readonly kind: 'retry'; readonly reason: string }
  /** The receiver refused it for good (4xx): dead-letter it with the status. */
  | { readonly kind: 'rejected'; readonly status: number; readonly reason: string };

export interface NotificationSink {
  readonly name: string;
  deliver(summary: SummaryNotification): Promise<DeliveryResult>;
}

const DELIVERED: DeliveryResult = { kind: 'delivered' };

/** One JSON object per line on stdout. */
export function stdoutSink(
  write: (line: string) => void = (l) => process.stdout.write(l),
): NotificationSink {
  return {
    name: 'stdout',
    deliver: (summary) => {
      write(`${JSON.stringify(summary)}\n`);
      return Promise.resolve(DELIVERED);
    },
  };
}

/** Appends one JSON object per line to a file. */
export function fileSink(path: string): NotificationSink {
  return {
    name: 'file',
    deliver: async (summary) => {
      await appendFile(path, `${JSON.stringify(summary)}\n`);
      return DELIVERED;
    },
  };
}

export interface WebhookOptions {
  /** Signs every delivery (Standard Webhooks); unsigned when undefined. */
  readonly signer?: WebhookSigner;
  /** Seconds since the epoch, for `webhook-timestamp`. */
  readonly now?: () => number;
}

/**
 * HTTP POST of the summary as JSON with `Idempotency-Key: <summaryId>`: every repeat of a summary
 * (retries, redeliveries after a crash, replays) carries the same key, so the receiver can drop
 * repeats. With a signer, each attempt is signed following Standard Webhooks (`webhook-id` =
 * summaryId, `webhook-timestamp` = the attempt's time, `webhook-signature`), so the receiver can
 * check that it comes from us and is recent. 2xx = delivered; 408, 429 and 5xx, timeouts and
 * network errors = retry; other 4xx = rejected for good.
 */
export function webhookSink(
  url: string,
  timeoutMs: number,
  options: WebhookOptions = {},
): NotificationSink {
  const now = options.now ?? (() => Math.floor(Date.now() / 1000));
  return {
    name: 'webhook',
    deliver: async (summary) => {
      const body = JSON.stringify(summary);
      let response: Response;
      try {
        response = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'idempotency-key': summary.summaryId,
            ...options.signer?.headers(summary.summaryId, now(), body),
          },
          body,
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        return {
          kind: 'retry',
          reason: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
        };
      }
      // Drain the body so the connection can be reused.
      await response.arrayBuffer().catch(() => undefined);
      if (response.ok) return DELIVERED;
      if (response.status >= 500 || response.status === 408 || response.status === 429) {
        return { kind: 'retry', reason: `HTTP ${response.status}` };
      }
      return { kind: 'rejected', status: response.status, reason: `HTTP ${response.status}` };
    },
  };
}
