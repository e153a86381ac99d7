import { z } from 'zod';
import type { OrderEvent } from '../contract/event.js';
import { ErrorCode, OrderFleetError } from '../errors.js';
import type { Aggregator, LogEntry } from './aggregator.js';

/** What the original GenServer held for a customer: the ordered list of items in their plan. */
export interface OrderState {
  readonly items: readonly number[];
  /** True once an `order.created` was seen (idempotent: a second one changes nothing). */
  readonly created: boolean;
  /** Items asked to be removed that were not in the order (ignored, but counted). */
  readonly absentRemovals: number;
  /** Events applied so far. */
  readonly events: number;
}

const OrderStateV1 = z.object({
  items: z.array(z.number().int()),
  created: z.boolean(),
  absentRemovals: z.number().int().min(0),
  events: z.number().int().min(0),
});

const INITIAL: OrderState = Object.freeze({
  items: Object.freeze([]),
  created: false,
  absentRemovals: 0,
  events: 0,
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

export const orderAggregator: Aggregator<OrderState, OrderEvent> = {
  name: 'orders',
  version: 1,
  initial: () => INITIAL,
  apply: (state: OrderState, entry: LogEntry<OrderEvent>) => applyOrderEvent(state, entry.payload),
  serialize: (state) => state,
  deserialize(version, data) {
    if (version !== 1) {
      throw new OrderFleetError(ErrorCode.StateCorrupt, `unknown order state version ${version}`);
    }
    const parsed = OrderStateV1.safeParse(data);
    if (!parsed.success) {
      throw new OrderFleetError(
        ErrorCode.StateCorrupt,
        'stored order state does not match version 1',
        {
          cause: parsed.error,
        },
      );
    }
    return parsed.data;
  },
};

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
