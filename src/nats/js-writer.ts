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
  PermissionViolationError,
  TimeoutError,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
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
  /**
   * At most this many writes wait for their ack; more wait here, in order. A server processes
   * a connection's messages in order, so a lease renewal sent behind thousands of writes waits
   * for all of them: at 128 partitions checkpointing at once, uncapped, renewals came back
   * after the lease had lapsed. The cap keeps that wait to a fraction of a second.
   */
  readonly #maxInFlight: number;
  #queued: Write[] = [];
  #queuedHead = 0;
  #next = 0;
  #sub: Subscription | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    nc: NatsConnection,
    options: {
      readonly timeoutMs: number;
      readonly inboxPrefix?: string;
      /** Writes awaiting their ack at once (default 1024). */
      readonly maxInFlight?: number;
    },
  ) {
    this.#nc = nc;
    this.#timeoutMs = options.timeoutMs;
    this.#maxInFlight = Math.max(1, options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT);
    // The connection's own inbox prefix: role permissions allow replies only below it.
    this.#base = `${createInbox(options.inboxPrefix ?? connectionInboxPrefix(nc))}.`;
  }

  /** Writes one message to a stream; resolves with its ack. */
  publish(subject: string, data: Uint8Array, headers?: MsgHdrs): Promise<PubAck> {
    if (this.#closed || this.#nc.isClosed()) return Promise.reject(new ClosedConnectionError());
    this.#open();
    return new Promise<PubAck>((resolve, reject) => {
      const write: Write = { subject, data, headers, resolve, reject };
      if (this.#pending.size < this.#maxInFlight) this.#send(write);
      else this.#queued.push(write);
    });
  }

  #send(write: Write): void {
    const token = ++this.#next;
    // The deadline counts from the send: time spent queued here is ours, not the server's.
    this.#pending.set(token, {
      resolve: write.resolve,
      reject: write.reject,
      subject: write.subject,
      deadline: Date.now() + this.#timeoutMs,
    });
    try {
      this.#nc.publish(
        write.subject,
        write.data,
        write.headers === undefined
          ? { reply: this.#base + token }
          : { reply: this.#base + token, headers: write.headers },
      );
    } catch (err) {
      this.#pending.delete(token);
      write.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Sends queued writes while there is room (after replies and timeouts free some). */
  #sendQueued(): void {
    while (this.#pending.size < this.#maxInFlight && this.#queuedHead < this.#queued.length) {
      const write = this.#queued[this.#queuedHead++];
      if (write !== undefined) this.#send(write);
    }
    if (this.#queuedHead === this.#queued.length) {
      this.#queued.length = 0;
      this.#queuedHead = 0;
    } else if (this.#queuedHead > 1024 && this.#queuedHead * 2 > this.#queued.length) {
      this.#queued = this.#queued.slice(this.#queuedHead);
      this.#queuedHead = 0;
    }
  }

  /** Stops the sweep and the reply subscription; writes still waiting fail as closed. Idempotent. */
  close(): void {
    if (this.#closed) return;
    try {
      this.#sub?.unsubscribe();
    } finally {
      this.#ended(new ClosedConnectionError());
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
    // A publish this user may not make is refused asynchronously, on the connection's status,
    // naming the subject: fail the oldest write to it, as nats.js fails the matching request,
    // rather than let it time out and be retried as if the server were slow.
    // Owned by the connection: the feed ends when it closes; a closed writer leaves at the
    // next status (the loop's break returns the iterator).
    (async () => {
      for await (const s of this.#nc.status()) {
        if (this.#closed) break;
        if (s.type === 'error' && s.error instanceof PermissionViolationError)
          this.#refused(s.error);
      }
    })().catch((err: unknown) => {
      // The status feed itself failed: writes still time out, only the refusal is slower.
      this.#failAll(err instanceof Error ? err : new Error(String(err)));
    });
  }

  #refused(err: PermissionViolationError): void {
    if (err.operation !== 'publish') return; // a refused subscription reaches its callback
    for (const [token, waiter] of this.#pending) {
      if (waiter.subject !== err.subject) continue;
      this.#pending.delete(token);
      waiter.reject(err);
      this.#sendQueued();
      return;
    }
  }

  #reply(msg: Msg): void {
    const token = Number(msg.subject.slice(this.#base.length));
    const waiter = this.#pending.get(token);
    if (waiter === undefined) return; // answered after its deadline: already failed as a timeout
    this.#pending.delete(token);
    this.#sendQueued();
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
    this.#sendQueued();
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
    for (let i = this.#queuedHead; i < this.#queued.length; i++) this.#queued[i]?.reject(err);
    this.#queued = [];
    this.#queuedHead = 0;
  }
}

/**
 * The inbox prefix the connection was made with, where nats.js keeps it (its connection's
 * `options`): a writer on a connection it did not make (the publisher SDK's) must reply below
 * the same prefix as the connection's own requests, which is all a restricted role may use.
 */
function connectionInboxPrefix(nc: NatsConnection): string | undefined {
  if (!('options' in nc)) return undefined;
  const options: unknown = nc.options;
  if (typeof options !== 'object' || options === null || !('inboxPrefix' in options))
    return undefined;
  return typeof options.inboxPrefix === 'string' ? options.inboxPrefix : undefined;
}

const DEFAULT_MAX_IN_FLIGHT = 1024;

interface Write {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  readonly resolve: (ack: PubAck) => void;
  readonly reject: (err: Error) => void;
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

/**
 * The writes a customer store and a timer index make, with nats.js KV's outcomes (a nats.js
 * bucket is one as it is).
 */
export interface KvWrites {
  /** Writes only if the key has no entry (or a deleted one); returns the new revision. */
  create(key: string, data: Uint8Array): Promise<number>;
  /** Writes only if the key is at `revision`; returns the new revision. */
  update(key: string, data: Uint8Array, revision: number): Promise<number>;
  put(key: string, data: Uint8Array): Promise<number>;
  delete(key: string): Promise<void>;
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
