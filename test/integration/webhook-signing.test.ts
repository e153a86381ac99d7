// Signed webhooks (Standard Webhooks) from the notifier's webhook sink to a real HTTP receiver
// that verifies with the `standardwebhooks` package: every delivery verifies, with either of two
// secrets during a rotation; a tampered body, a tampered id and an old timestamp are rejected.
// The notifier process end to end (NATS, worker, notifier) is covered in roles.test.ts.

import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { webhookSink } from '../../src/notifications/sinks.js';
import { decodeWebhookSecret, webhookSigner } from '../../src/notifications/webhook-signature.js';
import type { SummaryNotification } from '../../src/orders/summary.js';
import { VerifyingReceiver } from '../support/webhook-receiver.js';

const newSecret = (): string => `whsec_${randomBytes(32).toString('base64')}`;

function summary(n: number): SummaryNotification {
  return {
    summaryId: `sum-${n}`,
    customerId: `cust-${n}`,
    added: [n, n + 1],
    removed: [],
    contents: [n, n + 1],
    firstSeq: n,
    lastSeq: n + 1,
    openedAt: '2026-12-01T10:00:00.000Z',
    closedAt: '2026-12-01T10:00:30.000Z',
    reason: 'quiet',
  };
}

const receivers: VerifyingReceiver[] = [];
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

async function receiver(secrets: readonly string[]): Promise<VerifyingReceiver> {
  const r = new VerifyingReceiver(secrets);
  await r.start();
  receivers.push(r);
  return r;
}

describe('webhook sink: Standard Webhooks signatures', () => {
  it('signs every delivery so that a standardwebhooks receiver verifies it, with the idempotency key', async () => {
    const secret = newSecret();
    const r = await receiver([secret]);
    const sink = webhookSink(r.url, 5000, {
      signer: webhookSigner([decodeWebhookSecret(secret, 'test')]),
    });
    for (let n = 1; n <= 20; n++)
      expect(await sink.deliver(summary(n))).toEqual({ kind: 'delivered' });
    expect(r.received).toHaveLength(20);
    expect(r.verified()).toHaveLength(20);
    for (const [i, d] of r.received.entries()) {
      expect(d.headers['webhook-id']).toBe(`sum-${i + 1}`);
      expect(d.headers['idempotency-key']).toBe(`sum-${i + 1}`);
      expect(JSON.parse(d.body)).toEqual(summary(i + 1));
    }
  });

  it('rejects a tampered body, a tampered id and a signature by another secret', async () => {
    const secret = newSecret();
    const r = await receiver([secret]);
    const sink = webhookSink(r.url, 5000, {
      signer: webhookSigner([decodeWebhookSecret(secret, 'test')]),
    });
    await sink.deliver(summary(7));
    const [delivery] = r.received;
    if (delivery === undefined) throw new Error('nothing received');
    expect(r.check(delivery.body, delivery.headers)).toBeUndefined();
    const tampered = delivery.body.replace('"added":[7,8]', '"added":[7,9]');
    expect(tampered).not.toBe(delivery.body);
    expect(r.check(tampered, delivery.headers)).toBeDefined();
    expect(r.check(delivery.body, { ...delivery.headers, 'webhook-id': 'sum-8' })).toBeDefined();
    const stranger = await receiver([newSecret()]);
    expect(stranger.check(delivery.body, delivery.headers)).toBeDefined();
  });

  it('an old timestamp is rejected by the receiver, and the sink files that as a refusal', async () => {
    const secret = newSecret();
    const r = await receiver([secret]);
    const sink = webhookSink(r.url, 5000, {
      signer: webhookSigner([decodeWebhookSecret(secret, 'test')]),
      now: () => Math.floor(Date.now() / 1000) - 3600,
    });
    expect(await sink.deliver(summary(1))).toMatchObject({ kind: 'rejected', status: 401 });
    expect(r.received).toHaveLength(1);
    expect(r.verified()).toHaveLength(0);
  });

  it('rotation: signed with two secrets at once, a receiver holding either one verifies', async () => {
    const oldSecret = newSecret();
    const newOne = newSecret();
    const onOld = await receiver([oldSecret]);
    const onNew = await receiver([newOne]);
    const signer = webhookSigner([oldSecret, newOne].map((s) => decodeWebhookSecret(s, 'test')));
    for (const r of [onOld, onNew]) {
      expect(await webhookSink(r.url, 5000, { signer }).deliver(summary(3))).toEqual({
        kind: 'delivered',
      });
      const signature = r.received[0]?.headers['webhook-signature'] ?? '';
      expect(signature.split(' ')).toHaveLength(2);
      expect(signature.split(' ').every((s) => s.startsWith('v1,'))).toBe(true);
    }
  });

  it('refuses a malformed secret without repeating it', () => {
    const bad = 'whsec_not base64!';
    let message = '';
    try {
      decodeWebhookSecret(bad, 'NOTIFIER_WEBHOOK_SECRET');
    } catch (err) {
      message = err instanceof Error ? err.message : String(err);
    }
    expect(message).toContain('NOTIFIER_WEBHOOK_SECRET');
    expect(message).not.toContain('not base64');
  });
});
