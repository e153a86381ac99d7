// Helpers shared by the summary tests (summaries.test.ts, summaries-failover.test.ts and
// notifier.test.ts): reading the NOTIFICATIONS and ORDERS streams, an independent re-fold of the
// log, the burst driver and its expectations, and the per-file fleet harness.

import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { z } from 'zod';
import { partitionOf } from '../../src/contract/partition.js';
import { OrderPublisher, type OrderEventInput } from '../../src/publisher/order-publisher.js';
import type { TimerLayout } from '../../src/nats/deployment.js';
import {
  customerIdFromKey,
  customerIdFromTimerKey,
  customerKey,
  customerKeyFilter,
  timerKeyFilter,
} from '../../src/state/keys.js';
import { WatermarkStore } from '../../src/state/watermark-store.js';
import {
  eventually,
  provision,
  silentLogger,
  spawnWorker,
  type LogLine,
  type TestDeployment,
  type WorkerProcess,
} from './fleet.js';
import { traceOnFailure } from './fleet-scenarios.js';
import { startNatsServer, type NatsServerHandle } from './nats-server.js';

export const SummarySchema = z.strictObject({
  summaryId: z.string(),
  customerId: z.string(),
  added: z.array(z.number().int()),
  removed: z.array(z.number().int()),
  contents: z.array(z.number().int()),
  firstSeq: z.number().int(),
  lastSeq: z.number().int(),
  openedAt: z.string(),
  closedAt: z.string(),
  reason: z.enum(['quiet', 'max']),
});
export type Summary = z.infer<typeof SummarySchema>;

export interface StoredMessage {
  readonly seq: number;
  readonly subject: string;
  readonly timeMs: number;
  readonly header: (name: string) => string | undefined;
  readonly json: unknown;
}

/** Every message of a stream, in order, through an ordered consumer. */
export async function readStream(nc: NatsConnection, stream: string): Promise<StoredMessage[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream);
  if (info.state.messages === 0) return [];
  const consumer = await jetstream(nc).consumers.get(stream);
  const messages = await consumer.consume();
  const out: StoredMessage[] = [];
  for await (const m of messages) {
    const headers = m.headers;
    out.push({
      seq: m.seq,
      subject: m.subject,
      timeMs: Math.floor(m.info.timestampNanos / 1e6),
      header: (name) => headers?.get(name) || undefined,
      json: m.json<unknown>(),
    });
    if (m.info.pending === 0) break;
  }
  await messages.close();
  return out;
}

export interface NotificationsView {
  readonly summaries: readonly Summary[];
  /** Messages stored per summaryId: must be 1 each. */
  readonly copies: ReadonlyMap<string, number>;
  /** Messages whose Nats-Msg-Id or subject does not match their body. */
  readonly mismatched: readonly string[];
}

export async function readNotifications(dep: TestDeployment): Promise<NotificationsView> {
  const copies = new Map<string, number>();
  const mismatched: string[] = [];
  const summaries: Summary[] = [];
  for (const m of await readStream(dep.nc, dep.names.notificationsStream)) {
    const s = SummarySchema.parse(m.json);
    summaries.push(s);
    copies.set(s.summaryId, (copies.get(s.summaryId) ?? 0) + 1);
    if (m.header('Nats-Msg-Id') !== s.summaryId) mismatched.push(`${s.summaryId}: msg id`);
    if (m.subject !== `${dep.names.notificationsPrefix}.${s.customerId}`)
      mismatched.push(`${s.summaryId}: subject ${m.subject}`);
  }
  return { summaries, copies, mismatched };
}

export type LogPayload =
  | { readonly kind: 'change'; readonly type: string; readonly items: readonly number[] }
  | { readonly kind: 'created' }
  | {
      readonly kind: 'timer';
      readonly window: number;
      readonly lastChangeSeq: number;
      readonly reason: 'quiet' | 'max';
      readonly dueAtMs: number;
    };

export interface LogRecord {
  readonly seq: number;
  readonly timeMs: number;
  readonly customerId: string;
  readonly payload: LogPayload;
}

