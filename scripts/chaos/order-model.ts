// The default chaos model: order-fleet's own order aggregator. Written apart from src/orders, so
// that a bug in the aggregator cannot hide in both. It checks
// - every customer's contents and event count against a fold of what was stored (0 lost, 0 twice);
// - the summaries the webhook received: per customer they chain (each starts where the previous
//   ended, none overlap), each repeat of a key is identical, each window has one key, the last
//   one equals the final contents, and they are exactly the summaries the log implies.

import { pino } from 'pino';
import { OrderPublisher, type OrderEventInput } from '../../src/publisher/order-publisher.js';
import type {
  ChaosModel,
  CheckContext,
  CustomerWrite,
  ModelCheck,
  ModelOptions,
  ModelPublisher,
  PublishedEvent,
} from './model.js';
import type { StoredMessage } from './streams.js';
import { VIOLATION_NAMES, type Violation } from './violations.js';

export type ChaosOrderEvent = OrderEventInput & { readonly id: string };

interface Expected {
  items: number[];
  events: number;
  /** The customer's events in stream order, to pinpoint which ones a stored state lacks. */
  log: { seq: number; type: string; items: readonly number[] }[];
}

interface Summary {
  readonly summaryId: string;
  readonly customerId: string;
  readonly added: readonly number[];
  readonly removed: readonly number[];
  readonly contents: readonly number[];
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly reason: string;
}

/** Details listed per violation kind; the rest are counted. */
const MAX_LISTED = 20;

const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);
const same = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Multiset a − b. */
function minus(a: readonly number[], b: readonly number[]): number[] {
  const left = [...b];
  const out: number[] = [];
  for (const x of a) {
    const at = left.indexOf(x);
    if (at >= 0) left.splice(at, 1);
    else out.push(x);
  }
  return out;
}

function applyChange(items: number[], type: string, changed: readonly number[]): number[] {
  if (type === 'items.added') return [...items, ...changed];
  if (type === 'order.cleared') return [];
  if (type === 'items.removed') return minus(items, changed);
  return items;
}

export function createModel(options: ModelOptions): ChaosModel<ChaosOrderEvent> {
  const customers = Math.max(1, options.customers);
  return {
    name: 'orders',
    // Short windows, so that many open and close (and are delivered) while faults happen.
    workerEnv: { SUMMARY_QUIET_MS: '1500', SUMMARY_MAX_MS: '6000' },
    nextEvent(random, n) {
      const customerId = `c-${Math.floor(random() * customers)}`;
      const roll = random();
      const items = Array.from({ length: 1 + Math.floor(random() * 3) }, () =>
        Math.floor(random() * 20),
      );
      const id = `chaos-${options.seed}-${n}`;
      const event: ChaosOrderEvent =
        roll < 0.7
          ? { id, type: 'items.added', items }
          : roll < 0.94
            ? { id, type: 'items.removed', items }
            : roll < 0.97
              ? { id, type: 'order.cleared' }
              : { id, type: 'order.created' };
      return { customerId, event };
    },
    eventId: (event) => event.id,
    async openPublisher({ nc, names, partitions }): Promise<ModelPublisher<ChaosOrderEvent>> {
      const publisher = new OrderPublisher(nc, {
        names,
        partitions,
        limits: { maxPayloadBytes: 16 * 1024, maxItemsPerEvent: 1000 },
        maxInFlight: 256,
        // A node restart or election can take a while; the SDK retries with the same id.
        maxAttempts: 1000,
        timeoutMs: 5000,
        log: pino({ level: 'silent' }),
      });
      return Promise.resolve({
        publish: async (customerId, event) => ({
          seq: (await publisher.publish(customerId, event)).seq,
        }),
        close: () => publisher.close(),
      });
    },
    check: (ctx) => checkOrders(ctx),
  };
}

