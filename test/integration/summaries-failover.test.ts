// Exactly one summary per window while ownership moves: a real nats-server, real worker processes
// and real signals (SIGTERM, SIGKILL, SIGSTOP/SIGCONT). Whatever happens to the fleet, the
// NOTIFICATIONS stream must hold one message per summaryId, with exactly the content an
// independent re-fold of the ORDERS log implies, and every burst must be exactly one window.
// Waiting is outcome based: until every customer's stored state applied its last change and has
// no window open.

import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { partitionOf } from '../../src/contract/partition.js';
import { OrderPublisher, type OrderEventInput } from '../../src/publisher/order-publisher.js';
import {
  customerKey,
  customerIdFromTimerKey,
  timerKeyFilter,
  watermarkKey,
} from '../../src/state/keys.js';
import {
  eventually,
  provision,
  silentLogger,
  spawnWorker,
  waitReady,
  type LogLine,
  type TestDeployment,
  type WorkerProcess,
} from '../support/fleet.js';
import { rng } from '../support/model.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';

// ---------------------------------------------------------------------------------------------
// Helpers. Test files cannot import each other, so the failover and notifier files carry their
// own copy of the few they need.
// ---------------------------------------------------------------------------------------------

const SummarySchema = z.strictObject({
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
type Summary = z.infer<typeof SummarySchema>;

interface StoredMessage {
  readonly seq: number;
  readonly subject: string;
  readonly timeMs: number;
  readonly header: (name: string) => string | undefined;
  readonly json: unknown;
}

/** Every message of a stream, in order, through an ordered consumer. */
async function readStream(nc: NatsConnection, stream: string): Promise<StoredMessage[]> {
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

interface NotificationsView {
  readonly summaries: readonly Summary[];
  /** Messages stored per summaryId: must be 1 each. */
  readonly copies: ReadonlyMap<string, number>;
  /** Messages whose Nats-Msg-Id or subject does not match their body. */
  readonly mismatched: readonly string[];
}

async function readNotifications(dep: TestDeployment): Promise<NotificationsView> {
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

type LogPayload =
  | { readonly kind: 'change'; readonly type: string; readonly items: readonly number[] }
  | { readonly kind: 'created' }
  | {
      readonly kind: 'timer';
      readonly window: number;
      readonly lastChangeSeq: number;
      readonly reason: 'quiet' | 'max';
      readonly dueAtMs: number;
    };

interface LogRecord {
  readonly seq: number;
  readonly timeMs: number;
  readonly customerId: string;
  readonly payload: LogPayload;
}

const EventJson = z.object({ type: z.string(), items: z.array(z.number().int()).optional() });
const TimerJson = z.object({
  type: z.literal('summary.timer'),
  window: z.number().int(),
  lastChangeSeq: z.number().int(),
  reason: z.enum(['quiet', 'max']),
  dueAtMs: z.number().int(),
});

/** The ORDERS log as the test reads it (subjects `<prefix>.<p>.<customer>[.timer]`). */
async function readOrdersLog(dep: TestDeployment): Promise<LogRecord[]> {
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

const sortNums = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);

/** Multiset difference a - b (as a sorted list). */
function minus(a: readonly number[], b: readonly number[]): number[] {
  const left = [...b];
  const out: number[] = [];
  for (const x of a) {
    const at = left.indexOf(x);
    if (at >= 0) left.splice(at, 1);
    else out.push(x);
  }
  return sortNums(out);
}

function applyChange(items: number[], type: string, changed: readonly number[]): number[] {
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
function summariesFromLog(log: readonly LogRecord[]): Summary[] {
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

const normalize = (s: Summary): Summary => ({
  ...s,
  added: sortNums(s.added),
  removed: sortNums(s.removed),
});
const byId = (a: Summary, b: Summary): number => a.firstSeq - b.firstSeq;

interface Policy {
  readonly quietMs: number;
  readonly maxMs: number;
}

/**
 * The invariants every run must keep, whatever happened to the fleet: one stored copy per id,
 * ids and subjects consistent, exactly the summaries the log implies, none closed early.
 */
async function checkNotifications(
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

interface Sent {
  readonly customerId: string;
  readonly round: number;
  readonly event: OrderEventInput;
  readonly seq: number;
}

/** Publishes bursts: customers in parallel, the events of one burst `gapMs` apart, in order. */
class Driver {
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

interface ExpectedWindow {
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
function expectedFromBursts(sent: readonly Sent[]): {
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

const WindowState = z.object({
  lastSeq: z.number().int(),
  state: z.object({ window: z.unknown() }),
});

/** Waits until every customer's stored state applied its last change and has no window open. */
async function waitAllClosed(
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
async function indexedTimers(dep: TestDeployment): Promise<Set<string>> {
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

/** Compares the summaries with the burst expectations: every burst exactly one window. */
function expectBurstWindows(
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

const summaryLogs = (w: WorkerProcess): LogLine[] =>
  w.logs().filter((l) => l.msg === 'summary published');

// ---------------------------------------------------------------------------------------------

let server: NatsServerHandle;
const workers: WorkerProcess[] = [];
const deployments: TestDeployment[] = [];
const drivers: Driver[] = [];

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

async function deploy(env: Record<string, string>): Promise<{ dep: TestDeployment; d: Driver }> {
  const dep = await provision(server.url, { isolate: true, partitions: 8, env });
  deployments.push(dep);
  const d = new Driver(dep);
  drivers.push(d);
  return { dep, d };
}

function worker(dep: TestDeployment, id: string, env: Record<string, string> = {}): WorkerProcess {
  const w = spawnWorker(dep, id, env);
  workers.push(w);
  return w;
}

/** A burst for a customer: a few adds, sometimes a removal of something it holds, or a clear. */
function randomBurst(random: () => number, holding: readonly number[]): OrderEventInput[] {
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

function contentsOf(sent: readonly Sent[], customerId: string): number[] {
  let items: number[] = [];
  for (const s of [...sent].sort((a, b) => a.seq - b.seq)) {
    if (s.customerId !== customerId || s.event.type === 'order.created') continue;
    items = applyChange(items, s.event.type, 'items' in s.event ? s.event.items : []);
  }
  return items;
}

/** Actions within a burst are this far apart (well under Q/5 for every Q used here). */
const IN_BURST_MS = 40;

/** Partitions a worker stopped after its log reached `fromLine` (e.g. those it owned at SIGTERM). */
function stoppedPartitions(w: WorkerProcess, fromLine: number): Set<number> {
  return new Set(
    w
      .logs()
      .slice(fromLine)
      .filter((l) => l.msg === 'partition stopped' && typeof l['partition'] === 'number')
      .map((l) => Number(l['partition'])),
  );
}

const publishedIds = (w: WorkerProcess, duplicate?: boolean): Set<string> =>
  new Set(
    summaryLogs(w)
      .filter((l) => duplicate === undefined || l['duplicate'] === duplicate)
      .map((l) => String(l['summaryId'])),
  );

const WatermarkJson = z.object({ seq: z.number().int(), clean: z.boolean() });

async function watermarks(dep: TestDeployment): Promise<{ seq: number; clean: boolean }[]> {
  const kv = await new Kvm(dep.nc).open(dep.names.metaBucket);
  const out: { seq: number; clean: boolean }[] = [];
  for (let p = 0; p < dep.partitions; p++) {
    const entry = await kv.get(watermarkKey(p));
    if (entry !== null && entry.operation === 'PUT') out.push(WatermarkJson.parse(entry.json()));
  }
  return out;
}

function bursts(
  random: () => number,
  customers: readonly string[],
  sent: readonly Sent[],
): Map<string, OrderEventInput[]> {
  return new Map(customers.map((c) => [c, randomBurst(random, contentsOf(sent, c))] as const));
}

const names = (prefix: string, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

describe('exactly one summary per window across failover', () => {
  it('(a) the owner is SIGTERMed with windows open: they close on the new owner, each once', async () => {
    const quiet = 3000;
    const { dep, d } = await deploy({
      SUMMARY_QUIET_MS: String(quiet),
      SUMMARY_MAX_MS: '60000',
      TIMER_TICK_MS: '50',
    });
    const a = worker(dep, 'term-a');
    await waitReady(a);
    const b = worker(dep, 'term-b');
    await waitReady(b);
    const customers = names('term', 40);
    await d.round(0, bursts(rng(21), customers, d.sent), IN_BURST_MS);
    const mark = a.logs().length;
    expect((await a.stop('SIGTERM')).code).toBe(0);
    const owned = stoppedPartitions(a, mark);
    const moved = customers.filter((c) => owned.has(partitionOf(c, dep.partitions)));
    expect(moved.length, 'the stopped owner held some of the open windows').toBeGreaterThan(0);
    expect((await readNotifications(dep)).summaries, 'windows still open at SIGTERM').toEqual([]);

    await waitAllClosed(dep, d.lastChangeSeqs());
    const { summaries, log } = await checkNotifications(dep, { quietMs: quiet, maxMs: 60_000 });
    expectBurstWindows(summaries, log, d.sent);
    // The windows of the stopped owner's customers were closed by the new owner.
    const byB = publishedIds(b, false);
    const movedIds = summaries.filter((s) => moved.includes(s.customerId)).map((s) => s.summaryId);
    expect(movedIds.length).toBeGreaterThan(0);
    expect(movedIds.filter((id) => !byB.has(id))).toEqual([]);
    expect(publishedIds(a).size).toBe(0);
  });

  it.each([
    ['inside the duplicate window', undefined],
    ['after the duplicate window has passed', 1000],
  ] as const)(
    '(b) the owner is SIGKILLed after timers fired and before a checkpoint; replay %s sends no second or different summary',
    async (_label, duplicateWindowMs) => {
      const quiet = 1200;
      const { dep, d } = await deploy({
        SUMMARY_QUIET_MS: String(quiet),
        SUMMARY_MAX_MS: '60000',
        TIMER_TICK_MS: '50',
        CHECKPOINT_INTERVAL_MS: '600000',
        CHECKPOINT_EVERY_EVENTS: '1000000',
      });
      if (duplicateWindowMs !== undefined) {
        // Shrink the server's dedup window: only the sink's own check can stop a second copy.
        const jsm = await jetstreamManager(dep.nc);
        const info = await jsm.streams.info(dep.names.notificationsStream);
        await jsm.streams.update(dep.names.notificationsStream, {
          ...info.config,
          duplicate_window: nanos(duplicateWindowMs),
        });
      }
      const a = worker(dep, 'crash-a');
      await waitReady(a);
      const random = rng(5);
      const first = names('crash', 24);
      await d.round(0, bursts(random, first, d.sent), IN_BURST_MS);
      const fired = expectedFromBursts(d.sent).windows.map((w) => w.summaryId);
      await eventually(
        () => (fired.every((id) => publishedIds(a).has(id)) ? true : undefined),
        30_000,
      );
      // Let the first windows age past 3 Q (and past the shrunken dedup window), then open more:
      // new customers, and a second burst for half of the first ones.
      await sleep(Math.max(2 * quiet, (duplicateWindowMs ?? 0) + 500));
      await d.round(
        1,
        bursts(random, [...names('late', 16), ...first.slice(0, 12)], d.sent),
        IN_BURST_MS,
      );
      expect((await a.stop('SIGKILL')).signal).toBe('SIGKILL');

      // The scenario: summaries of the first bursts are out, yet no checkpoint saved anything.
      const before = await readNotifications(dep);
      expect(before.summaries.map((s) => s.summaryId).sort()).toEqual([...fired].sort());
      expect((await watermarks(dep)).map((w) => w.seq)).toEqual(
        Array.from({ length: dep.partitions }, () => 0),
      );
      // Nothing indexed either: the open windows can only be found again by replaying the log.
      expect((await indexedTimers(dep)).size).toBe(0);

      const b = worker(dep, 'crash-b', {
        CHECKPOINT_INTERVAL_MS: '200',
        CHECKPOINT_EVERY_EVENTS: '5000',
      });
      await waitReady(b);
      await waitAllClosed(dep, d.lastChangeSeqs());
      const { summaries, log } = await checkNotifications(dep, { quietMs: quiet, maxMs: 60_000 });
      expectBurstWindows(summaries, log, d.sent);
      // Those summaries are the ones stored before the crash, untouched (same stream content).
      for (const s of before.summaries) {
        expect(summaries.find((x) => x.summaryId === s.summaryId)).toEqual(normalize(s));
      }
      // The new owner really replayed the crashed owner's work...
      const replayed = b
        .logs()
        .filter((l) => l.msg === 'partition caught up')
        .reduce((n, l) => n + Number(l['replayed']), 0);
      expect(replayed).toBeGreaterThan(0);
      // ...and never stored a summary of the first bursts again.
      const again = [...publishedIds(b, false)].filter((id) => fired.includes(id));
      expect(again).toEqual([]);
    },
  );

  it('(c) the fleet scales 1 → 3 → 1 with windows open', async () => {
    const quiet = 4000;
    const env = { SUMMARY_QUIET_MS: String(quiet), SUMMARY_MAX_MS: '60000', TIMER_TICK_MS: '50' };
    const { dep, d } = await deploy(env);
    const random = rng(9);
    const one = worker(dep, 'scale-1');
    await waitReady(one);
    const s0 = names('s0', 24);
    await d.round(0, bursts(random, s0, d.sent), IN_BURST_MS);
    // Scale out while those windows are open.
    const two = worker(dep, 'scale-2');
    const three = worker(dep, 'scale-3');
    await Promise.all([waitReady(two), waitReady(three)]);
    expect((await readNotifications(dep)).summaries, 'windows open during scale-out').toEqual([]);
    // The first windows close on whoever owns them now; then more open, and the fleet scales in.
    await waitAllClosed(dep, d.lastChangeSeqs());
    const s1 = names('s1', 24);
    await d.round(1, bursts(random, s1, d.sent), IN_BURST_MS);
    const marks = [two.logs().length, three.logs().length] as const;
    const [e2, e3] = await Promise.all([two.stop('SIGTERM'), three.stop('SIGTERM')]);
    expect([e2.code, e3.code]).toEqual([0, 0]);
    const movedBack = new Set([
      ...stoppedPartitions(two, marks[0]),
      ...stoppedPartitions(three, marks[1]),
    ]);
    await d.round(2, bursts(random, names('s2', 24), d.sent), IN_BURST_MS);
    // A second burst for the first customers, well apart from their first one.
    await d.round(3, bursts(random, s0, d.sent), IN_BURST_MS);
    await waitAllClosed(dep, d.lastChangeSeqs());
    const { summaries, log } = await checkNotifications(dep, { quietMs: quiet, maxMs: 60_000 });
    expectBurstWindows(summaries, log, d.sent);
    expect(summaries.length).toBeGreaterThan(60);
    // Windows opened on the single worker were closed by the workers that took them over...
    const inMoved = (ids: readonly string[]) =>
      summaries
        .filter(
          (s) =>
            ids.includes(s.customerId) && movedBack.has(partitionOf(s.customerId, dep.partitions)),
        )
        .filter((s) => d.sent.some((x) => x.seq === s.firstSeq && x.round <= 1));
    const out = inMoved(s0);
    expect(out.length).toBeGreaterThan(0);
    const byTwoOrThree = new Set([...publishedIds(two, false), ...publishedIds(three, false)]);
    expect(out.filter((s) => !byTwoOrThree.has(s.summaryId))).toEqual([]);
    // ...and windows opened on them were closed by the single worker after the scale-in.
    const back = inMoved(s1);
    expect(back.length).toBeGreaterThan(0);
    expect(back.filter((s) => !publishedIds(one, false).has(s.summaryId))).toEqual([]);
  });

  it('(d) a zombie owner (SIGSTOP past the lease TTL, then SIGCONT) resumes after its lease expired', async () => {
    const quiet = 1500;
    const env = { SUMMARY_QUIET_MS: String(quiet), SUMMARY_MAX_MS: '60000', TIMER_TICK_MS: '50' };
    const { dep, d } = await deploy(env);
    const random = rng(13);
    const z1 = worker(dep, 'zombie-1');
    await waitReady(z1);
    const z2 = worker(dep, 'zombie-2');
    await waitReady(z2);
    await eventually(() => (z1.logs().some((l) => l.msg === 'rebalance') ? true : undefined));
    await d.round(0, bursts(random, names('z0', 30), d.sent), IN_BURST_MS);
    // Freeze the owner with its windows open; the lease TTL (3 s) passes while it sleeps.
    z1.signal('SIGSTOP');
    const frozenAt = z1.logs().length;
    // The other worker takes over and closes every window (its stored states say so).
    await waitAllClosed(dep, d.lastChangeSeqs(), 60_000);
    await d.round(1, bursts(random, names('z1', 20), d.sent), IN_BURST_MS);
    // Resume the zombie while the second windows are still open.
    z1.signal('SIGCONT');
    // It wakes up to find its leases gone: a rejected renew, or a runner fenced first (its
    // consumer was deleted, or its lease no longer valid at the next write), whichever comes first.
    await eventually(
      () =>
        z1
          .logs()
          .slice(frozenAt)
          .some((l) => l.msg === 'lease lost' || l.msg === 'partition failed, restarting')
          ? true
          : undefined,
      30_000,
    );
    // ...and, once the fleet hands it partitions again, goes on closing windows.
    await eventually(
      () =>
        z1
          .logs()
          .slice(frozenAt)
          .some((l) => l.msg === 'partition caught up')
          ? true
          : undefined,
      30_000,
    );
    await sleep(3 * quiet + 300);
    await d.round(2, bursts(random, [...names('z2', 20), ...names('z0', 10)], d.sent), IN_BURST_MS);
    await waitAllClosed(dep, d.lastChangeSeqs());
    const { summaries, log } = await checkNotifications(dep, { quietMs: quiet, maxMs: 60_000 });
    expectBurstWindows(summaries, log, d.sent);
    expect(summaries.length).toBeGreaterThan(60);
    // The takeover happened: the other worker closed windows the zombie had opened, and the
    // zombie closed windows again after it came back; no summary was stored twice (checked above).
    const z0ids = summaries.filter((s) => s.customerId.startsWith('z0-')).map((s) => s.summaryId);
    expect(z0ids.filter((id) => publishedIds(z2, false).has(id)).length).toBeGreaterThan(0);
    const afterWake = z1
      .logs()
      .slice(frozenAt)
      .filter((l) => l.msg === 'summary published');
    expect(afterWake.length).toBeGreaterThan(0);
  });

  // On replay the sink skips a summary when the customer's last notification has firstSeq >= this
  // one, which relies on one customer's summaries being stored in order: a later window's summary
  // must never be stored while an earlier one is still being retried, or a crash at that moment
  // would lose the earlier one. Here the earlier summary is too big for the stream
  // (max_msg_size) until the crash.
  it('(e) a summary still being retried when the owner crashes is not lost on replay', async () => {
    const quiet = 500;
    const { dep, d } = await deploy({
      SUMMARY_QUIET_MS: String(quiet),
      SUMMARY_MAX_MS: '60000',
      TIMER_TICK_MS: '50',
      CHECKPOINT_INTERVAL_MS: '600000',
      CHECKPOINT_EVERY_EVENTS: '1000000',
    });
    const a = worker(dep, 'retry-a');
    await waitReady(a);
    const jsm = await jetstreamManager(dep.nc);
    const setMaxMsgSize = async (bytes: number): Promise<void> => {
      const info = await jsm.streams.info(dep.names.notificationsStream);
      await jsm.streams.update(dep.names.notificationsStream, {
        ...info.config,
        max_msg_size: bytes,
      });
    };
    // Window 1 adds 200 items (summary ~2 kB); window 2 clears them (summary ~1 kB).
    await setMaxMsgSize(1500);
    const many = Array.from({ length: 200 }, (_, i) => 100 + i);
    await d.round(0, new Map([['big-1', [{ type: 'items.added', items: many }]]]), 0);
    // Window 1 closes (its timer entry is applied) but its summary cannot be stored yet.
    await eventually(
      async () =>
        (await readOrdersLog(dep)).some((r) => r.payload.kind === 'timer') ? true : undefined,
      15_000,
    );
    await sleep(3 * quiet);
    await d.round(1, new Map([['big-1', [{ type: 'order.cleared' }]]]), 0);
    const second = `sum-${d.sent[1]?.seq ?? 0}`;
    // Window 2 closes too (a second timer entry is applied)...
    await eventually(
      async () =>
        (await readOrdersLog(dep)).filter((r) => r.payload.kind === 'timer').length >= 2
          ? true
          : undefined,
      15_000,
    );
    await sleep(3 * quiet);
    // ...but its summary waits behind the first one: a customer's summaries are stored in order.
    expect(publishedIds(a).has(second)).toBe(false);
    expect((await a.stop('SIGKILL')).signal).toBe('SIGKILL');
    await setMaxMsgSize(-1);

    const b = worker(dep, 'retry-b', { CHECKPOINT_INTERVAL_MS: '200' });
    await waitReady(b);
    await waitAllClosed(dep, d.lastChangeSeqs());
    const { summaries, log } = await checkNotifications(dep, { quietMs: quiet, maxMs: 60_000 });
    expectBurstWindows(summaries, log, d.sent);
  });
});
