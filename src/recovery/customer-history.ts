import type { JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import { assertCustomerId } from '../contract/customer-id.js';
import type { EventLimits } from '../contract/event.js';
import type { ResourceNames } from '../contract/names.js';
import { partitionOf } from '../contract/partition.js';
import { eventSubject } from '../contract/subjects.js';
import { describeError, isOrderFleetError } from '../errors.js';
import { APPLY_FAILED } from '../fleet/dead-letter.js';
import { readOrdered } from '../nats/ordered-read.js';
import type { Aggregator, LogEntry } from '../orders/aggregator.js';
import type { OrderEntry, OrderState } from '../orders/order-aggregator.js';
import { orderEntryDecoder, timerSubject } from '../orders/order-log.js';
import type { SummaryNotification } from '../orders/summary.js';
import { REDRIVE_OF_HEADER } from './dead-letter-admin.js';

/** One entry of a customer's log and what it did to the customer's state. */
export interface HistoryStep {
  readonly seq: number;
  readonly at: string;
  readonly kind: 'event' | 'timer' | 'rejected' | 'superseded';
  /** Event type, `summary.timer`, or undefined for a rejected entry. */
  readonly type: string | undefined;
  readonly id: string | undefined;
  readonly items: readonly number[];
  /** For a timer entry: why it fired, and whether it closed the window (else it was void). */
  readonly timer?: {
    readonly window: number;
    readonly reason: 'quiet' | 'max';
    readonly closed: boolean;
  };
  /** For an entry the worker does not apply: its dead-letter reason. */
  readonly rejected?: { readonly reason: string; readonly detail: string };
  /** Set when this entry was put back from the dead-letter stream (`<stream>:<seq>`). */
  readonly redriveOf?: string;
  readonly contents: readonly number[];
  /** The summary window this entry belongs to (`sum-<openedSeq>`), open or closed by it. */
  readonly window: string | null;
  /** The summary this entry produced (a closing timer entry with a net change). */
  readonly summary?: SummaryNotification;
}

export interface CustomerHistory {
  readonly customerId: string;
  readonly partition: number;
  readonly steps: readonly HistoryStep[];
  /** The fold of every entry: what the customer's state must be. */
  readonly contents: readonly number[];
  readonly lastSeq: number;
  readonly openWindow: string | null;
  /** The stream's head was removed by retention: the history (and the fold) may be incomplete. */
  readonly truncated: boolean;
  readonly firstStreamSeq: number;
}

export interface HistoryDeps {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly names: ResourceNames;
  readonly partitions: number;
  readonly limits: EventLimits;
  readonly aggregator: Aggregator<OrderState, OrderEntry, SummaryNotification>;
  /** Entries of a partition replaced by a redriven copy: runners never apply them. */
  readonly superseded: (partition: number) => Promise<ReadonlySet<number>>;
}

/**
 * A customer's entries from the log, in order, folded with the real aggregator: how the state
 * came to be. Two ordered consumers (the event subject and the timer subject: NATS 2.9 takes one
 * filter per consumer), merged by sequence. Entries the worker would dead-letter are shown as
 * rejected and not applied, exactly as the worker does.
 */
export async function customerHistory(
  deps: HistoryDeps,
  customerId: string,
): Promise<CustomerHistory> {
  assertCustomerId(customerId);
  const { js, jsm, names, partitions } = deps;
  const partition = partitionOf(customerId, partitions);
  const info = await jsm.streams.info(names.ordersStream);
  const [events, timers] = await Promise.all([
    collect(
      readOrdered(js, jsm, names.ordersStream, {
        filter: eventSubject(names, partitions, customerId),
      }),
    ),
    collect(
      readOrdered(js, jsm, names.ordersStream, {
        filter: timerSubject(names, partition, customerId),
      }),
    ),
  ]);
  const messages = [...events, ...timers].sort((a, b) => a.seq - b.seq);
  const superseded = await deps.superseded(partition);
  const decode = orderEntryDecoder(names, partitions, deps.limits);
  const { aggregator } = deps;
  let state = aggregator.initial();
  let lastSeq = 0;
  const steps: HistoryStep[] = [];
  for (const m of messages) {
    const at = new Date(Math.floor(m.info.timestampNanos / 1e6)).toISOString();
    const redrive = m.headers?.get(REDRIVE_OF_HEADER) ?? '';
    const common = { seq: m.seq, at, ...(redrive === '' ? {} : { redriveOf: redrive }) };
    if (superseded.has(m.seq)) {
      steps.push({
        ...common,
        kind: 'superseded',
        type: undefined,
        id: msgId(m),
        items: [],
        contents: state.items,
        window: state.window === null ? null : `sum-${state.window.openedSeq}`,
      });
      continue;
    }
    let payload: OrderEntry;
    try {
      payload = decode(m.subject, m.data).payload;
    } catch (err) {
      steps.push(rejected(common, err, state));
      continue;
    }
    const entry: LogEntry<OrderEntry> = {
      seq: m.seq,
      timeMs: Math.floor(m.info.timestampNanos / 1e6),
      payload,
    };
    const before = state;
    try {
      state = aggregator.apply(before, entry);
    } catch (err) {
      steps.push(rejected(common, err, state));
      continue;
    }
    lastSeq = m.seq;
    const summary = aggregator.outputs?.(customerId, before, state, entry)[0];
    const windowOf = (s: OrderState): string | null =>
      s.window === null ? null : `sum-${s.window.openedSeq}`;
    if (payload.type === 'summary.timer') {
      steps.push({
        ...common,
        kind: 'timer',
        type: payload.type,
        id: msgId(m),
        items: [],
        timer: {
          window: payload.window,
          reason: payload.reason,
          closed: state.window === null && before.window !== null,
        },
        contents: state.items,
        window: windowOf(before),
        ...(summary === undefined ? {} : { summary }),
      });
    } else {
      steps.push({
        ...common,
        kind: 'event',
        type: payload.type,
        id: payload.id,
        items: 'items' in payload ? payload.items : [],
        contents: state.items,
        window: windowOf(state),
      });
    }
  }
  return {
    customerId,
    partition,
    steps,
    contents: state.items,
    lastSeq,
    openWindow: state.window === null ? null : `sum-${state.window.openedSeq}`,
    truncated: info.state.first_seq > 1,
    firstStreamSeq: info.state.first_seq,
  };
}

function rejected(
  common: { seq: number; at: string; redriveOf?: string },
  err: unknown,
  state: OrderState,
): HistoryStep {
  return {
    ...common,
    kind: 'rejected',
    type: undefined,
    id: undefined,
    items: [],
    rejected: {
      reason: isOrderFleetError(err) ? err.code : APPLY_FAILED,
      detail: describeError(err),
    },
    contents: state.items,
    window: state.window === null ? null : `sum-${state.window.openedSeq}`,
  };
}

function msgId(m: JsMsg): string | undefined {
  const id = m.headers?.get('Nats-Msg-Id') ?? '';
  return id === '' ? undefined : id;
}

async function collect(messages: AsyncIterable<JsMsg>): Promise<JsMsg[]> {
  const out: JsMsg[] = [];
  for await (const m of messages) out.push(m);
  return out;
}

/** The history as a table for a person. */
export function renderHistory(
  h: CustomerHistory,
  stored?: { lastSeq: number; items: readonly number[]; owner?: string; stale: boolean },
): string {
  const lines: string[] = [];
  lines.push(`${h.customerId} (partition ${h.partition}): ${h.steps.length} entries`);
  if (h.truncated)
    lines.push(
      `warning: the stream starts at seq ${h.firstStreamSeq} (older entries were removed by retention); this history may be incomplete`,
    );
  lines.push(
    `  ${'SEQ'.padStart(8)}  ${'TIME'.padEnd(24)}  ${'ENTRY'.padEnd(22)}  ${'ITEMS'.padEnd(16)}  ${'CONTENTS AFTER'.padEnd(24)}  WINDOW`,
  );
  for (const s of h.steps) {
    const entry =
      s.kind === 'timer'
        ? `timer ${s.timer?.reason ?? ''} ${s.timer?.closed === true ? 'closes' : 'void'}`
        : s.kind === 'rejected'
          ? `REJECTED ${s.rejected?.reason ?? ''}`
          : s.kind === 'superseded'
            ? 'superseded (redriven)'
            : `${s.type ?? ''}${s.redriveOf === undefined ? '' : ' (redriven)'}`;
    const window =
      s.summary !== undefined
        ? `${s.window ?? ''} closed → summary +[${s.summary.added.join(',')}] -[${s.summary.removed.join(',')}]`
        : s.kind === 'timer'
          ? `${s.window ?? '-'}${s.timer?.closed === true ? ' closed (no net change)' : ''}`
          : (s.window ?? '-');
    lines.push(
      `  ${String(s.seq).padStart(8)}  ${s.at.padEnd(24)}  ${entry.padEnd(22)}  ${(s.items.length === 0 ? '-' : s.items.join(' ')).padEnd(16)}  ${`[${s.contents.join(', ')}]`.padEnd(24)}  ${window}`,
    );
  }
  lines.push(
    `fold: [${h.contents.join(', ')}] at seq ${h.lastSeq}${h.openWindow === null ? '' : `, window ${h.openWindow} open`}`,
  );
  if (stored !== undefined) {
    const same = stored.lastSeq === h.lastSeq && stored.items.join(',') === h.contents.join(',');
    lines.push(
      `state: [${stored.items.join(', ')}] at seq ${stored.lastSeq} (${stored.stale ? 'from KV, no owner answered' : `owner ${stored.owner ?? '?'}`}): ${same ? 'matches the fold' : 'DIFFERS from the fold (not yet applied, or needs a rebuild)'}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