async function checkOrders(ctx: CheckContext<ChaosOrderEvent>): Promise<ModelCheck> {
  const violations: Violation[] = [];
  const log = await ctx.readStream(ctx.names.ordersStream);
  const duplicates = streamDuplicates(ctx.published, log, violations);
  const collisions: string[] = [];
  const expected = foldExpected([...ctx.published, ...duplicates], collisions);
  for (const c of collisions.slice(0, MAX_LISTED))
    violations.push({ name: VIOLATION_NAMES.publishedNotLog, detail: c });
  const contents = checkContents(expected, ctx, violations, log);
  const logMismatch = compareWithLog(expected, log, `${ctx.names.ordersPrefix}.`, violations);
  const implied = summariesFromLog(log, `${ctx.names.ordersPrefix}.`);
  const deliveries = checkDeliveries(expected, implied, ctx, violations);
  return {
    violations,
    counts: {
      ...contents,
      ...deliveries,
      logEntries: log.length,
      streamDuplicates: duplicates.length,
      publishedNotLog: logMismatch,
    },
  };
}

/**
 * The model folds what the publisher was acknowledged; the log is what the fleet consumes. Where
 * a customer's event count differs between the two, the harness's view of the log is wrong, not
 * the fleet (named apart so a mismatch above can be attributed).
 */
function compareWithLog(
  expected: ReadonlyMap<string, Expected>,
  log: readonly StoredMessage[],
  prefix: string,
  violations: Violation[],
): number {
  const inLog = new Map<string, number>();
  for (const m of log) {
    if (!m.subject.startsWith(prefix)) continue;
    const tokens = m.subject.slice(prefix.length).split('.');
    if (tokens.length !== 2) continue; // <p>.<customer>; timer entries have a kind token more
    const customerId = tokens[1] ?? '';
    inLog.set(customerId, (inLog.get(customerId) ?? 0) + 1);
  }
  let differ = 0;
  // Which log entries the acknowledgements do not account for: by sequence, the ones no
  // acknowledged publish points at.
  const acked = new Set<number>();
  for (const exp of expected.values()) for (const l of exp.log) acked.add(l.seq);
  const unaccounted = log.filter((m) => {
    if (!m.subject.startsWith(prefix) || acked.has(m.seq)) return false;
    return m.subject.slice(prefix.length).split('.').length === 2;
  });
  for (const m of unaccounted.slice(0, MAX_LISTED))
    violations.push({
      name: VIOLATION_NAMES.publishedNotLog,
      detail: `seq ${m.seq} (${m.subject}, Nats-Msg-Id ${m.msgId ?? 'none'}, at ${new Date(m.timeMs).toISOString()}) is an event in the log that no acknowledged publish points at: ${m.data.slice(0, 120)}`,
      data: { seq: m.seq, subject: m.subject, msgId: m.msgId },
    });
  for (const [customerId, exp] of expected) {
    const n = inLog.get(customerId) ?? 0;
    if (n === exp.events) continue;
    differ++;
    if (differ <= MAX_LISTED)
      violations.push({
        name: VIOLATION_NAMES.publishedNotLog,
        detail: `${customerId}: the publisher was acknowledged ${exp.events} events, the log holds ${n}`,
        data: { customerId, acknowledged: exp.events, inLog: n },
      });
  }
  return differ;
}

/**
 * Publishes the stream stored more than once (same Nats-Msg-Id, several sequences): each is a
 * violation at the server, and each extra copy is returned so the fleet is checked against the
 * log as stored (a worker must apply every stored entry, it cannot know which copy was "meant").
 */
function streamDuplicates(
  published: readonly PublishedEvent<ChaosOrderEvent>[],
  log: readonly StoredMessage[],
  violations: Violation[],
): PublishedEvent<ChaosOrderEvent>[] {
  const byId = new Map<string, PublishedEvent<ChaosOrderEvent>>();
  for (const p of published) byId.set(p.event.id, p);
  const seqsById = new Map<string, number[]>();
  for (const m of log) {
    if (m.msgId === undefined || !byId.has(m.msgId)) continue;
    seqsById.set(m.msgId, [...(seqsById.get(m.msgId) ?? []), m.seq]);
  }
  const extra: PublishedEvent<ChaosOrderEvent>[] = [];
  for (const [id, seqs] of seqsById) {
    if (seqs.length < 2) continue;
    const p = byId.get(id);
    if (p === undefined) continue;
    if (extra.length < MAX_LISTED)
      violations.push({
        name: VIOLATION_NAMES.streamDuplicate,
        detail: `${p.customerId}: the publish ${id} is stored at seqs ${seqs.join(', ')} (the publisher was acked ${p.seq ?? 'never'})`,
        data: { customerId: p.customerId, msgId: id, seqs },
      });
    for (const seq of seqs) if (seq !== p.seq) extra.push({ ...p, seq });
  }
  return extra;
}

