// Acceptance: scale the fleet 1 → 3 → 1 under a continuous publisher. Real nats-server, real
// `order-fleet worker` processes, real SIGTERM. Proves that
// - every customer's stored state equals an independent model of what the stream holds (nothing
//   lost, nothing applied twice: the runners' `applied` counters add up to exactly the number of
//   stored events, and nothing was skipped or replayed);
// - at the end `status --json` shows exactly one owner (w1) for every partition;
// - partitions that did not move never paused: w1 started each of them exactly once and never
//   stopped one of them while w2 and w3 came and went, and no other worker ever ran them;
// - every partition that did move changed hands cleanly (cleanHandoff true, replayed 0).

import { setTimeout as sleep } from 'node:timers/promises';
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { assignPartitions, partitionsOf } from '../../src/fleet/assignment.js';
import {
  field,
  fleetStatusJson,
  linesOf,
  numberField,
  numbersField,
  settled,
  settledOwners,
  stopGracefully,
  startFleetScenario,
  startLoad,
  useTeardown,
} from '../support/fleet-scenarios.js';
import {
  eventually,
  provision,
  readStoredStates,
  spawnWorker,
  waitReady,
  type WorkerProcess,
} from '../support/fleet.js';
import { diffStates, lostCustomers, modelFromPublished } from '../support/model.js';
import { startNatsServer } from '../support/nats-server.js';

const PARTITIONS = 8;
const CUSTOMERS = 1200;
const MIN_EVENTS = 20_000;

/** Everything a test started, torn down in reverse order even when the test fails. */
const teardown = useTeardown();