export const EventJson = z.object({
  type: z.string(),
  items: z.array(z.number().int()).optional(),
});
export const TimerJson = z.object({
  type: z.literal('summary.timer'),
  window: z.number().int(),
  lastChangeSeq: z.number().int(),
  reason: z.enum(['quiet', 'max']),
  dueAtMs: z.number().int(),
});

/** The ORDERS log as the test reads it (subjects `<prefix>.<p>.<customer>[.timer]`). */
export async function readOrdersLog(dep: TestDeployment): Promise<LogRecord[]> {
  const prefix = `${dep.names.ordersPrefix}.`;
  return (await readStream(dep.nc, dep.names.ordersStream)).map((m) => {
    const [, customerId = '', kind] = m.subject.slice(prefix.length).split('.');
    if (kind === 'timer') {
      const t = TimerJson.parse(m.json);
      return { seq: m.seq, timeMs: m.timeMs, customerId, payload: { kind: 'timer', ...t } };
    }
    const e = EventJson.parse(m.json);
    const payload: LogPayload =
      e.type === 'order.created'
        ? { kind: 'created' }
        : { kind: 'change', type: e.type, items: e.items ?? [] };
    return { seq: m.seq, timeMs: m.timeMs, customerId, payload };
  });
}

export const sortNums = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);

/** Multiset difference a - b (as a sorted list). */
export function minus(a: readonly number[], b: readonly number[]): number[] {
  const left = [...b];
  const out: number[] = [];
  for (const x of a) {
    const at = left.indexOf(x);
    if (at >= 0) left.splice(at, 1);
    else out.push(x);
  }
  return sortNums(out);
}

export function applyChange(items: number[], type: string, changed: readonly number[]): number[] {
  if (type === 'items.added') return [...items, ...changed];
  if (type === 'order.cleared') return [];
  const next = [...items];
  for (const x of changed) {
    const at = next.indexOf(x);
    if (at >= 0) next.splice(at, 1);
  }
  return next;
}

/**
 * Independent re-fold of the log: which summaries the entries in it imply. A change opens or
 * extends a window; a timer entry closes the window it names, a quiet one only if it saw the last
 * change. Net-empty windows produce nothing.
 */
export function summariesFromLog(log: readonly LogRecord[]): Summary[] {
  interface Open {
    openedSeq: number;
    openedAtMs: number;
    lastChangeSeq: number;
    base: number[];
  }
  const items = new Map<string, number[]>();
  const open = new Map<string, Open>();
  const out: Summary[] = [];
  for (const r of log) {
    const p = r.payload;
    const current = items.get(r.customerId) ?? [];
    if (p.kind === 'created') continue;
    if (p.kind === 'change') {
      const w = open.get(r.customerId);
      if (w === undefined)
        open.set(r.customerId, {
          openedSeq: r.seq,
          openedAtMs: r.timeMs,
          lastChangeSeq: r.seq,
          base: current,
        });
      else w.lastChangeSeq = r.seq;
      items.set(r.customerId, applyChange(current, p.type, p.items));
      continue;
    }
    const w = open.get(r.customerId);
    if (w === undefined || w.openedSeq !== p.window) continue;
    if (p.reason === 'quiet' && w.lastChangeSeq !== p.lastChangeSeq) continue;
    open.delete(r.customerId);
    const added = minus(current, w.base);
    const removed = minus(w.base, current);
    if (added.length + removed.length === 0) continue;
    out.push({
      summaryId: `sum-${w.openedSeq}`,
      customerId: r.customerId,
      added,
      removed,
      contents: current,
      firstSeq: w.openedSeq,
      lastSeq: w.lastChangeSeq,
      openedAt: new Date(w.openedAtMs).toISOString(),
      closedAt: new Date(r.timeMs).toISOString(),
      reason: p.reason,
    });
  }
  return out;
}

export const normalize = (s: Summary): Summary => ({
  ...s,
  added: sortNums(s.added),
  removed: sortNums(s.removed),
});
export const byId = (a: Summary, b: Summary): number => a.firstSeq - b.firstSeq;

