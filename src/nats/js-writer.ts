import {
  JetStreamApiError,
  JetStreamError,
  PubHeaders,
  type ApiError,
  type PubAck,
} from '@nats-io/jetstream';
import {
  ClosedConnectionError,
  createInbox,
  headers as natsHeaders,
  NoRespondersError,
  TimeoutError,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import type { KV } from '@nats-io/kv';
import { isWrongLastSequence } from './errors.js';

/**
 * JetStream writes (stream publishes, and KV puts and deletes, which are stream publishes too)
 * whose acknowledgements come back on one reply subscription, matched by a token.
 *
 * Why not `js.publish`: nats.js makes every write a request, and each request costs a mux entry,
 * a timer, a `Promise.race` and an `Error` with a captured stack even when it succeeds (its
 * `cancel()` builds a "cancelled" RequestError after every reply). A worker writes each dirty
 * customer, its timer-index entry and every summary: at 100k customers the CPU profile showed
 * those Errors alone at a tenth of the worker's time, and the garbage they leave at a good part
 * of the third spent collecting. Here a write costs one map entry and one publish, and one sweep
 * per interval times out whatever went unanswered.
 *
 * Same protocol and the same outcomes as nats.js: the ack's JSON, a JetStream error as a
 * {@link JetStreamApiError} with its code (so {@link isWrongLastSequence} and the transient-code
 * predicates work unchanged), no responders as {@link NoRespondersError}, a missing ack as
 * {@link TimeoutError}, a closed connection as {@link ClosedConnectionError}.
 */
export class JetStreamWriter {
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;
  readonly #base: string;
  /** Token → waiter, in send order (a Map iterates in insertion order): the sweep's queue. */
  readonly #pending = new Map<number, Pending>();
  #next = 0;
  #sub: Subscription | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    nc: NatsConnection,
    options: { readonly timeoutMs: number; readonly inboxPrefix?: string },
  ) {
    this.#nc = nc;
    this.#timeoutMs = options.timeoutMs;
    // The connection's own inbox prefix: role permissions allow replies only below it.
    this.#base = `${createInbox(options.inboxPrefix)}.`;
  }

  /** Writes one message to a stream; resolves with its ack. */
  publish(subject: string, data: Uint8Array, headers?: MsgHdrs): Promise<PubAck> {
    if (this.#closed || this.#nc.isClosed()) return Promise.reject(new ClosedConnectionError());
    this.#open();
    const token = ++this.#next;
    return new Promise<PubAck>((resolve, reject) => {
      this.#pending.set(token, {
        resolve,
        reject,
        subject,
        deadline: Date.now() + this.#timeoutMs,
      });
      try {
        this.#nc.publish(
          subject,
          data,
          headers === undefined
            ? { reply: this.#base + token }
            : { reply: this.#base + token, headers },
        );
      } catch (err) {
        this.#pending.delete(token);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  /** Stops the sweep and the reply subscription; writes still waiting fail as closed. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    try {
      this.#sub?.unsubscribe();
    } finally {
      this.#failAll(new ClosedConnectionError());
    }
  }

  #open(): void {
    if (this.#sub !== undefined) return;
    const sub = this.#nc.subscribe(`${this.#base}*`, {
      callback: (err, msg) => {
        if (err !== null) this.#failAll(err);
        else this.#reply(msg);
      },
    });
    this.#sub = sub;
    // The subscription ends with the connection: nothing will answer what is still waiting.
    sub.closed.then(
      () => this.#ended(new ClosedConnectionError()),
      (err: unknown) => this.#ended(err instanceof Error ? err : new ClosedConnectionError()),
    );
    this.#sweep = setInterval(() => this.#expire(), Math.min(250, this.#timeoutMs));
    this.#sweep.unref();
  }

  #reply(msg: Msg): void {
    const token = Number(msg.subject.slice(this.#base.length));
    const waiter = this.#pending.get(token);
    if (waiter === undefined) return; // answered after its deadline: already failed as a timeout
    this.#pending.delete(token);
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      waiter.reject(new NoRespondersError(waiter.subject));
      return;
    }
    let ack: AckJson;
    try {
      ack = msg.json<AckJson>();
    } catch (err) {
      waiter.reject(new JetStreamError('unreadable ack response', { cause: err }));
      return;
    }
    if (ack.error !== undefined) waiter.reject(new JetStreamApiError(ack.error));
    else if (typeof ack.stream !== 'string' || ack.stream === '' || typeof ack.seq !== 'number')
      waiter.reject(new JetStreamError('invalid ack response'));
    else
      waiter.resolve({
        stream: ack.stream,
        seq: ack.seq,
        duplicate: ack.duplicate === true,
        domain: ack.domain ?? '',
      });
  }

  /** Fails every write whose deadline passed (sent in order, so the first live one ends it). */
  #expire(): void {
    const now = Date.now();
    for (const [token, waiter] of this.#pending) {
      if (waiter.deadline > now) break;
      this.#pending.delete(token);
      waiter.reject(new TimeoutError());
    }
  }

  /** The subscription is gone (connection closed): no reply can come, and no sweep is needed. */
  #ended(err: Error): void {
    this.#closed = true;
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#failAll(err);
  }

  #failAll(err: Error): void {
    for (const waiter of this.#pending.values()) waiter.reject(err);
    this.#pending.clear();
  }
}

