// A webhook receiver written the way a customer would: a real HTTP server (node:http) that checks
// every request with the `standardwebhooks` package (written by others, not by us) before it
// accepts it. 2xx only for a delivery whose signature and timestamp verify.

import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface ReceivedDelivery {
  readonly headers: Record<string, string>;
  readonly body: string;
  /** Undefined when the signature verified; else the verification error's message. */
  readonly rejected: string | undefined;
}

export class VerifyingReceiver {
  readonly received: ReceivedDelivery[] = [];
  url = '';
  readonly #server: Server;
  readonly #verifiers: Webhook[];

  /** `secrets`: the receiver accepts a delivery signed with any of them (`whsec_…`). */
  constructor(secrets: readonly string[]) {
    this.#verifiers = secrets.map((s) => new Webhook(s));
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const headers = flatten(req.headers);
        const rejected = this.check(body, headers);
        this.received.push({ headers, body, rejected });
        res.statusCode = rejected === undefined ? 204 : 401;
        res.end();
      });
    });
  }

  /** The receiver's check, usable on a recorded delivery with a changed body or headers. */
  check(body: string, headers: Record<string, string>): string | undefined {
    let last = 'no secret';
    for (const verifier of this.#verifiers) {
      try {
        verifier.verify(body, headers);
        return undefined;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
    }
    return last;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = this.#server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}/hook`;
  }

  verified(): ReceivedDelivery[] {
    return this.received.filter((r) => r.rejected === undefined);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function flatten(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (typeof v === 'string') out[k] = v;
    else if (Array.isArray(v)) out[k] = v.join(', ');
  }
  return out;
}
