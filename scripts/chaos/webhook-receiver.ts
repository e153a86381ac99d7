// A local HTTP endpoint for the notifier's webhook sink. It records every request (idempotency
// key, body, what it answered) and refuses a seeded fraction of them with 503, so that the
// notifier's retries, and therefore repeats of a key, are part of every run.

import { createServer, type Server } from 'node:http';
import { rng } from '../../test/support/model.js';

export interface Delivery {
  /** Order of arrival, from 1. */
  readonly n: number;
  readonly atMs: number;
  readonly key: string | undefined;
  /** The raw body (compared byte for byte between repeats) and its parse, if it was JSON. */
  readonly raw: string;
  readonly body: unknown;
  /** True when answered 2xx (the notifier counts it delivered); false for an injected 503. */
  readonly accepted: boolean;
}

export class WebhookReceiver {
  readonly #deliveries: Delivery[] = [];
  readonly #server: Server;
  readonly #refuse: () => boolean;
  #url = '';

  private constructor(failureRate: number, seed: number) {
    const random = rng(seed ^ 0x5eed);
    this.#refuse = () => failureRate > 0 && random() < failureRate;
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(raw) as unknown;
        } catch {
          // Not JSON: kept as raw text; the model's delivery check reports it.
          body = undefined;
        }
        const keyHeader = req.headers['idempotency-key'];
        const accepted = !this.#refuse();
        this.#deliveries.push({
          n: this.#deliveries.length + 1,
          atMs: Date.now(),
          key: Array.isArray(keyHeader) ? keyHeader.join(',') : keyHeader,
          raw,
          body,
          accepted,
        });
        res.writeHead(accepted ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(accepted ? 'ok\n' : 'try again\n');
      });
    });
  }

  static async start(opts: { failureRate: number; seed: number }): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver(opts.failureRate, opts.seed);
    await new Promise<void>((resolve, reject) => {
      receiver.#server.once('error', reject);
      receiver.#server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
    });
    const address = receiver.#server.address();
    if (address === null || typeof address === 'string') throw new Error('receiver has no port');
    receiver.#url = `http://127.0.0.1:${address.port}/summaries`;
    return receiver;
  }

  get url(): string {
    return this.#url;
  }

  get deliveries(): readonly Delivery[] {
    return this.#deliveries;
  }

  /** Distinct keys that were accepted at least once. */
  acceptedKeys(): Set<string> {
    const keys = new Set<string>();
    for (const d of this.#deliveries) if (d.accepted && d.key !== undefined) keys.add(d.key);
    return keys;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => {
      // close() fails only when not listening, which is fine on a second call.
      this.#server.close(() => resolve());
    });
  }
}