export interface Policy {
  readonly quietMs: number;
  readonly maxMs: number;
}

/**
 * The invariants every run must keep, whatever happened to the fleet: one stored copy per id,
 * ids and subjects consistent, exactly the summaries the log implies, none closed early.
 */
export async function checkNotifications(
  dep: TestDeployment,
  policy: Policy,
): Promise<{ summaries: Summary[]; log: LogRecord[] }> {
  const view = await readNotifications(dep);
  const log = await readOrdersLog(dep);
  expect(view.mismatched).toEqual([]);
  const repeated = [...view.copies].filter(([, n]) => n !== 1);
  expect(repeated, 'summaryIds stored more than once').toEqual([]);
  const summaries = view.summaries.map(normalize).sort(byId);
  expect(summaries).toEqual(summariesFromLog(log).sort(byId));
  const bySeq = new Map(log.map((r) => [r.seq, r]));
  for (const s of summaries) {
    expect(s.summaryId).toBe(`sum-${s.firstSeq}`);
    const last = bySeq.get(s.lastSeq);
    const first = bySeq.get(s.firstSeq);
    if (last === undefined || first === undefined) throw new Error(`${s.summaryId}: no entry`);
    const closedAt = Date.parse(s.closedAt);
    if (s.reason === 'quiet') expect(closedAt).toBeGreaterThanOrEqual(last.timeMs + policy.quietMs);
    else expect(closedAt).toBeGreaterThanOrEqual(first.timeMs + policy.maxMs);
  }
  return { summaries, log };
}

export interface Sent {
  readonly customerId: string;
  readonly round: number;
  readonly event: OrderEventInput;
  readonly seq: number;
}

/** Publishes bursts: customers in parallel, the events of one burst `gapMs` apart, in order. */
export class Driver {
  readonly sent: Sent[] = [];
  readonly #publisher: OrderPublisher;

  constructor(dep: TestDeployment) {
    this.#publisher = new OrderPublisher(dep.nc, {
      names: dep.names,
      partitions: dep.partitions,
      limits: { maxPayloadBytes: 16 * 1024, maxItemsPerEvent: 1000 },
      maxInFlight: 256,
      maxAttempts: 60,
      timeoutMs: 5000,
      log: silentLogger,
    });
  }

  async round(
    round: number,
    bursts: ReadonlyMap<string, readonly OrderEventInput[]>,
    gapMs: number,
  ): Promise<void> {
    await Promise.all(
      [...bursts].map(async ([customerId, events]) => {
        for (const [i, event] of events.entries()) {
          if (i > 0 && gapMs > 0) await sleep(gapMs);
          const { seq } = await this.#publisher.publish(customerId, event);
          this.sent.push({ customerId, round, event, seq });
        }
      }),
    );
  }

  /** Sequence of each customer's last change (what a closed, checkpointed state must have seen). */
  lastChangeSeqs(): Map<string, number> {
    const out = new Map<string, number>();
    for (const s of this.sent) {
      if (s.event.type === 'order.created') continue;
      out.set(s.customerId, Math.max(out.get(s.customerId) ?? 0, s.seq));
    }
    return out;
  }

  async close(): Promise<void> {
    await this.#publisher.close();
  }
}

export interface ExpectedWindow {
  readonly summaryId: string;
  readonly customerId: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly added: number[];
  readonly removed: number[];
  readonly contents: number[];
}

/**
 * What each burst must come to, from the published events alone: one window per (customer,
 * round) from its first to its last change, with the net change against the contents before it.
 * Net-empty bursts are returned separately: they must send nothing.
 */