interface Pending {
  readonly resolve: (ack: PubAck) => void;
  readonly reject: (err: Error) => void;
  readonly subject: string;
  readonly deadline: number;
}

interface AckJson {
  readonly stream?: string;
  readonly seq?: number;
  readonly duplicate?: boolean;
  readonly domain?: string;
  readonly error?: ApiError;
}

/**
 * The headers nats.js's `js.publish` sets for `msgID` and `expect.streamName`, plus any of the
 * caller's own: the message is stored once per id (inside the duplicate window) and only in
 * that stream.
 */
export function publishHeaders(opts: {
  readonly msgID?: string;
  readonly expectStream?: string;
  readonly extra?: Readonly<Record<string, string>>;
}): MsgHdrs {
  const h = natsHeaders();
  if (opts.msgID !== undefined) h.set(PubHeaders.MsgIdHdr, opts.msgID);
  if (opts.expectStream !== undefined) h.set(PubHeaders.ExpectedStreamHdr, opts.expectStream);
  for (const [name, value] of Object.entries(opts.extra ?? {})) h.set(name, value);
  return h;
}

/** The writes a customer store and a timer index make, with nats.js KV's outcomes. */
export interface KvWrites {
  /** Writes only if the key has no entry (or a deleted one); returns the new revision. */
  create(key: string, data: Uint8Array): Promise<number>;
  /** Writes only if the key is at `revision`; returns the new revision. */
  update(key: string, data: Uint8Array, revision: number): Promise<number>;
  put(key: string, data: Uint8Array): Promise<number>;
  delete(key: string): Promise<void>;
}

/** {@link KvWrites} straight on a nats.js bucket (tests, tools, and anything not on the hot path). */
export function kvWrites(kv: KV): KvWrites {
  return {
    create: (key, data) => kv.create(key, data),
    update: (key, data, revision) => kv.update(key, data, revision),
    put: (key, data) => kv.put(key, data),
    delete: (key) => kv.delete(key),
  };
}

const EMPTY = new Uint8Array(0);

/**
 * {@link KvWrites} on a plain bucket (`$KV.<bucket>.<key>`) through a {@link JetStreamWriter}.
 * Keys are the stores' own (built from validated ids), so nats.js's key validation is not
 * repeated. A create that finds a delete marker falls back to nats.js's `create`, which writes
 * over the marker on its revision: rare, and then the per-request cost does not matter.
 */
export class PipelinedKvWrites implements KvWrites {
  readonly #writer: JetStreamWriter;
  readonly #prefix: string;
  readonly #fallback: Pick<KvWrites, 'create'>;
  /** `KV-Operation: DEL`, shared: headers are encoded when published, never changed after. */
  readonly #deleteHeaders: MsgHdrs;

  constructor(writer: JetStreamWriter, bucket: string, fallback: Pick<KvWrites, 'create'>) {
    this.#writer = writer;
    this.#prefix = `$KV.${bucket}.`;
    this.#fallback = fallback;
    this.#deleteHeaders = natsHeaders();
    this.#deleteHeaders.set('KV-Operation', 'DEL');
  }

  async create(key: string, data: Uint8Array): Promise<number> {
    try {
      return (await this.#writer.publish(this.#prefix + key, data, expectLast(0))).seq;
    } catch (err) {
      if (!isWrongLastSequence(err)) throw err;
      return this.#fallback.create(key, data);
    }
  }

  async update(key: string, data: Uint8Array, revision: number): Promise<number> {
    if (revision <= 0) throw new RangeError('revision must be greater than 0');
    return (await this.#writer.publish(this.#prefix + key, data, expectLast(revision))).seq;
  }

  async put(key: string, data: Uint8Array): Promise<number> {
    return (await this.#writer.publish(this.#prefix + key, data)).seq;
  }

  async delete(key: string): Promise<void> {
    await this.#writer.publish(this.#prefix + key, EMPTY, this.#deleteHeaders);
  }
}

function expectLast(revision: number): MsgHdrs {
  const h = natsHeaders();
  h.set(PubHeaders.ExpectedLastSubjectSequenceHdr, String(revision));
  return h;
}
