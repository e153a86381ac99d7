// An independent model of what workers must compute, plus a load generator. The model is written
// separately from src/orders so that a bug in the aggregator cannot hide in both.

import {
  OrderPublisher,
  type OrderEventInput,
  type PublishResult,
} from '../../src/publisher/order-publisher.js';
import type { TestDeployment } from './fleet.js';
import { silentLogger } from './fleet.js';

export interface ModelEvent {
  readonly customerId: string;
  readonly event: OrderEventInput & { readonly id: string };
}

/** Expected items per customer, folding events in publish (= stream) order per customer. */
export class OrderModel {
  readonly #items = new Map<string, number[]>();

  apply({ customerId, event }: ModelEvent): void {
    const items = this.#items.get(customerId) ?? [];
    this.#items.set(customerId, items);
    if (event.type === 'items.added') items.push(...event.items);
    else if (event.type === 'items.removed') {
      for (const item of event.items) {
        const at = items.indexOf(item);
        if (at >= 0) items.splice(at, 1);
      }
    } else if (event.type === 'order.cleared') items.length = 0;
  }

  expected(): ReadonlyMap<string, readonly number[]> {
    return this.#items;
  }
}

/** Deterministic pseudo-random numbers (mulberry32), so a failing run can be reproduced. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A mix of adds (most), removes (some absent), clears (rare) over `customers` customers. */
export function generateLoad(
  customers: number,
  events: number,
  seed = 1,
  prefix = 'cust',
): ModelEvent[] {
  const random = rng(seed);
  const out: ModelEvent[] = [];
  for (let i = 0; i < events; i++) {
    const customerId = `${prefix}-${Math.floor(random() * customers)}`;
    const roll = random();
    const items = Array.from({ length: 1 + Math.floor(random() * 3) }, () =>
      Math.floor(random() * 20),
    );
    const id = `${prefix}-${seed}-${i}`;
    const event: ModelEvent['event'] =
      roll < 0.7
        ? { id, type: 'items.added', items }
        : roll < 0.95
          ? { id, type: 'items.removed', items }
          : roll < 0.98
            ? { id, type: 'order.cleared' }
            : { id, type: 'order.created' };
    out.push({ customerId, event });
  }
  return out;
}

/**
 * Publishes events with the SDK (pipelined, retried with the same ids). Events of one customer
 * are stored in the order given because the SDK is called in that order and the server orders a
 * connection's publishes; the model is folded in the same order.
 */
export async function publishAll(
  dep: TestDeployment,
  events: readonly ModelEvent[],
  opts: { maxInFlight?: number; onPublished?: (n: number) => void } = {},
): Promise<PublishResult[]> {
  const publisher = new OrderPublisher(dep.nc, {
    names: dep.names,
    partitions: dep.partitions,
    limits: { maxPayloadBytes: 16 * 1024, maxItemsPerEvent: 1000 },
    maxInFlight: opts.maxInFlight ?? 256,
    maxAttempts: 60,
    timeoutMs: 5000,
    log: silentLogger,
  });
  let n = 0;
  const results = await Promise.all(
    events.map(async ({ customerId, event }) => {
      const result = await publisher.publish(customerId, event);
      n++;
      if (opts.onPublished !== undefined && n % 1000 === 0) opts.onPublished(n);
      return result;
    }),
  );
  await publisher.close();
  return results;
}

/** Compares stored state with the model; returns human-readable mismatches (empty = equal). */
export function diffStates(
  expected: ReadonlyMap<string, readonly number[]>,
  actual: ReadonlyMap<string, { items: readonly number[] }>,
): string[] {
  const problems: string[] = [];
  for (const [id, items] of expected) {
    const got = actual.get(id);
    if (got === undefined) problems.push(`${id}: missing (expected [${items.join(',')}])`);
    else if (JSON.stringify(got.items) !== JSON.stringify(items)) {
      problems.push(`${id}: expected [${items.join(',')}] got [${got.items.join(',')}]`);
    }
  }
  for (const id of actual.keys())
    if (!expected.has(id)) problems.push(`${id}: unexpected customer`);
  return problems;
}

/**
 * The model of what the stream holds: events folded in stream-sequence order (a retried publish
 * may land after a later one), each stored sequence once (a duplicate ack points at the original).
 */
export function modelFromPublished(
  events: readonly ModelEvent[],
  results: readonly PublishResult[],
): OrderModel {
  const bySeq = new Map<number, ModelEvent>();
  events.forEach((e, i) => {
    const r = results[i];
    if (r !== undefined) bySeq.set(r.seq, e);
  });
  const model = new OrderModel();
  for (const seq of [...bySeq.keys()].sort((a, b) => a - b)) {
    const e = bySeq.get(seq);
    if (e !== undefined) model.apply(e);
  }
  return model;
}

/**
 * Customers whose stored `lastSeq` is behind the last event stored for them: an applied event
 * was lost. A stored `lastSeq` beyond it is fine: the fleet appends its own timer entries to a
 * customer's subject once the quiet period passed, and applying them moves `lastSeq` on.
 */
export function lostCustomers(
  events: readonly ModelEvent[],
  results: readonly PublishResult[],
  stored: ReadonlyMap<string, { lastSeq: number }>,
): string[] {
  const maxSeq = new Map<string, number>();
  events.forEach((e, i) => {
    const seq = results[i]?.seq ?? 0;
    maxSeq.set(e.customerId, Math.max(maxSeq.get(e.customerId) ?? 0, seq));
  });
  return [...maxSeq]
    .filter(([id, seq]) => (stored.get(id)?.lastSeq ?? 0) < seq)
    .map(([id, seq]) => `${id}: lastSeq ${stored.get(id)?.lastSeq ?? 'missing'} < ${seq}`);
}