/** Expected state per customer: events folded in stream order, each stored sequence once. */
function foldExpected(
  published: readonly PublishedEvent<ChaosOrderEvent>[],
  collisions: string[] = [],
): Map<string, Expected> {
  const bySeq = new Map<number, PublishedEvent<ChaosOrderEvent>>();
  for (const p of published) {
    if (p.seq === undefined) continue;
    const other = bySeq.get(p.seq);
    // Two publishes acknowledged with one sequence: only one of them can be there (see
    // PUBLISHED_NOT_LOG for what the log holds instead).
    if (other !== undefined)
      collisions.push(`${other.event.id} and ${p.event.id} both acked as seq ${p.seq}`);
    bySeq.set(p.seq, p);
  }
  const out = new Map<string, Expected>();
  for (const seq of [...bySeq.keys()].sort((a, b) => a - b)) {
    const p = bySeq.get(seq);
    if (p === undefined) continue;
    let e = out.get(p.customerId);
    if (e === undefined) out.set(p.customerId, (e = { items: [], events: 0, log: [] }));
    e.events++;
    const items = 'items' in p.event ? p.event.items : [];
    e.items = applyChange(e.items, p.event.type, items);
    e.log.push({ seq, type: p.event.type, items });
  }
  return out;
}

function checkContents(
  expected: ReadonlyMap<string, Expected>,
  ctx: CheckContext<ChaosOrderEvent>,
  violations: Violation[],
  log: readonly StoredMessage[],
): Record<string, number> {
  const bySeq = new Map(log.map((m) => [m.seq, m]));
  const where = (seq: number): string => {
    const m = bySeq.get(seq);
    return m === undefined
      ? String(seq)
      : `${seq} (${m.subject} at ${new Date(m.timeMs).toISOString()})`;
  };
  let lost = 0;
  let doubled = 0;
  let mismatched = 0;
  const report = (v: Violation): void => {
    mismatched++;
    if (mismatched <= MAX_LISTED) violations.push(v);
  };
  for (const [customerId, exp] of expected) {
    const stored = ctx.stored.get(customerId);
    const state = stored?.state as { items?: unknown; events?: unknown } | undefined;
    const items = Array.isArray(state?.items) ? (state.items as number[]) : undefined;
    const events = typeof state?.events === 'number' ? state.events : undefined;
    if (stored === undefined || items === undefined || events === undefined) {
      lost += exp.events;
      report({
        name: VIOLATION_NAMES.customerMissing,
        detail: `${customerId}: no stored state (expected ${exp.events} events, [${exp.items.join(',')}])`,
        data: { customerId },
      });
      continue;
    }
    if (events !== exp.events || !same(items, exp.items)) {
      if (events < exp.events) lost += exp.events - events;
      if (events > exp.events) doubled += events - exp.events;
      const missing = events < exp.events ? whichMissing(exp, items, exp.events - events) : [];
      const firstBad = firstMiscountedWrite(exp, ctx.writes.get(customerId));
      report({
        name: VIOLATION_NAMES.contentsMismatch,
        detail: `${customerId}: expected ${exp.events} events [${exp.items.join(',')}], stored ${events} events [${items.join(',')}] (lastSeq ${stored.lastSeq})${missing.length > 0 ? `; the stored state is the fold without seq ${missing.map((m) => m.map(where).join(' + ')).join(' or ')}` : ''}${firstBad}`,
        data: {
          customerId,
          expected: { items: exp.items, events: exp.events },
          stored: { items, events, lastSeq: stored.lastSeq },
          missingSeqCandidates: missing,
          eventSeqs: exp.log.map((l) => l.seq),
        },
      });
    }
  }
  for (const customerId of ctx.stored.keys()) {
    if (expected.has(customerId)) continue;
    report({
      name: VIOLATION_NAMES.customerMissing,
      detail: `${customerId}: stored, but nothing was published for it`,
      data: { customerId },
    });
  }
  if (mismatched > MAX_LISTED)
    violations.push({
      name: VIOLATION_NAMES.contentsMismatch,
      detail: `${mismatched - MAX_LISTED} more customers differ from the model (not listed)`,
    });
  return { customers: expected.size, customersMismatched: mismatched, lost, doubled };
}

