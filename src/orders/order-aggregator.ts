import { z } from 'zod';
import { RESERVED_ID_PREFIX, type OrderEvent } from '../contract/event.js';
import { ErrorCode, OrderFleetError } from '../errors.js';
import type { Aggregator, LogEntry, PendingTimer } from './aggregator.js';
import type { TimerCodec } from '../state/timer-snapshot.js';
import {
  DEFAULT_SUMMARY_POLICY,
  fastTimerEntry,
  multisetMinus,
  summaryId,
  SummaryWindowSchema,
  timerCloses,
  windowDeadline,
  type SummaryNotification,
  type SummaryPolicy,
  type SummaryWindow,
  type TimerEntry,
} from './summary.js';

/** An entry of a customer's log: a published order event or a timer firing appended by the fleet. */
export type OrderEntry = OrderEvent | TimerEntry;

/** What the original GenServer held for a customer: the ordered list of items in their plan. */
export interface OrderState {
  readonly items: readonly number[];
  /** True once an `order.created` was seen (idempotent: a second one changes nothing). */
  readonly created: boolean;
  /** Items asked to be removed that were not in the order (ignored, but counted). */
  readonly absentRemovals: number;
  /** Order events applied so far. */
  readonly events: number;
  /** The open summary window, if any. */
  readonly window: SummaryWindow | null;
  /** Windows closed so far. */
  readonly summaries: number;
}

const OrderStateV1 = z.object({
  items: z.array(z.number().int()),
  created: z.boolean(),
  absentRemovals: z.number().int().min(0),
  events: z.number().int().min(0),
});
const OrderStateV2 = OrderStateV1.extend({
  window: SummaryWindowSchema.nullable(),
  summaries: z.number().int().min(0),
});

/** Shared by every empty order (states are never mutated). */
const EMPTY: readonly number[] = Object.freeze([]);

const INITIAL: OrderState = Object.freeze({
  items: EMPTY,
  created: false,
  absentRemovals: 0,
  events: 0,
  window: null,
  summaries: 0,
});

/** Removes one occurrence of each listed item, in order; returns how many were absent. */
export function removeItems(
  items: readonly number[],
  remove: readonly number[],
): { items: number[]; absent: number } {
  const next = [...items];
  let absent = 0;
  for (const item of remove) {
    const at = next.indexOf(item);
    if (at === -1) absent++;
    else next.splice(at, 1);
  }
  return { items: next, absent };
}

/** Applies an order event to the contents (no windows): the original aggregator. */
export function applyOrderEvent(state: OrderState, event: OrderEvent): OrderState {
  const events = state.events + 1;
  switch (event.type) {
    case 'order.created':
      return { ...state, created: true, events };
    case 'items.added':
      return { ...state, items: [...state.items, ...event.items], events };
    case 'items.removed': {
      const { items, absent } = removeItems(state.items, event.items);
      return { ...state, items, absentRemovals: state.absentRemovals + absent, events };
    }
    case 'order.cleared':
      return { ...state, items: [], events };
  }
}

/** The window after a change: opened by the first change after a summary, else extended. */
function touchedWindow(state: OrderState, entry: LogEntry<OrderEntry>): SummaryWindow {
  const open = state.window;
  return {
    openedSeq: open === null ? entry.seq : open.openedSeq,
    openedAtMs: open === null ? entry.timeMs : open.openedAtMs,
    lastChangeSeq: entry.seq,
    lastChangeAtMs: entry.timeMs,
    itemsAtOpen: open === null ? state.items : open.itemsAtOpen,
  };
}

/**
 * One new state per applied entry, built in one literal with a fixed shape (no intermediate
 * copies, no spread): this runs for every event a worker applies, so its allocations are the
 * worker's garbage. Equal, field by field, to `applyOrderEvent` plus the window bookkeeping.
 */