describe('fleet scale 1 → 3 → 1 under load', () => {
  it('keeps every customer exact, ends with w1 owning everything, and never pauses partitions that stay', async () => {
    const { dep, workers, step } = await startFleetScenario(teardown, {
      partitions: PARTITIONS,
      leaseTtlMs: 8000,
    });
    const load = startLoad(teardown, dep, {
      customers: CUSTOMERS,
      minEvents: MIN_EVENTS,
      chunk: 500,
      pauseMs: 50,
      prefix: 'scale',
    });

    const w1 = spawnWorker(dep, 'w1');
    workers.push(w1);
    await waitReady(w1);
    const w2 = spawnWorker(dep, 'w2');
    workers.push(w2);
    await waitReady(w2);
    const w3 = spawnWorker(dep, 'w3');
    workers.push(w3);
    await waitReady(w3);
    step('three ready');
    const atThree = await settledOwners(dep, ['w1', 'w2', 'w3']);
    // Every member has work at three: the scale-up really moved partitions.
    expect(atThree.members.map((m) => m.partitions.length > 0)).toEqual([true, true, true]);
    const publishedWhileThree = load.published;

    await stopGracefully(w2);
    step('w2 stopped');
    // 3 → 2: w2's partitions are served by w1 and w3 before the next step.
    await settledOwners(dep, ['w1', 'w3']);
    await stopGracefully(w3);
    // The load ran during the whole scenario, not just before it.
    expect(load.published).toBeGreaterThan(publishedWhileThree);
    await load.finish();
    expect(load.published).toBeGreaterThanOrEqual(MIN_EVENTS);

    // Exactly one owner per partition at the end: w1.
    const final = await settled(dep, ['w1']);
    expect(final.table.map((t) => t.owner)).toEqual(Array(PARTITIONS).fill('w1'));
    expect(final.members).toEqual([
      expect.objectContaining({
        id: 'w1',
        partitions: Array.from({ length: PARTITIONS }, (_, i) => i),
      }),
    ]);

    step('settled');
    // Every customer's state equals the model (nothing lost, nothing doubled).
    const model = modelFromPublished(load.events, load.results);
    expect(model.expected().size).toBeGreaterThanOrEqual(1000);
    const stored = await readStoredStates(dep);
    expect(diffStates(model.expected(), stored)).toEqual([]);
    // No customer's stored lastSeq lags the last event stored for it.
    const lost = lostCustomers(load.events, load.results, stored);
    expect(lost).toEqual([]);

    // Stop w1 gracefully too, so every runner has reported its counters.
    await stopGracefully(w1);
    const all = [w1, w2, w3];
    const stopped = all.flatMap((w) => linesOf(w, 'partition stopped'));
    expect(stopped.filter((l) => field(l, 'state') !== 'stopped')).toEqual([]);
    const distinctSeqs = new Set(load.results.map((r) => r.seq)).size;
    const applied = stopped.reduce((sum, l) => sum + numberField(l, 'applied'), 0);
    const doubled = applied - distinctSeqs;
    expect({ lost: lost.length, doubled }).toEqual({ lost: 0, doubled: 0 });
    expect(stopped.reduce((sum, l) => sum + numberField(l, 'skipped'), 0)).toBe(0);
    expect(stopped.reduce((sum, l) => sum + numberField(l, 'replayed'), 0)).toBe(0);

    // Every handoff was clean: no partition ever started from a crashed state or replayed.
    const starts = all.flatMap((w) => linesOf(w, 'partition starting'));
    expect(starts.filter((l) => field(l, 'cleanHandoff') !== true)).toEqual([]);
    const caughtUp = all.flatMap((w) => linesOf(w, 'partition caught up'));
    expect(caughtUp.filter((l) => numberField(l, 'replayed') !== 0)).toEqual([]);

    // Partitions that never moved away from w1 never paused. w1's own 'rebalance' lines say which
    // partitions it gave up; the rest it kept from its first start to its own shutdown.
    const rebalances = linesOf(w1, 'rebalance');
    // First assignment, w2 joins, w3 joins, w2 leaves, w3 leaves.
    expect(rebalances.map((r) => field(r, 'members'))).toEqual([
      ['w1'],
      ['w1', 'w2'],
      ['w1', 'w2', 'w3'],
      ['w1', 'w3'],
      ['w1'],
    ]);
    const lostByW1 = new Map<number, number>();
    for (const r of rebalances)
      for (const p of numbersField(r, 'lost')) lostByW1.set(p, (lostByW1.get(p) ?? 0) + 1);
    const w1Starts = linesOf(w1, 'partition starting');
    const w1Stops = linesOf(w1, 'partition stopped');
    // The stops caused by w1's own final SIGTERM: one per partition, after its 'shutdown requested'.
    const shutdownAt = w1.logs().findIndex((l) => l.msg === 'shutdown requested');
    expect(shutdownAt).toBeGreaterThan(0);
    const stopsBeforeShutdown = w1
      .logs()
      .slice(0, shutdownAt)
      .filter((l) => l.msg === 'partition stopped');
    const kept: number[] = [];
    for (let p = 0; p < PARTITIONS; p++) {
      const startsOfP = w1Starts.filter((l) => numberField(l, 'partition') === p).length;
      const stopsOfP = stopsBeforeShutdown.filter((l) => numberField(l, 'partition') === p).length;
      const losses = lostByW1.get(p) ?? 0;
      // w1 ends owning everything: each loss was followed by exactly one restart, nothing more.
      expect({ p, startsOfP, stopsOfP }).toEqual({ p, startsOfP: 1 + losses, stopsOfP: losses });
      if (losses === 0) kept.push(p);
    }
    expect(w1Stops.length).toBe(w1Starts.length);
    // Some partitions stayed on w1 throughout (rendezvous hashing moves only what must move)...
    expect(kept.length).toBeGreaterThan(0);
    // ...and some moved, so the scale-up did real work.
    expect(kept.length).toBeLessThan(PARTITIONS);
    // No other worker ever ran a kept partition.
    const othersOnKept = [w2, w3]
      .flatMap((w) => linesOf(w, 'partition starting'))
      .filter((l) => kept.includes(numberField(l, 'partition')));
    expect(othersOnKept).toEqual([]);
  });

  // Regression test, fixed bug (src/fleet/worker.ts, Worker.setPartitions): 'worker ready' is only logged from
  // #onCaughtUp, i.e. when the last pending partition catches up. When a rebalance takes away the
  // partitions that were still pending (not yet caught up) and every partition the worker keeps
  // has already caught up, #pendingCatchUp becomes empty inside setPartitions and nobody logs
  // 'worker ready' — ever, unless the worker later gains a partition. This happens whenever two
  // workers start at about the same time (the first takes every partition, then gives most of them
  // away before they caught up), and makes readiness checks that wait for the line hang. Here the
  // race is made deterministic by holding the leases of the partitions w1 is about to give away,
  // so they stay pending on w1 until w2 joins. Remove `.fails` once setPartitions re-checks
  // readiness after removing pending partitions.
  it("logs 'worker ready' when the partitions still pending are moved away", async () => {
    const server = await startNatsServer();
    teardown.push(() => server.cleanup());
    const dep = await provision(server.url, { partitions: PARTITIONS, leaseTtlMs: 3000 });
    teardown.push(() => dep.close());
    const pair = assignPartitions(['w1', 'w2'], PARTITIONS);
    const kept = partitionsOf(pair, 'w1');
    const moving = partitionsOf(pair, 'w2');
    expect(kept.length).toBeGreaterThan(0);
    expect(moving.length).toBeGreaterThan(0);

    // Hold the leases of the partitions w1 will give to w2, renewing them well within the TTL.
    const leases = await new Kvm(dep.nc).open(dep.names.leaseBucket);
    const hold = async (): Promise<void> => {
      for (const p of moving)
        await leases.put(
          `p.${p}`,
          JSON.stringify({ owner: 'blocker', partition: p, at: new Date().toISOString() }),
        );
    };
    await hold();
    let holding = true;
    const holder = (async () => {
      while (holding) {
        await sleep(400);
        await hold();
      }
    })();
    teardown.push(async () => {
      holding = false;
      await holder;
    });
    const workers: WorkerProcess[] = [];
    teardown.push(async () => {
      for (const w of workers) await w.stop('SIGKILL');
    });

    const w1 = spawnWorker(dep, 'w1');
    workers.push(w1);
    // Alone, w1 takes every partition; the ones it keeps start and catch up (empty log), the
    // others stay pending on the held leases.
    for (const p of kept)
      await w1.waitForLog((l) => l.msg === 'partition caught up' && l['partition'] === p);
    const w2 = spawnWorker(dep, 'w2');
    workers.push(w2);
    await w1.waitForLog(
      (l) => l.msg === 'rebalance' && JSON.stringify(l['members']) === JSON.stringify(['w1', 'w2']),
    );
    // w1 now runs exactly `kept`, all caught up: it is ready and should say so.
    await eventually(async () => {
      const s = await fleetStatusJson(dep);
      return kept.every((p) => s.table[p]?.owner === 'w1') ? true : undefined;
    });
    const ready = await waitReady(w1, 10_000).then(
      () => true,
      // The timeout is the bug under test; it is asserted just below, not swallowed.
      () => false,
    );
    expect(ready, "w1 logged 'worker ready' after giving away its pending partitions").toBe(true);
  });
});