/**
 * The first write of a customer whose event count differs from what the log holds up to its
 * lastSeq, with the write before it: when, and from which state, an entry was applied twice or
 * skipped, to line up with the owners' logs.
 */
function firstMiscountedWrite(exp: Expected, writes: readonly CustomerWrite[] | undefined): string {
  if (writes === undefined) return '';
  const upTo = (seq: number): number => exp.log.filter((l) => l.seq <= seq).length;
  const eventsOf = (w: CustomerWrite): number | undefined => {
    const e = (w.state as { events?: unknown } | undefined)?.events;
    return typeof e === 'number' ? e : undefined;
  };
  const describe = (w: CustomerWrite): string =>
    `revision ${w.revision} at +${(w.atMs / 1000).toFixed(1)}s (lastSeq ${w.lastSeq}, ${eventsOf(w) ?? '?'} events, the log has ${upTo(w.lastSeq)})`;
  for (const [i, w] of writes.entries()) {
    const e = eventsOf(w);
    if (e === undefined || e === upTo(w.lastSeq)) continue;
    const prev = writes[i - 1];
    const kind = e > upTo(w.lastSeq) ? 'over' : 'under';
    const between =
      prev === undefined
        ? ''
        : `; the log's events of this customer in (${prev.lastSeq}, ${w.lastSeq}]: ${exp.log
            .filter((l) => l.seq > prev.lastSeq && l.seq <= w.lastSeq)
            .map((l) => l.seq)
            .join(',')}`;
    return `; first ${kind}-counted write: ${describe(w)}${prev === undefined ? '' : `, after ${describe(prev)}`}${between}`;
  }
  return '';
}

/**
 * Which one or two events, left out, make the fold equal the stored contents: pinpoints lost
 * events so they can be lined up with the owners' logs. At most a few candidate sets.
 */
function whichMissing(exp: Expected, stored: readonly number[], count: number): number[][] {
  const fold = (skip: ReadonlySet<number>): number[] => {
    let items: number[] = [];
    for (const l of exp.log) if (!skip.has(l.seq)) items = applyChange(items, l.type, l.items);
    return items;
  };
  const out: number[][] = [];
  const seqs = exp.log.map((l) => l.seq);
  if (count === 1) {
    for (const a of seqs) if (same(fold(new Set([a])), stored)) out.push([a]);
  } else if (count === 2 && seqs.length <= 200) {
    for (let i = 0; i < seqs.length && out.length < 5; i++)
      for (let j = i + 1; j < seqs.length && out.length < 5; j++) {
        const pair = [seqs[i] ?? 0, seqs[j] ?? 0];
        if (same(fold(new Set(pair)), stored)) out.push(pair);
      }
  }
  return out.slice(0, 5);
}

