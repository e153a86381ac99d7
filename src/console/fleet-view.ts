import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { WorkerReportSchema, type WorkerStatusReport } from '../admin/status-reporter.js';
import type { ResourceNames } from '../contract/names.js';
import { describeError } from '../errors.js';
import { LeaseValueSchema } from '../fleet/leases.js';
import { MemberSchema } from '../fleet/membership.js';
import type { Logger } from '../logging/logger.js';
import { isConsumerNotFound } from '../nats/errors.js';
import { readOrdered } from '../nats/ordered-read.js';
import { DeadLetterHeader } from '../fleet/dead-letter.js';
import { WatermarkSchema, type Watermark } from '../state/watermark-store.js';

export interface ViewOptions {
  readonly names: ResourceNames;
  readonly partitions: number;
  /** Consumer info costs the server real work on 2.9 (pending counts): poll it rarely. */
  readonly consumerPollMs: number;
  /** Stream info (no subject detail) is cheap: the orders head and the dead-letter count. */
  readonly streamPollMs: number;
  readonly log: Logger;
}

export interface FleetEvent {
  readonly at: string;
  readonly partition: number;
  readonly kind: 'handoff' | 'takeover' | 'first start';
  readonly from: string;
  readonly to: string;
  readonly watermark: number;
}

export interface PartitionView {
  readonly partition: number;
  readonly owner: string | null;
  readonly state: 'running' | 'unowned' | 'moving';
  readonly watermark: number;
  readonly epoch: number;
  readonly clean: boolean;
  readonly checkpointAt: string | null;
  /** From the last consumer poll: entries not yet checkpointed (null before the first poll). */
  readonly lag: number | null;
  /** Watermark advance per second over the last seconds (entries checkpointed per second). */
  readonly throughput: number;
}

export interface FleetSnapshot {
  readonly at: string;
  readonly partitions: number;
  readonly members: readonly { id: string; since: string; partitions: number[] }[];
  readonly workers: readonly (WorkerStatusReport & { ratePerSec: number })[];
  readonly table: readonly PartitionView[];
  readonly events: readonly FleetEvent[];
  readonly stream: { messages: number; lastSeq: number; firstSeq: number };
  readonly deadLetters: {
    total: number;
    byReason: Record<string, number>;
    notificationFailures: number;
  };
  readonly summaries: {
    windowsOpen: number;
    published: number;
    waitingForDelivery: number | null;
  };
  readonly polls: { consumerInfoAt: string | null; consumerPollMs: number };
}

const MAX_EVENTS = 200;

/**
 * The console's live model of the fleet, shared by every browser session. Live data comes from
 * KV watches (members, leases, watermarks) and the workers' own status reports (core NATS);
 * the server is polled only for cheap stream info and, rarely, the partitions' consumer info.
 * However many sessions are open, the server sees this one set of watches and polls.
 */
export class FleetView {
  readonly #nc: NatsConnection;
  readonly #opts: ViewOptions;
  readonly #listeners = new Set<() => void>();
  readonly #tasks: Promise<void>[] = [];
  readonly #stops: (() => void)[] = [];
  #closed = false;
  readonly #abort = new AbortController();

  readonly #members = new Map<string, { since: string; heardAt: number }>();
  readonly #leases = new Map<number, { owner: string; heardAt: number }>();
  readonly #watermarks = new Map<number, Watermark>();
  readonly #samples = new Map<number, { t: number; seq: number }[]>();
  readonly #lag = new Map<number, number>();
  readonly #workers = new Map<
    string,
    { report: WorkerStatusReport; ratePerSec: number; heardAt: number }
  >();
  readonly #events: FleetEvent[] = [];
  #stream = { messages: 0, lastSeq: 0, firstSeq: 0 };
  #dlq = { seen: 0, total: 0, byReason: new Map<string, number>(), notificationFailures: 0 };
  #notifierPending: number | null = null;
  #consumerInfoAt: string | null = null;
  #ttlMs = 8000;
  #sub: Subscription | undefined;

