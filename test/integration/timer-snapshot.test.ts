// A graceful handoff carries the open timers in the clean checkpoint (a timer snapshot per
// partition), so the next owner needs no per-customer timer index; a deployment written without
// snapshots (the old layout) still hands over through the index. Real nats-server, real worker
// processes, real signals; outcomes read from KV and the streams.

import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../src/contract/partition.js';
import { orderTimerCodec } from '../../src/orders/order-aggregator.js';
import type { OrderEventInput } from '../../src/publisher/order-publisher.js';
import { timerKeyFilter, timerSnapshotKeyFilter } from '../../src/state/keys.js';
import { TimerSnapshotStore } from '../../src/state/timer-snapshot.js';
import { WatermarkStore } from '../../src/state/watermark-store.js';
import { silentLogger, waitReady, type TestDeployment } from '../support/fleet.js';
import {
  checkNotifications,
  expectBurstWindows,
  indexedTimers,
  readNotifications,
  summaryFleet,
  waitAllClosed,
} from '../support/summaries.js';
import { eventually } from '../support/fleet.js';

const { deploy, worker } = summaryFleet();

/** Long enough that every window is still open when the first owner stops. */
const QUIET_MS = 15_000;
const POLICY = { quietMs: QUIET_MS, maxMs: 120_000 };
const ENV = {
  SUMMARY_QUIET_MS: String(QUIET_MS),
  SUMMARY_MAX_MS: String(POLICY.maxMs),
  TIMER_TICK_MS: '50',
};

/** Customers with an open timer in the clean checkpoints' snapshots (undefined: none usable). */
async function snapshotTimers(dep: TestDeployment): Promise<Set<string> | undefined> {
  const kvm = new Kvm(dep.nc);
  const watermarks = new WatermarkStore(await kvm.open(dep.names.metaBucket));
  const store = new TimerSnapshotStore(
    await kvm.open(dep.names.stateBucket),
    orderTimerCodec,
    silentLogger,
  );
  const out = new Set<string>();
  for (let p = 0; p < dep.partitions; p++) {
    const { watermark } = await watermarks.load(p);
    if (!watermark.clean) return undefined;
    const { timers } = await store.load(p, watermark);
    if (timers === undefined) return undefined;
    for (const [customerId, timer] of timers) {
      expect(partitionOf(customerId, dep.partitions)).toBe(p);
      expect(timer.entry.type).toBe('summary.timer');
      out.add(customerId);
    }
  }
  return out;
}

/** Deletes every key of the state bucket under these per-partition filters. */
async function purgeKeys(dep: TestDeployment, filter: (p: number) => string): Promise<number> {
  const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
  let n = 0;
  for (let p = 0; p < dep.partitions; p++) {
    for await (const key of await kv.keys(filter(p))) {
      await kv.delete(key); // buckets refuse the rollup a purge uses
      n++;
    }
  }
  return n;
}

async function openWindows(
  dep: TestDeployment,
  d: Awaited<ReturnType<typeof deploy>>['d'],
  customers: readonly string[],
): Promise<void> {
  const bursts = new Map<string, OrderEventInput[]>(
    customers.map((c, i) => [c, [{ type: 'items.added', items: [i % 7, 1] }]]),
  );
  await d.round(0, bursts, 0);
  // Checkpointed with their windows indexed: the state every handoff starts from.
  await eventually(
    async () => ((await indexedTimers(dep)).size === customers.length ? true : undefined),
    60_000,
  );
}

describe('timer snapshot in the clean checkpoint', () => {
  it('a graceful handoff carries every open window; the new owner closes them all without the timer index', async () => {
    const { dep, d } = await deploy(ENV, { timerLayout: 'index' });
    const a = worker(dep, 'snap-a');
    await waitReady(a);
    const customers = Array.from({ length: 60 }, (_, i) => `snap-${i}`);
    await openWindows(dep, d, customers);
    expect((await a.stop('SIGTERM')).code).toBe(0);
    expect((await readNotifications(dep)).summaries, 'windows still open at SIGTERM').toEqual([]);

    // The clean checkpoints hold exactly the open windows...
    expect([...((await snapshotTimers(dep)) ?? [])].sort()).toEqual([...customers].sort());
    // ...so the next owner needs nothing else: remove the per-customer index altogether.
    expect(await purgeKeys(dep, timerKeyFilter)).toBe(customers.length);

    const b = worker(dep, 'snap-b');
    await waitReady(b);
    await waitAllClosed(dep, d.lastChangeSeqs(), 90_000);
    const { summaries, log } = await checkNotifications(dep, POLICY);
    expectBurstWindows(summaries, log, d.sent);
    expect(summaries.map((s) => s.customerId).sort()).toEqual([...customers].sort());
  });

  it('upgrades in place: a handoff written without snapshots (the old layout) goes through the index', async () => {
    const { dep, d } = await deploy(ENV, { timerLayout: 'index' });
    const a = worker(dep, 'old-a');
    await waitReady(a);
    const customers = Array.from({ length: 40 }, (_, i) => `old-${i}`);
    await openWindows(dep, d, customers);
    expect((await a.stop('SIGTERM')).code).toBe(0);
    // What an older version leaves behind: a clean watermark, the index, and no snapshot.
    expect(await purgeKeys(dep, timerSnapshotKeyFilter)).toBeGreaterThan(0);
    expect(await snapshotTimers(dep)).toBeUndefined();

    const b = worker(dep, 'old-b');
    await waitReady(b);
    await waitAllClosed(dep, d.lastChangeSeqs(), 90_000);
    const { summaries, log } = await checkNotifications(dep, POLICY);
    expectBurstWindows(summaries, log, d.sent);
    expect(summaries).toHaveLength(customers.length);
  });
});