/** Which summaries the log implies: an independent re-fold of changes and timer entries. */
function summariesFromLog(log: readonly StoredMessage[], prefix: string): Map<string, Summary> {
  interface Open {
    openedSeq: number;
    lastChangeSeq: number;
    base: number[];
  }
  const items = new Map<string, number[]>();
  const open = new Map<string, Open>();
  const out = new Map<string, Summary>();
  for (const m of log) {
    const [, customerId = '', kind] = m.subject.slice(prefix.length).split('.');
    let json: {
      type?: string;
      items?: number[];
      window?: number;
      lastChangeSeq?: number;
      reason?: string;
    };
    try {
      json = JSON.parse(m.data) as typeof json;
    } catch {
      // Not JSON: the fleet dead-letters it; it changes nobody's contents.
      continue;
    }
    const current = items.get(customerId) ?? [];
    if (kind === 'timer') {
      const w = open.get(customerId);
      if (w === undefined || w.openedSeq !== json.window) continue;
      if (json.reason === 'quiet' && w.lastChangeSeq !== json.lastChangeSeq) continue;
      open.delete(customerId);
      const added = minus(current, w.base);
      const removed = minus(w.base, current);
      if (added.length + removed.length === 0) continue;
      const summaryId = `sum-${w.openedSeq}`;
      out.set(summaryId, {
        summaryId,
        customerId,
        added: sorted(added),
        removed: sorted(removed),
        contents: current,
        firstSeq: w.openedSeq,
        lastSeq: w.lastChangeSeq,
        reason: json.reason ?? '',
      });
      continue;
    }
    if (json.type === 'order.created' || json.type === undefined) continue;
    const w = open.get(customerId);
    if (w === undefined)
      open.set(customerId, { openedSeq: m.seq, lastChangeSeq: m.seq, base: current });
    else w.lastChangeSeq = m.seq;
    items.set(customerId, applyChange(current, json.type, json.items ?? []));
  }
  return out;
}