export function expectedFromBursts(sent: readonly Sent[]): {
  windows: ExpectedWindow[];
  netEmpty: string[];
} {
  const windows: ExpectedWindow[] = [];
  const netEmpty: string[] = [];
  const customers = new Map<string, Sent[]>();
  for (const s of sent) customers.set(s.customerId, [...(customers.get(s.customerId) ?? []), s]);
  for (const [customerId, events] of customers) {
    events.sort((a, b) => a.seq - b.seq);
    let items: number[] = [];
    const rounds = [...new Set(events.map((e) => e.round))];
    for (const round of rounds) {
      const changes = events.filter((e) => e.round === round && e.event.type !== 'order.created');
      const before = items;
      for (const c of changes) {
        const e = c.event;
        items = applyChange(items, e.type, 'items' in e ? e.items : []);
      }
      const first = changes[0];
      const last = changes[changes.length - 1];
      if (first === undefined || last === undefined) continue;
      const added = minus(items, before);
      const removed = minus(before, items);
      if (added.length + removed.length === 0) {
        netEmpty.push(`sum-${first.seq}`);
        continue;
      }
      windows.push({
        summaryId: `sum-${first.seq}`,
        customerId,
        firstSeq: first.seq,
        lastSeq: last.seq,
        added,
        removed,
        contents: items,
      });
    }
  }
  return { windows: windows.sort((a, b) => a.firstSeq - b.firstSeq), netEmpty };
}

export const WindowState = z.object({
  lastSeq: z.number().int(),
  state: z.object({ window: z.unknown() }),
});

/** Waits until every customer's stored state applied its last change and has no window open. */
export async function waitAllClosed(
  dep: TestDeployment,
  lastChange: ReadonlyMap<string, number>,
  timeoutMs = 60_000,
): Promise<void> {
  const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
  await eventually(
    async () => {
      for (const [customerId, seq] of lastChange) {
        const entry = await kv.get(
          customerKey(partitionOf(customerId, dep.partitions), customerId),
        );
        if (entry === null || entry.operation !== 'PUT') throw new Error(`${customerId}: no state`);
        const stored = WindowState.parse(entry.json());
        if (stored.lastSeq < seq) throw new Error(`${customerId}: at ${stored.lastSeq} < ${seq}`);
        if (stored.state.window !== null) throw new Error(`${customerId}: window open`);
      }
      return true;
    },
    timeoutMs,
    200,
  );
}

/** Customers with an open timer in the KV index right now. */
export async function indexedTimers(dep: TestDeployment): Promise<Set<string>> {
  const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
  const out = new Set<string>();
  for (let p = 0; p < dep.partitions; p++) {
    for await (const key of await kv.keys(timerKeyFilter(p))) {
      const entry = await kv.get(key);
      const id = customerIdFromTimerKey(key);
      if (entry !== null && entry.operation === 'PUT' && id !== undefined) out.add(id);
    }
  }
  return out;
}

/** Customers whose stored snapshot holds an open window (what the `state` layout scans). */
export async function storedOpenWindows(dep: TestDeployment): Promise<Set<string>> {
  const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
  const out = new Set<string>();
  for (let p = 0; p < dep.partitions; p++) {
    for await (const entry of await kv.history({ key: customerKeyFilter(p) })) {
      const id = customerIdFromKey(entry.key);
      if (id === undefined) continue;
      out.delete(id);
      if (entry.operation !== 'PUT') continue;
      if (entry.json<{ state: { window: unknown } }>().state.window !== null) out.add(id);
    }
  }
  return out;
}

/** The open windows stored for the crash path: the index, or the snapshots (state layout). */
export function crashPathWindows(dep: TestDeployment, layout: TimerLayout): Promise<Set<string>> {
  return layout === 'index' ? indexedTimers(dep) : storedOpenWindows(dep);
}

/**
 * True once every partition's watermark covers the last entry sent to it: everything is in KV,
 * so a crash now replays nothing and a new owner finds open windows only where they are stored.
 */
export async function checkpointedAll(dep: TestDeployment, d: Driver): Promise<boolean> {
  const watermarks = new WatermarkStore(await new Kvm(dep.nc).open(dep.names.metaBucket));
  const last = new Map<number, number>();
  for (const s of d.sent) {
    const p = partitionOf(s.customerId, dep.partitions);
    last.set(p, Math.max(last.get(p) ?? 0, s.seq));
  }
  for (const [p, seq] of last) {
    if ((await watermarks.load(p)).watermark.seq < seq) return false;
  }
  return true;
}