export function applyOrderEntry(state: OrderState, entry: LogEntry<OrderEntry>): OrderState {
  const payload = entry.payload;
  let items = state.items;
  let absentRemovals = state.absentRemovals;
  switch (payload.type) {
    case 'summary.timer':
      return timerCloses(state.window, payload)
        ? {
            items,
            created: state.created,
            absentRemovals,
            events: state.events,
            window: null,
            summaries: state.summaries + 1,
          }
        : state;
    case 'order.created':
      return {
        items,
        created: true,
        absentRemovals,
        events: state.events + 1,
        window: state.window,
        summaries: state.summaries,
      };
    case 'items.added':
      items = items.concat(payload.items);
      break;
    case 'items.removed': {
      const removed = removeItems(items, payload.items);
      items = removed.items;
      absentRemovals += removed.absent;
      break;
    }
    case 'order.cleared':
      items = EMPTY;
      break;
  }
  return {
    items,
    created: state.created,
    absentRemovals,
    events: state.events + 1,
    window: touchedWindow(state, entry),
    summaries: state.summaries,
  };
}

/** The summary a closing timer entry produces, or none when the window's net change is empty. */
export function summarize(
  customerId: string,
  before: OrderState,
  after: OrderState,
  entry: LogEntry<OrderEntry>,
): SummaryNotification[] {
  const window = before.window;
  if (entry.payload.type !== 'summary.timer' || window === null || after.window !== null) return [];
  const added = multisetMinus(after.items, window.itemsAtOpen);
  const removed = multisetMinus(window.itemsAtOpen, after.items);
  if (added.length === 0 && removed.length === 0) return [];
  return [
    {
      summaryId: summaryId(window),
      customerId,
      added,
      removed,
      contents: after.items,
      firstSeq: window.openedSeq,
      lastSeq: window.lastChangeSeq,
      openedAt: new Date(window.openedAtMs).toISOString(),
      closedAt: new Date(entry.timeMs).toISOString(),
      reason: entry.payload.reason,
    },
  ];
}

/** The timer an open window waits for. */
export function orderTimer(
  state: OrderState,
  policy: SummaryPolicy,
): PendingTimer<OrderEntry> | undefined {
  const window = state.window;
  if (window === null) return undefined;
  const { dueAtMs, reason } = windowDeadline(window, policy);
  return windowTimer(window.openedSeq, window.lastChangeSeq, reason, dueAtMs);
}

/** A window's timer, from the four facts it is made of. */
function windowTimer(
  openedSeq: number,
  lastChangeSeq: number,
  reason: 'quiet' | 'max',
  dueAtMs: number,
): PendingTimer<OrderEntry> {
  // The id names the window and, for a quiet timer, the change it waited after: the same on
  // every owner, so JetStream's duplicate window stores one entry however many fire it.
  const id =
    reason === 'max'
      ? `${RESERVED_ID_PREFIX}tmr-${openedSeq}-max`
      : `${RESERVED_ID_PREFIX}tmr-${openedSeq}-q${lastChangeSeq}`;
  return {
    dueAtMs,
    id,
    series: `w${openedSeq}`,
    entry: { type: 'summary.timer', window: openedSeq, lastChangeSeq, reason, dueAtMs },
  };
}

/**
 * Order timers as 4-number tuples for the timer snapshot of a clean checkpoint: id, series and
 * entry are derived from the window's facts exactly as {@link orderTimer} derives them.
 */
export const orderTimerCodec: TimerCodec<OrderEntry> = {
  encode(timer) {
    const entry = timer.entry;
    if (entry.type !== 'summary.timer') {
      throw new OrderFleetError(ErrorCode.StateCorrupt, `not a timer entry: ${entry.type}`);
    }
    return [entry.window, entry.lastChangeSeq, entry.reason === 'max' ? 1 : 0, timer.dueAtMs];
  },
  decode(tuple) {
    const [window, lastChangeSeq, max, dueAtMs] = tuple;
    const entry = fastTimerEntry({
      type: 'summary.timer',
      window,
      lastChangeSeq,
      reason: max === 1 ? 'max' : 'quiet',
      dueAtMs,
    });
    if (entry === undefined || tuple.length !== 4 || (max !== 0 && max !== 1)) {
      throw new OrderFleetError(ErrorCode.StateCorrupt, 'unreadable timer in a timer snapshot');
    }
    return windowTimer(entry.window, entry.lastChangeSeq, entry.reason, entry.dueAtMs);
  },
};