/** JSON with sorted keys: two bodies that say the same thing compare equal. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

function asSummary(body: unknown): Summary | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as Record<string, unknown>;
  const nums = (x: unknown): x is number[] =>
    Array.isArray(x) && x.every((n) => typeof n === 'number');
  if (
    typeof b['summaryId'] !== 'string' ||
    typeof b['customerId'] !== 'string' ||
    !nums(b['added']) ||
    !nums(b['removed']) ||
    !nums(b['contents']) ||
    typeof b['firstSeq'] !== 'number' ||
    typeof b['lastSeq'] !== 'number'
  )
    return undefined;
  return {
    summaryId: b['summaryId'],
    customerId: b['customerId'],
    added: b['added'],
    removed: b['removed'],
    contents: b['contents'],
    firstSeq: b['firstSeq'],
    lastSeq: b['lastSeq'],
    reason: typeof b['reason'] === 'string' ? b['reason'] : '',
  };
}

function checkDeliveries(
  expected: ReadonlyMap<string, Expected>,
  implied: ReadonlyMap<string, Summary>,
  ctx: CheckContext<ChaosOrderEvent>,
  violations: Violation[],
): Record<string, number> {
  const listed = new Map<string, number>();
  const add = (v: Violation): void => {
    const n = (listed.get(v.name) ?? 0) + 1;
    listed.set(v.name, n);
    if (n <= MAX_LISTED) violations.push(v);
  };
  const byKey = new Map<
    string,
    { raw: string; body: unknown; summary: Summary | undefined; requests: number }
  >();
  let refused = 0;
  for (const d of ctx.deliveries) {
    if (!d.accepted) refused++;
    const key = d.key ?? '';
    const summary = asSummary(d.body);
    const seen = byKey.get(key);
    if (seen === undefined) {
      byKey.set(key, { raw: d.raw, body: d.body, summary, requests: 1 });
      if (summary === undefined)
        add({
          name: VIOLATION_NAMES.windowKeys,
          detail: `delivery #${d.n} under key ${JSON.stringify(key)} is not a summary: ${d.raw.slice(0, 200)}`,
        });
      else if (summary.summaryId !== key)
        add({
          name: VIOLATION_NAMES.windowKeys,
          detail: `delivery #${d.n}: Idempotency-Key ${JSON.stringify(key)} but summaryId ${summary.summaryId}`,
        });
      continue;
    }
    seen.requests++;
    if (seen.raw !== d.raw && canonical(d.body) !== canonical(seen.body))
      add({
        name: VIOLATION_NAMES.repeatDiffers,
        detail: `key ${key}: delivery #${d.n} differs from the first one: ${d.raw.slice(0, 300)} vs ${seen.raw.slice(0, 300)}`,
        data: { key },
      });
  }
  const accepted = new Set<string>();
  for (const d of ctx.deliveries) if (d.accepted && d.key !== undefined) accepted.add(d.key);

  // One key per window (customer + first sequence).
  const windows = new Map<string, Set<string>>();
  const perCustomer = new Map<string, Summary[]>();
  for (const [key, { summary }] of byKey) {
    if (summary === undefined) continue;
    const w = `${summary.customerId}@${summary.firstSeq}`;
    const keys = windows.get(w) ?? new Set<string>();
    keys.add(key);
    windows.set(w, keys);
    if (!accepted.has(key)) continue;
    const list = perCustomer.get(summary.customerId) ?? [];
    list.push(summary);
    perCustomer.set(summary.customerId, list);
  }
  for (const [w, keys] of windows)
    if (keys.size > 1)
      add({
        name: VIOLATION_NAMES.windowKeys,
        detail: `window ${w} delivered under ${keys.size} keys: ${[...keys].join(', ')}`,
      });

  // Chains: each summary starts where the previous one ended; the last equals the final contents.
  for (const [customerId, exp] of expected) {
    const list = (perCustomer.get(customerId) ?? []).sort((a, b) => a.firstSeq - b.firstSeq);
    let contents: readonly number[] = [];
    let lastSeq = 0;
    let lastId = '(start)';
    for (const s of list) {
      if (s.firstSeq <= lastSeq)
        add({
          name: VIOLATION_NAMES.summaryOverlap,
          detail: `${customerId}: ${s.summaryId} (seq ${s.firstSeq}–${s.lastSeq}) overlaps ${lastId} (… ${lastSeq})`,
        });
      const base = minus([...s.contents, ...s.removed], s.added);
      if (!same(sorted(base), sorted(contents)))
        add({
          name: VIOLATION_NAMES.summaryGap,
          detail: `${customerId}: ${s.summaryId} starts from [${sorted(base).join(',')}] but ${lastId} ended at [${contents.join(',')}]`,
        });
      contents = s.contents;
      lastSeq = s.lastSeq;
      lastId = s.summaryId;
    }
    // As multisets: a window whose net change is empty (remove 10, add 10) sends nothing by
    // design, yet it moves 10 to the end of the order.
    if (!same(sorted(contents), sorted(exp.items)))
      add({
        name: VIOLATION_NAMES.lastSummaryNotFinal,
        detail: `${customerId}: last summary ${lastId} has [${contents.join(',')}], final contents [${exp.items.join(',')}]`,
      });
  }

  // Exactly the summaries the log implies, with the contents it implies.
  for (const [id, s] of implied) {
    const got = byKey.get(id);
    if (got === undefined || !accepted.has(id)) {
      add({
        name: VIOLATION_NAMES.summaryMissing,
        detail: `${s.customerId}: ${id} (seq ${s.firstSeq}–${s.lastSeq}) is implied by the log but was never accepted by the webhook`,
      });
      continue;
    }
    const d = got.summary;
    if (
      d === undefined ||
      !same(sorted(d.added), s.added) ||
      !same(sorted(d.removed), s.removed) ||
      !same(d.contents, s.contents) ||
      d.lastSeq !== s.lastSeq ||
      d.customerId !== s.customerId
    )
      add({
        name: VIOLATION_NAMES.summaryUnexpected,
        detail: `${id}: delivered ${got.raw.slice(0, 300)}, the log implies ${JSON.stringify(s)}`,
      });
  }
  for (const key of accepted)
    if (!implied.has(key))
      add({
        name: VIOLATION_NAMES.summaryUnexpected,
        detail: `${key} was delivered but the log implies no such summary`,
      });
  for (const [name, n] of listed)
    if (n > MAX_LISTED)
      violations.push({ name, detail: `${n - MAX_LISTED} more of these (not listed)` });

  const requests = ctx.deliveries.length;
  return {
    windows: implied.size,
    deliveries: requests,
    deliveredKeys: accepted.size,
    repeats: requests - byKey.size,
    refusedByReceiver: refused,
  };
}
