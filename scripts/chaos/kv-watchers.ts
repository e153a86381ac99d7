// Watches the state and meta buckets for the whole run, as an outside observer: every customer
// write must keep lastSeq from going down, and every watermark write must come from the one runner
// that owns its epoch. A watch that breaks (a node dies under its consumer) resumes from the next
// revision, so nothing written is skipped.

import { setTimeout as sleep } from 'node:timers/promises';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { QueuedIterator } from '@nats-io/transport-node';
import { describeError } from '../../src/errors.js';
import type { ResourceNames } from '../../src/contract/names.js';
import { customerIdFromKey } from '../../src/state/keys.js';
import type { CustomerWrite } from './model.js';
import { VIOLATION_NAMES, type Violation } from './violations.js';

interface WatchStats {
  entries: number;
  lastRevision: number;
  restarts: number;
  lastError: string | undefined;
}

/** One key filter of one bucket, watched until stopped, resuming after failures. */
class ResilientWatch {
  readonly stats: WatchStats = { entries: 0, lastRevision: 0, restarts: 0, lastError: undefined };
  #iterator: QueuedIterator<KvWatchEntry> | undefined;
  #stopped = false;
  readonly done: Promise<void>;

  constructor(
    private readonly kv: KV,
    private readonly key: string,
    private readonly onEntry: (e: KvWatchEntry) => void,
  ) {
    this.done = this.#loop();
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      try {
        const resume = this.stats.lastRevision > 0 ? this.stats.lastRevision + 1 : undefined;
        this.#iterator = await this.kv.watch({
          key: this.key,
          ...(resume === undefined ? {} : { resumeFromRevision: resume }),
        });
        for await (const e of this.#iterator) {
          // An ordered consumer never goes backwards; a resume may repeat the last entry.
          if (e.revision <= this.stats.lastRevision) continue;
          this.stats.lastRevision = e.revision;
          this.stats.entries++;
          this.onEntry(e);
        }
      } catch (err) {
        // Expected while a node is down or the meta leader moves; resumed below.
        this.stats.lastError = describeError(err);
      }
      if (this.#stopped) break;
      this.stats.restarts++;
      await sleep(500);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#iterator?.stop();
    await this.done;
  }
}

/** One watermark write as the watch saw it. */
export interface WatermarkWrite {
  readonly revision: number;
  readonly seq: number;
  readonly epoch: number;
  readonly owner: string;
  readonly clean: boolean | undefined;
  /** The writer's own timestamp (`at`), for lining up with worker logs. */
  readonly at: string | undefined;
  /** When the watch saw it, ms since the start of the run. */
  readonly seenAtMs: number;
}

/** Watermark writes kept per partition for violation reports. */
const HISTORY = 12;

export interface WatchReport {
  readonly stateEntries: number;
  readonly watermarkEntries: number;
  readonly restarts: number;
  /** Revision of the last entry seen, per bucket. */
  readonly stateRevision: number;
  readonly metaRevision: number;
  readonly epochsSeen: number;
}

export class KvWatchers {
  readonly #violations: Violation[] = [];
  readonly #lastSeq = new Map<string, { lastSeq: number; revision: number }>();
  /** Every customer write seen, per customer id (for the model's diagnosis of a bad state). */
  readonly #writes = new Map<string, CustomerWrite[]>();
  /** partition → epoch → first writer of that epoch. */
  readonly #epochOwners = new Map<number, Map<number, string>>();
  readonly #watermarks = new Map<number, { seq: number; epoch: number; revision: number }>();
  /** The last writes of each partition's watermark, as evidence for a violation. */
  readonly #history = new Map<number, WatermarkWrite[]>();
  readonly #watches: ResilientWatch[];
  readonly #t0: number;
  readonly #stateKv: KV;
  readonly #metaKv: KV;

