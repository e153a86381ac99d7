// A TCP relay between one worker and every NATS node, so the harness can cut that worker off the
// network without touching the others. A cut behaves like a partition that heals before TCP gives
// up: bytes stop flowing both ways (nothing is read, so the kernel buffers fill and senders stall),
// nothing is dropped, and no close or reset crosses the cut. On heal everything flows again,
// including whatever the worker wrote while cut off (a zombie's late writes, which fencing must
// reject), and closes that happened meanwhile are passed on.

import { createServer, connect, type Server, type Socket } from 'node:net';

interface Pair {
  readonly client: Socket;
  readonly upstreamPort: number;
  upstream: Socket | undefined;
  /** A side closed during a cut: close the other one when the cut heals. */
  closedDuringCut: boolean;
}

export interface RelayListener {
  /** `nats://127.0.0.1:<port>` the worker connects to. */
  readonly url: string;
  readonly upstreamPort: number;
}

export class TcpRelay {
  readonly #servers: Server[] = [];
  readonly #pairs = new Set<Pair>();
  readonly #listeners: RelayListener[] = [];
  #cut = false;
  #closed = false;

  private constructor() {}

  /** Listens on a free loopback port for each upstream port. */
  static async start(upstreamPorts: readonly number[]): Promise<TcpRelay> {
    const relay = new TcpRelay();
    try {
      for (const port of upstreamPorts) await relay.#listen(port);
    } catch (err) {
      await relay.close();
      throw err;
    }
    return relay;
  }

  get listeners(): readonly RelayListener[] {
    return this.#listeners;
  }

  /** Comma-separated URLs for NATS_URL. */
  get url(): string {
    return this.#listeners.map((l) => l.url).join(',');
  }

  get isCut(): boolean {
    return this.#cut;
  }

  /** Connections currently relayed (for the report). */
  get connections(): number {
    return this.#pairs.size;
  }

  cut(): void {
    if (this.#cut || this.#closed) return;
    this.#cut = true;
    for (const pair of this.#pairs) {
      pair.client.pause();
      pair.upstream?.pause();
    }
  }

  heal(): void {
    if (!this.#cut) return;
    this.#cut = false;
    for (const pair of [...this.#pairs]) {
      if (pair.closedDuringCut) {
        this.#destroy(pair);
        continue;
      }
      if (pair.upstream === undefined) this.#connectUpstream(pair);
      else {
        pair.client.resume();
        pair.upstream.resume();
      }
    }
  }

  /** Stops listening and destroys every relayed connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const pair of [...this.#pairs]) this.#destroy(pair);
    await Promise.all(
      this.#servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            // close() only fails when the server is not listening, which is fine here.
            s.close(() => resolve());
          }),
      ),
    );
  }

  #listen(upstreamPort: number): Promise<void> {
    const server = createServer({ pauseOnConnect: true }, (client) =>
      this.#accept(client, upstreamPort),
    );
    this.#servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => {
        const address = server.address();
        if (address === null || typeof address === 'string') {
          reject(new Error('relay listener has no port'));
          return;
        }
        this.#listeners.push({ url: `nats://127.0.0.1:${address.port}`, upstreamPort });
        resolve();
      });
    });
  }

  #accept(client: Socket, upstreamPort: number): void {
    if (this.#closed) {
      client.destroy();
      return;
    }
    const pair: Pair = { client, upstreamPort, upstream: undefined, closedDuringCut: false };
    this.#pairs.add(pair);
    client.on('error', () => this.#sideClosed(pair));
    client.on('close', () => this.#sideClosed(pair));
    // While cut, a new connection is accepted (the worker's SYN gets an answer from the relay)
    // but nothing reaches the server until the cut heals.
    if (!this.#cut) this.#connectUpstream(pair);
  }

  #connectUpstream(pair: Pair): void {
    const upstream = connect({ host: '127.0.0.1', port: pair.upstreamPort });
    pair.upstream = upstream;
    upstream.on('error', () => this.#sideClosed(pair));
    upstream.on('close', () => this.#sideClosed(pair));
    upstream.once('connect', () => {
      if (!this.#pairs.has(pair)) {
        upstream.destroy();
        return;
      }
      this.#forward(pair.client, upstream);
      this.#forward(upstream, pair.client);
      if (this.#cut) upstream.pause();
      else pair.client.resume();
    });
  }

  /**
   * Copies bytes with backpressure. Not `pipe()`: a pipe resumes its source on the
   * destination's 'drain', which would let bytes through a cut.
   */
  #forward(from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (to.write(chunk)) return;
      from.pause();
      to.once('drain', () => {
        if (!this.#cut) from.resume();
      });
    });
  }

  #sideClosed(pair: Pair): void {
    if (!this.#pairs.has(pair)) return;
    if (this.#cut && !this.#closed) {
      pair.closedDuringCut = true;
      return;
    }
    this.#destroy(pair);
  }

  #destroy(pair: Pair): void {
    this.#pairs.delete(pair);
    pair.client.destroy();
    pair.upstream?.destroy();
  }
}