/** Compares the summaries with the burst expectations: every burst exactly one window. */
export function expectBurstWindows(
  summaries: readonly Summary[],
  log: readonly LogRecord[],
  sent: readonly Sent[],
): void {
  const { windows, netEmpty } = expectedFromBursts(sent);
  expect(
    summaries.map(({ summaryId, customerId, firstSeq, lastSeq, added, removed, contents }) => ({
      summaryId,
      customerId,
      firstSeq,
      lastSeq,
      added,
      removed,
      contents,
    })),
  ).toEqual(windows);
  const ids = new Set(summaries.map((s) => s.summaryId));
  expect(netEmpty.filter((id) => ids.has(id))).toEqual([]);
  const bySeq = new Map(log.map((r) => [r.seq, r]));
  for (const s of summaries) {
    expect(s.reason).toBe('quiet');
    expect(s.openedAt).toBe(new Date(bySeq.get(s.firstSeq)?.timeMs ?? 0).toISOString());
  }
}

export const summaryLogs = (w: WorkerProcess): LogLine[] =>
  w.logs().filter((l) => l.msg === 'summary published');

/** A burst for a customer: a few adds, sometimes a removal of something it holds, or a clear. */
export function randomBurst(random: () => number, holding: readonly number[]): OrderEventInput[] {
  const n = 1 + Math.floor(random() * 3);
  const out: OrderEventInput[] = [];
  for (let i = 0; i < n; i++) {
    const roll = random();
    const pick = holding[Math.floor(random() * holding.length)];
    if (roll < 0.6 || pick === undefined)
      out.push({
        type: 'items.added',
        items: [Math.floor(random() * 9), Math.floor(random() * 9)],
      });
    else if (roll < 0.9) out.push({ type: 'items.removed', items: [pick] });
    else out.push({ type: 'order.cleared' });
  }
  return out;
}

export function contentsOf(sent: readonly Sent[], customerId: string): number[] {
  let items: number[] = [];
  for (const s of [...sent].sort((a, b) => a.seq - b.seq)) {
    if (s.customerId !== customerId || s.event.type === 'order.created') continue;
    items = applyChange(items, s.event.type, 'items' in s.event ? s.event.items : []);
  }
  return items;
}

/**
 * Registers the hooks of a summaries test file (one nats-server for the file; the workers,
 * deployments and drivers a test started are torn down after it) and returns its `deploy` and
 * `worker`. Call it once, at the top level of the test file.
 */
export function summaryFleet(): {
  deploy: (
    env: Record<string, string>,
    opts?: { readonly timerLayout?: TimerLayout },
  ) => Promise<{ dep: TestDeployment; d: Driver }>;
  worker: (dep: TestDeployment, id: string, env?: Record<string, string>) => WorkerProcess;
} {
  let server: NatsServerHandle;
  const workers: WorkerProcess[] = [];
  const deployments: TestDeployment[] = [];
  const drivers: Driver[] = [];
  let traced: WorkerProcess[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
  });

  afterEach(async () => {
    for (const w of workers.splice(0)) {
      w.signal('SIGCONT');
      await w.stop('SIGKILL');
    }
    for (const d of drivers.splice(0)) await d.close();
    for (const d of deployments.splice(0)) await d.close();
  });

  afterAll(async () => {
    await server.cleanup();
  });

  async function deploy(
    env: Record<string, string>,
    opts: { readonly timerLayout?: TimerLayout } = {},
  ): Promise<{ dep: TestDeployment; d: Driver }> {
    // This test's workers, kept for the failure trace (afterEach empties `workers` first).
    traced = [];
    traceOnFailure(traced);
    const dep = await provision(server.url, { isolate: true, partitions: 8, env, ...opts });
    deployments.push(dep);
    const d = new Driver(dep);
    drivers.push(d);
    return { dep, d };
  }

  function worker(
    dep: TestDeployment,
    id: string,
    env: Record<string, string> = {},
  ): WorkerProcess {
    const w = spawnWorker(dep, id, env);
    workers.push(w);
    traced.push(w);
    return w;
  }

  return { deploy, worker };
}