  constructor(nc: NatsConnection, opts: ViewOptions) {
    this.#nc = nc;
    this.#opts = opts;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async start(): Promise<void> {
    const { names } = this.#opts;
    const kvm = new Kvm(this.#nc);
    const [members, leases, meta] = await Promise.all([
      kvm.open(names.memberBucket),
      kvm.open(names.leaseBucket),
      kvm.open(names.metaBucket),
    ]);
    this.#ttlMs = (await leases.status()).ttl;
    const jsm = await jetstreamManager(this.#nc);
    this.#own('members watch', () => this.#watch(members, 'm.>', (e) => this.#onMember(e)));
    this.#own('leases watch', () => this.#watch(leases, 'p.>', (e) => this.#onLease(e)));
    this.#own('watermarks watch', () => this.#watch(meta, 'wm.>', (e) => this.#onWatermark(e)));
    this.#sub = this.#nc.subscribe(`${names.statusPrefix}.*`, {
      callback: (err, msg) => {
        if (err !== null) return;
        const parsed = WorkerReportSchema.safeParse(msg.json());
        if (parsed.success) this.#onReport(parsed.data);
      },
    });
    this.#own('stream poll', () =>
      this.#every(this.#opts.streamPollMs, () => this.#pollStreams(jsm)),
    );
    this.#own('consumer poll', () =>
      this.#every(this.#opts.consumerPollMs, () => this.#pollConsumers(jsm)),
    );
    // Expiry makes no watch event (NATS 2.9 bucket TTL): expire by our own clock.
    this.#own('expiry', () => this.#every(1000, () => Promise.resolve(this.#expire())));
  }

  snapshot(): FleetSnapshot {
    const now = Date.now();
    const table: PartitionView[] = [];
    for (let p = 0; p < this.#opts.partitions; p++) {
      const lease = this.#leases.get(p);
      const wm = this.#watermarks.get(p);
      const owner = lease?.owner ?? null;
      const samples = this.#samples.get(p) ?? [];
      const first = samples[0];
      const last = samples[samples.length - 1];
      const throughput =
        first !== undefined && last !== undefined && last.t > first.t
          ? ((last.seq - first.seq) * 1000) / (last.t - first.t)
          : 0;
      table.push({
        partition: p,
        owner,
        state:
          owner === null
            ? 'unowned'
            : wm !== undefined && wm.owner !== owner
              ? 'moving'
              : 'running',
        watermark: wm?.seq ?? 0,
        epoch: wm?.epoch ?? 0,
        clean: wm?.clean ?? true,
        checkpointAt: wm?.at ?? null,
        lag: this.#lag.get(p) ?? null,
        throughput: Math.round(throughput),
      });
    }
    const members = [...this.#members.entries()]
      .map(([id, m]) => ({
        id,
        since: m.since,
        partitions: table.filter((t) => t.owner === id).map((t) => t.partition),
      }))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
    const workers = [...this.#workers.values()]
      .filter((w) => this.#members.has(w.report.id) || now - w.heardAt < this.#ttlMs)
      .map((w) => ({ ...w.report, ratePerSec: Math.round(w.ratePerSec) }))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
    return {
      at: new Date(now).toISOString(),
      partitions: this.#opts.partitions,
      members,
      workers,
      table,
      events: [...this.#events].reverse(),
      stream: this.#stream,
      deadLetters: {
        total: this.#dlq.total,
        byReason: Object.fromEntries(this.#dlq.byReason),
        notificationFailures: this.#dlq.notificationFailures,
      },
      summaries: {
        windowsOpen: workers.reduce((n, w) => n + w.openTimers, 0),
        published: workers.reduce((n, w) => n + w.outputs, 0),
        waitingForDelivery: this.#notifierPending,
      },
      polls: { consumerInfoAt: this.#consumerInfoAt, consumerPollMs: this.#opts.consumerPollMs },
    };
  }

  /** Stops every watch, poll and subscription; each step on its own. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    for (const stop of this.#stops) {
      try {
        stop();
      } catch (err) {
        this.#opts.log.warn({ err: describeError(err) }, 'console watch stop failed');
      }
    }
    try {
      this.#sub?.unsubscribe();
    } catch (err) {
      this.#opts.log.warn({ err: describeError(err) }, 'status unsubscribe failed');
    }
    await Promise.allSettled(this.#tasks);
  }

  #changed(): void {
    for (const l of this.#listeners) l();
  }

  /** Runs a background loop owned by the view: a failure is logged and the loop restarted. */
  #own(name: string, loop: () => Promise<void>): void {
    const task = (async () => {
      while (!this.#closed) {
        try {
          await loop();
        } catch (err) {
          if (this.#closed) break;
          this.#opts.log.warn(
            { task: name, err: describeError(err) },
            'console task failed, restarting',
          );
          await this.#pause(1000);
        }
      }
    })();
    this.#tasks.push(task);
  }

  /** Sleeps, or returns at once when the view closes. */
  async #pause(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.#abort.signal });
    } catch (err) {
      // Aborted by close(): the caller's loop ends; anything else is a real failure.
      if (!this.#closed) throw err;
    }
  }

  async #every(ms: number, fn: () => Promise<void>): Promise<void> {
    while (!this.#closed) {
      await fn();
      await this.#pause(ms);
    }
  }

  async #watch(kv: KV, key: string, onEntry: (e: KvWatchEntry) => void): Promise<void> {
    const watch = await kv.watch({ key, include: KvWatchInclude.LastValue });
    this.#stops.push(() => watch.stop());
    for await (const entry of watch) {
      onEntry(entry);
      this.#changed();
    }
  }

  #onMember(e: KvWatchEntry): void {
    const id = e.key.slice(2);
    if (e.operation !== 'PUT') {
      this.#members.delete(id);
      return;
    }
    const parsed = MemberSchema.safeParse(e.json());
    if (parsed.success) this.#members.set(id, { since: parsed.data.since, heardAt: Date.now() });
  }

  #onLease(e: KvWatchEntry): void {
    const p = Number(e.key.slice(2));
    if (e.operation !== 'PUT') {
      this.#leases.delete(p);
      return;
    }
    const parsed = LeaseValueSchema.safeParse(e.json());
    if (parsed.success) this.#leases.set(p, { owner: parsed.data.owner, heardAt: Date.now() });
  }

  #onWatermark(e: KvWatchEntry): void {
    const p = Number(e.key.slice(3));
    if (e.operation !== 'PUT' || !Number.isInteger(p)) return;
    const parsed = WatermarkSchema.safeParse(e.json());
    if (!parsed.success) return;
    const next = parsed.data;
    const prev = this.#watermarks.get(p);
    if (prev !== undefined && next.epoch > prev.epoch) {
      this.#events.push({
        at: next.at,
        partition: p,
        kind: prev.owner === '' ? 'first start' : prev.clean ? 'handoff' : 'takeover',
        from: prev.owner,
        to: next.owner,
        watermark: prev.seq,
      });
      if (this.#events.length > MAX_EVENTS) this.#events.shift();
    }
    this.#watermarks.set(p, next);
    const samples = this.#samples.get(p) ?? [];
    const now = Date.now();
    samples.push({ t: now, seq: next.seq });
    while (samples.length > 2 && (samples[0]?.t ?? now) < now - 10_000) samples.shift();
    this.#samples.set(p, samples);
  }

  #onReport(report: WorkerStatusReport): void {
    const prev = this.#workers.get(report.id);
    const now = Date.now();
    const ratePerSec =
      prev === undefined || now <= prev.heardAt
        ? 0
        : ((report.applied - prev.report.applied) * 1000) / (now - prev.heardAt);
    this.#workers.set(report.id, { report, ratePerSec: Math.max(0, ratePerSec), heardAt: now });
    this.#changed();
  }

  #expire(): void {
    const now = Date.now();
    let changed = false;
    for (const [id, m] of this.#members)
      if (now - m.heardAt > this.#ttlMs) changed = this.#members.delete(id) || changed;
    for (const [p, l] of this.#leases)
      if (now - l.heardAt > this.#ttlMs) changed = this.#leases.delete(p) || changed;
    for (const [id, w] of this.#workers)
      if (now - w.heardAt > 3 * this.#ttlMs) changed = this.#workers.delete(id) || changed;
    if (changed) this.#changed();
  }

  async #pollStreams(jsm: JetStreamManager): Promise<void> {
    const { names } = this.#opts;
    const orders = await jsm.streams.info(names.ordersStream);
    this.#stream = {
      messages: orders.state.messages,
      lastSeq: orders.state.last_seq,
      firstSeq: orders.state.first_seq,
    };
    const dlq = await jsm.streams.info(names.deadLetterStream);
    if (dlq.state.messages < this.#dlq.total || dlq.state.last_seq < this.#dlq.seen) {
      // Purged: count again from the start.
      this.#dlq = { seen: 0, total: 0, byReason: new Map(), notificationFailures: 0 };
    }
    if (dlq.state.messages > 0 && dlq.state.last_seq > this.#dlq.seen) {
      for await (const m of readOrdered(jetstream(this.#nc), jsm, names.deadLetterStream, {
        startSeq: this.#dlq.seen + 1,
        headersOnly: true,
      })) {
        const reason = m.headers?.get(DeadLetterHeader.Reason) || 'UNKNOWN';
        this.#dlq.byReason.set(reason, (this.#dlq.byReason.get(reason) ?? 0) + 1);
        if (m.subject === names.deadLetterNotifications) this.#dlq.notificationFailures++;
        this.#dlq.total++;
        this.#dlq.seen = m.seq;
      }
    }
    this.#changed();
  }

  async #pollConsumers(jsm: JetStreamManager): Promise<void> {
    const { names } = this.#opts;
    // One at a time: spreading the pending-count work rather than asking for all at once.
    for (let p = 0; p < this.#opts.partitions && !this.#closed; p++) {
      try {
        const info = await jsm.consumers.info(names.ordersStream, `partition-${p}`);
        this.#lag.set(p, info.num_pending + info.num_ack_pending);
      } catch (err) {
        if (!isConsumerNotFound(err)) throw err;
        this.#lag.delete(p);
      }
    }
    try {
      const info = await jsm.consumers.info(names.notificationsStream, 'notifier');
      this.#notifierPending = info.num_pending + info.num_ack_pending;
    } catch (err) {
      if (!isConsumerNotFound(err)) throw err;
      this.#notifierPending = null;
    }
    this.#consumerInfoAt = new Date().toISOString();
    this.#changed();
  }
}