  private constructor(stateKv: KV, metaKv: KV, t0: number) {
    this.#t0 = t0;
    this.#stateKv = stateKv;
    this.#metaKv = metaKv;
    this.#watches = [
      new ResilientWatch(stateKv, '>', (e) => this.#onCustomer(e)),
      new ResilientWatch(metaKv, '>', (e) => this.#onWatermark(e)),
    ];
  }

  static async start(nc: NatsConnection, names: ResourceNames, t0: number): Promise<KvWatchers> {
    const kvm = new Kvm(nc);
    const [stateKv, metaKv] = await Promise.all([
      kvm.open(names.stateBucket),
      kvm.open(names.metaBucket),
    ]);
    return new KvWatchers(stateKv, metaKv, t0);
  }

  get violations(): readonly Violation[] {
    return this.#violations;
  }

  /** The last revision of each watched bucket: the watches have seen everything up to here. */
  async bucketRevisions(): Promise<{ state: number; meta: number }> {
    const [s, m] = await Promise.all([this.#stateKv.status(), this.#metaKv.status()]);
    return { state: s.streamInfo.state.last_seq, meta: m.streamInfo.state.last_seq };
  }

  /** The highest lastSeq written for each customer id, and the revision that wrote it. */
  highestLastSeq(): Map<string, { readonly lastSeq: number; readonly revision: number }> {
    const out = new Map<string, { lastSeq: number; revision: number }>();
    for (const [key, seen] of this.#lastSeq) {
      const customerId = customerIdFromKey(key);
      if (customerId !== undefined) out.set(customerId, seen);
    }
    return out;
  }

  /** Every customer write seen so far, per customer id, in revision order. */
  get writes(): ReadonlyMap<string, readonly CustomerWrite[]> {
    return this.#writes;
  }

  report(): WatchReport {
    const [state, meta] = this.#watches;
    let epochs = 0;
    for (const m of this.#epochOwners.values()) epochs += m.size;
    return {
      stateEntries: state?.stats.entries ?? 0,
      watermarkEntries: meta?.stats.entries ?? 0,
      restarts: this.#watches.reduce((n, w) => n + w.stats.restarts, 0),
      stateRevision: state?.stats.lastRevision ?? 0,
      metaRevision: meta?.stats.lastRevision ?? 0,
      epochsSeen: epochs,
    };
  }

  async stop(): Promise<void> {
    await Promise.all(this.#watches.map((w) => w.stop()));
  }

  #violation(v: Omit<Violation, 'atMs'>): void {
    this.#violations.push({ ...v, atMs: Date.now() - this.#t0 });
  }

  #onCustomer(e: KvWatchEntry): void {
    // The whole bucket is watched (so the last revision seen can be compared with the bucket's),
    // but only customer entries carry a lastSeq; timer index entries are skipped.
    if (e.operation !== 'PUT' || !e.key.startsWith('c.')) return;
    let value: { lastSeq?: unknown; state?: unknown };
    try {
      value = e.json<{ lastSeq?: unknown; state?: unknown }>() ?? {};
    } catch (err) {
      this.#violation({
        name: 'STATE_UNREADABLE',
        detail: `state entry ${e.key} (revision ${e.revision}) is not JSON: ${describeError(err)}`,
      });
      return;
    }
    const lastSeq = value.lastSeq;
    if (typeof lastSeq !== 'number') return;
    const customerId = customerIdFromKey(e.key);
    if (customerId !== undefined) {
      const list = this.#writes.get(customerId) ?? [];
      list.push({ revision: e.revision, atMs: Date.now() - this.#t0, lastSeq, state: value.state });
      this.#writes.set(customerId, list);
    }
    const prev = this.#lastSeq.get(e.key);
    if (prev !== undefined && lastSeq < prev.lastSeq) {
      this.#violation({
        name: VIOLATION_NAMES.lastSeqBackwards,
        detail: `${e.key}: lastSeq went from ${prev.lastSeq} (revision ${prev.revision}) to ${lastSeq} (revision ${e.revision})`,
        data: { key: e.key, from: prev.lastSeq, to: lastSeq, revision: e.revision },
      });
    }
    if (prev === undefined || lastSeq >= prev.lastSeq)
      this.#lastSeq.set(e.key, { lastSeq, revision: e.revision });
  }

  #onWatermark(e: KvWatchEntry): void {
    if (e.operation !== 'PUT' || !e.key.startsWith('wm.')) return;
    const partition = Number(e.key.slice('wm.'.length));
    let wm: { seq?: unknown; epoch?: unknown; owner?: unknown; clean?: unknown; at?: unknown };
    try {
      wm = e.json<typeof wm>() ?? {};
    } catch (err) {
      this.#violation({
        name: 'WATERMARK_UNREADABLE',
        detail: `${e.key} (revision ${e.revision}) is not JSON: ${describeError(err)}`,
      });
      return;
    }
    const { seq, epoch, owner } = wm;
    if (typeof seq !== 'number' || typeof epoch !== 'number' || typeof owner !== 'string') return;
    const history = this.#history.get(partition) ?? [];
    history.push({
      revision: e.revision,
      seq,
      epoch,
      owner,
      clean: typeof wm.clean === 'boolean' ? wm.clean : undefined,
      at: typeof wm.at === 'string' ? wm.at : undefined,
      seenAtMs: Date.now() - this.#t0,
    });
    if (history.length > HISTORY) history.shift();
    this.#history.set(partition, history);
    let owners = this.#epochOwners.get(partition);
    if (owners === undefined)
      this.#epochOwners.set(partition, (owners = new Map<number, string>()));
    const first = owners.get(epoch);
    if (first === undefined) owners.set(epoch, owner);
    else if (first !== owner) {
      this.#violation({
        name: VIOLATION_NAMES.epochShared,
        detail: `partition ${partition}: epoch ${epoch} written by ${first} and by ${owner} (revision ${e.revision})`,
        data: {
          partition,
          epoch,
          first,
          second: owner,
          revision: e.revision,
          history: [...history],
        },
      });
    }
    const prev = this.#watermarks.get(partition);
    if (prev !== undefined && (epoch < prev.epoch || seq < prev.seq)) {
      this.#violation({
        name: VIOLATION_NAMES.watermarkBackwards,
        detail: `partition ${partition}: watermark went from seq ${prev.seq} epoch ${prev.epoch} (revision ${prev.revision}) to seq ${seq} epoch ${epoch} (revision ${e.revision}, by ${owner})`,
        data: {
          partition,
          from: prev,
          to: { seq, epoch, owner, revision: e.revision },
          history: [...history],
        },
      });
    }
    this.#watermarks.set(partition, { seq, epoch, revision: e.revision });
  }
}