/** Reads any stored version with the schemas alone (the reference for the fast path). */
export function deserializeWithSchema(version: number, data: unknown): OrderState {
  const schema = version === 1 ? OrderStateV1 : version === 2 ? OrderStateV2 : undefined;
  if (schema === undefined) {
    throw new OrderFleetError(ErrorCode.StateCorrupt, `unknown order state version ${version}`);
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    throw new OrderFleetError(
      ErrorCode.StateCorrupt,
      `stored order state does not match version ${version}`,
      { cause: parsed.error },
    );
  }
  // Version 1 predates summary windows: no window open, none sent.
  return { window: null, summaries: 0, ...parsed.data };
}

/**
 * Hand-written check of a stored version-2 state (a parsed JSON value): the state the schema path
 * of `deserialize` would return (known keys only, same key order), or `undefined` when not sure. Proved
 * equivalent by a property test (test/unit/order-state-fast-path.test.ts).
 */
export function fastOrderStateV2(data: unknown): OrderState | undefined {
  if (!isRecord(data)) return undefined;
  const { items, created, absentRemovals, events, window, summaries } = data;
  if (
    !isIntArray(items) ||
    typeof created !== 'boolean' ||
    !isCount(absentRemovals) ||
    !isCount(events) ||
    !isCount(summaries)
  )
    return undefined;
  let open: SummaryWindow | null = null;
  if (window !== null) {
    if (!isRecord(window)) return undefined;
    const { openedSeq, openedAtMs, lastChangeSeq, lastChangeAtMs, itemsAtOpen } = window;
    if (
      !isCount(openedSeq) ||
      openedSeq < 1 ||
      !Number.isSafeInteger(openedAtMs) ||
      !isCount(lastChangeSeq) ||
      lastChangeSeq < 1 ||
      !Number.isSafeInteger(lastChangeAtMs) ||
      !isIntArray(itemsAtOpen)
    )
      return undefined;
    open = {
      openedSeq,
      openedAtMs: openedAtMs as number,
      lastChangeSeq,
      lastChangeAtMs: lastChangeAtMs as number,
      itemsAtOpen,
    };
  }
  // The key order of the schema path's `{ window: null, summaries: 0, ...parsed }`.
  return { window: open, summaries, items, created, absentRemovals, events };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isIntArray(value: unknown): value is number[] {
  if (!Array.isArray(value)) return false;
  for (let i = 0; i < value.length; i++) if (!Number.isSafeInteger(value[i])) return false;
  return true;
}

export function createOrderAggregator(
  policy: SummaryPolicy = DEFAULT_SUMMARY_POLICY,
): Aggregator<OrderState, OrderEntry, SummaryNotification> {
  return {
    name: 'orders',
    version: 2,
    initial: () => INITIAL,
    apply: applyOrderEntry,
    serialize: (state) => state,
    deserialize(version, data) {
      // Snapshots are written by us, so the fast path nearly always takes them; zod stays the
      // authority for anything else, and makes every error.
      return (
        (version === 2 ? fastOrderStateV2(data) : undefined) ?? deserializeWithSchema(version, data)
      );
    },
    outputs: summarize,
    timer: (_customerId, state) => orderTimer(state, policy),
  };
}

/** The order aggregator with the default summary policy. */
export const orderAggregator = createOrderAggregator();

/** How a customer's order answers a `contents` question. */
export function renderOrder(snapshot: {
  readonly customerId: string;
  readonly lastSeq: number;
  readonly state: OrderState;
}): {
  customerId: string;
  items: readonly number[];
  lastSeq: number;
} {
  return {
    customerId: snapshot.customerId,
    items: snapshot.state.items,
    lastSeq: snapshot.lastSeq,
  };
}
