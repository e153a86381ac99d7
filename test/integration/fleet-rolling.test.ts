// Acceptance: a rolling restart as Kubernetes does it (maxSurge 1, maxUnavailable 0), under a
// continuous publisher. Real nats-server, real `order-fleet worker` processes, real SIGTERM. For
// each old worker: start a new one, wait until it is ready, SIGTERM an old one (it must exit 0).
// Proves that
// - every customer's stored state equals an independent model of what the stream holds, and the
//   runners' `applied` counters add up to exactly the number of stored events (nothing lost,
//   nothing applied twice, nothing skipped);
// - every handoff was graceful: every 'partition starting' after the first generation reports
//   cleanHandoff true, and every 'partition caught up' reports 0 entries replayed;
// - at the end `status --json` shows exactly one owner per partition, all from the new generation.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { KvWatchInclude, Kvm } from '@nats-io/kv';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { kvLeaseStore } from '../../src/fleet/lease-store.js';
import { LeaseManager } from '../../src/fleet/leases.js';
import {
  expectExitZero,
  field,
  linesOf,
  numberField,
  settled,
  settledOwners,
  stopAllGracefully,
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
const CUSTOMERS = 1000;
const MIN_EVENTS = 15_000;

/** Everything a test started, torn down in reverse order even when the test fails. */
const teardown = useTeardown();

describe('fleet rolling restart under load', () => {
  it('replaces every worker with nothing lost, nothing applied twice and nothing replayed', async () => {
    const { dep, workers, step } = await startFleetScenario(teardown, {
      partitions: PARTITIONS,
      leaseTtlMs: 8000,
    });
    const load = startLoad(teardown, dep, {
      customers: CUSTOMERS,
      minEvents: MIN_EVENTS,
      chunk: 500,
      pauseMs: 50,
      prefix: 'roll',
    });

    // Generation 1.
    const old: WorkerProcess[] = [];
    for (const id of ['a1', 'a2', 'a3']) {
      const w = spawnWorker(dep, id);
      workers.push(w);
      old.push(w);
      await waitReady(w);
    }
    await settledOwners(dep, ['a1', 'a2', 'a3']);
    step('generation 1 ready');
    // Where each worker's log stood when the roll began: later lines belong to the roll.
    const rollStart = new Map(old.map((w) => [w.id, w.logs().length]));
    const publishedBeforeRoll = load.published;

    // The roll: surge one new pod, wait for its readiness, terminate one old pod; repeat.
    const fresh: WorkerProcess[] = [];
    for (const [i, id] of ['b1', 'b2', 'b3'].entries()) {
      const w = spawnWorker(dep, id);
      workers.push(w);
      fresh.push(w);
      await waitReady(w);
      step(`${id} ready`);
      const retiring = old[i];
      if (retiring === undefined) throw new Error('no old worker left');
      await stopGracefully(retiring);
    }
    expect(load.published).toBeGreaterThan(publishedBeforeRoll);
    await load.finish();
    expect(load.published).toBeGreaterThanOrEqual(MIN_EVENTS);

    // Exactly one owner per partition, all from the new generation; everything saved.
    const final = await settled(dep, ['b1', 'b2', 'b3']);
    expect(final.table.every((t) => t.owner?.startsWith('b') === true)).toBe(true);
    expect(final.members.flatMap((m) => m.partitions).sort((a, b) => a - b)).toEqual(
      Array.from({ length: PARTITIONS }, (_, i) => i),
    );

    step('settled');
    // Every customer's state equals the model.
    const model = modelFromPublished(load.events, load.results);
    expect(model.expected().size).toBeGreaterThanOrEqual(CUSTOMERS * 0.99);
    const stored = await readStoredStates(dep);
    expect(diffStates(model.expected(), stored)).toEqual([]);
    const lost = lostCustomers(load.events, load.results, stored);

    // Stop the new generation too, so every runner has reported its counters.
    await stopAllGracefully(dep, fresh);
    const all = [...old, ...fresh];
    const stopped = all.flatMap((w) => linesOf(w, 'partition stopped'));
    expect(stopped.filter((l) => field(l, 'state') !== 'stopped')).toEqual([]);
    const applied = stopped.reduce((sum, l) => sum + numberField(l, 'applied'), 0);
    const doubled = applied - new Set(load.results.map((r) => r.seq)).size;
    expect({ lost: lost.length, doubled }).toEqual({ lost: 0, doubled: 0 });
    expect(stopped.reduce((sum, l) => sum + numberField(l, 'skipped'), 0)).toBe(0);

    // Zero replay for graceful handoffs: every partition start during the roll (on the new
    // workers, and on old workers that picked up a partition from a retiring one) was clean.
    const rollStarts = [
      ...fresh.flatMap((w) => linesOf(w, 'partition starting')),
      ...old.flatMap((w) =>
        w
          .logs()
          .slice(rollStart.get(w.id) ?? 0)
          .filter((l) => l.msg === 'partition starting'),
      ),
    ];
    // The roll moved every partition at least once (each old owner left).
    expect(new Set(rollStarts.map((l) => numberField(l, 'partition'))).size).toBe(PARTITIONS);
    expect(rollStarts.filter((l) => field(l, 'cleanHandoff') !== true)).toEqual([]);
    // And each bound the consumer its leaver prepared instead of creating one (8 partitions fit
    // the leaver's set-ups at once, so none is left unprepared).
    expect(
      rollStarts.filter((l) => field(l, 'consumer') !== 'prepared by the previous owner'),
    ).toEqual([]);
    const rollCaughtUp = [
      ...fresh.flatMap((w) => linesOf(w, 'partition caught up')),
      ...old.flatMap((w) =>
        w
          .logs()
          .slice(rollStart.get(w.id) ?? 0)
          .filter((l) => l.msg === 'partition caught up'),
      ),
    ];
    // (A runner stopped before it caught up has no such line; its 'partition stopped' line
    // reports replayed too, asserted to be 0 below.)
    expect(rollCaughtUp.length).toBeGreaterThanOrEqual(PARTITIONS);
    expect(rollCaughtUp.filter((l) => numberField(l, 'replayed') !== 0)).toEqual([]);
    // And nothing was replayed anywhere, including the first generation's hand-offs.
    const allStarts = all.flatMap((w) => linesOf(w, 'partition starting'));
    expect(allStarts.filter((l) => field(l, 'cleanHandoff') !== true)).toEqual([]);
    expect(stopped.reduce((sum, l) => sum + numberField(l, 'replayed'), 0)).toBe(0);
    // No partition failed anywhere. ('lease lost' is not asserted here: a graceful release that
    // races a lease renew logs it spuriously and leaves the lease to expire — see the regression test
    // below; the handoff then waits for the TTL but stays clean, which is what is asserted above.)
    for (const w of all)
      expect(linesOf(w, 'partition failed, restarting').map((l) => JSON.stringify(l))).toEqual([]);
  });

  // Regression test, fixed bug (src/fleet/leases.ts, Lease.release vs Lease.#renew): release() does not wait for a renew
  // that is already in flight. Its conditional delete carries the revision from before that renew;
  // the server applies the renew first (same connection, so always in that order), the delete
  // fails with "wrong last sequence", and releaseEntry swallows that as "we were fenced". The
  // lease stays held by a worker that no longer runs the partition until the bucket TTL expires,
  // so the next owner waits a full TTL instead of taking over at once; then the renew's completion
  // sees `released` and logs a spurious 'lease lost' ("lease not renewed in time"). Seen once in
  // the rolling restart above under CPU contention (a 'lease lost' warn on a graceful leave). Here
  // the race is made deterministic by freezing the server (SIGSTOP) just before a renew is due and
  // releasing while that renew waits. Suggested fix: keep the in-flight renew promise in Lease and
  // await it in release() before the conditional delete (or retry the delete with the revision
  // the renew returned).
  it('releases a lease at once even when a renew is in flight', async () => {
    const server = await startNatsServer();
    teardown.push(() => server.cleanup());
    const ttlMs = 2000;
    const dep = await provision(server.url, { partitions: 1, leaseTtlMs: ttlMs });
    teardown.push(() => dep.close());
    const kv = await new Kvm(dep.nc).open(dep.names.leaseBucket);
    const logged: Record<string, unknown>[] = [];
    const log = pino(
      { level: 'info' },
      {
        write: (line: string) => {
          logged.push(JSON.parse(line) as Record<string, unknown>);
        },
      },
    );
    const manager = new LeaseManager(kvLeaseStore(kv), { workerId: 'solo', ttlMs, log });
    manager.start();
    teardown.push(() => manager.stop());
    // Every write to the lease key, to know when a renew landed.
    const watch = await kv.watch({ key: 'p.0', include: KvWatchInclude.UpdatesOnly });
    const puts: number[] = [];
    const watching = (async () => {
      for await (const e of watch) if (e.operation === 'PUT') puts.push(performance.now());
    })();
    teardown.push(async () => {
      watch.stop();
      await watching;
    });

    const lease = await manager.acquire(0, () => false);
    if (lease === undefined) throw new Error('lease not acquired');
    // Create, then the first renew (renewEveryMs = TTL / 4 after the create).
    const renewedAt = await eventually(() => puts[1], 10_000, 5);
    expect(manager.renewEveryMs).toBe(ttlMs / 4);
    // The next renew is sent renewEveryMs after that one completed: freeze the server halfway,
    // so that renew is sent while the server is frozen, and release while it waits.
    await sleep(Math.max(0, renewedAt + manager.renewEveryMs / 2 - performance.now()));
    server.pause();
    await sleep(manager.renewEveryMs);
    const released = lease.release();
    await sleep(100);
    server.resume();
    await released;
    // Expected: the lease entry is gone, so a waiting worker takes the partition at once.
    const entry = await kv.get('p.0');
    expect(
      entry === null || entry.operation !== 'PUT',
      `lease still held after release: ${entry?.operation === 'PUT' ? entry.string() : ''}`,
    ).toBe(true);
    expect(logged.filter((l) => l['msg'] === 'lease lost')).toEqual([]);
  });

  // Regression test, fixed bug (src/fleet/worker.ts, Supervisor.stop): stop() calls runner.stop() whenever the runner is
  // not 'idle', including while PartitionRunner.start() is still running (state 'starting').
  // PartitionRunner.stop() then throws "partition runner was never started" (#loop is only set at
  // the end of start()), Worker.close() rejects, and the graceful SIGTERM ends with exit code 1
  // (close-with-grace, logger off: nothing logged) instead of 0. A rolling restart hits this when
  // a worker is told to stop right after it took over partitions (seen once in the rolling test
  // above: exit code 1 when b2 was stopped right after b1). Supervisor.#run already honours a
  // stop requested during start() ("stop() may have been called while start() was running");
  // suggested fix: in Supervisor.stop skip runner.stop() while the runner is 'starting' and let
  // #run stop it when start() returns (or make PartitionRunner.stop() during start() defer).
  // Made (nearly) deterministic by freezing the server the moment w2 logs that a runner is
  // starting and sending SIGTERM while it is frozen.
  it('exits 0 on SIGTERM while a partition runner is still starting', async () => {
    const server = await startNatsServer();
    teardown.push(() => server.cleanup());
    const dep = await provision(server.url, { partitions: 2, leaseTtlMs: 3000 });
    teardown.push(() => dep.close());
    const workers: WorkerProcess[] = [];
    teardown.push(async () => {
      if (server.pid() !== undefined) server.resume();
      for (const w of workers) await w.stop('SIGKILL');
    });
    const w1 = spawnWorker(dep, 'w1');
    workers.push(w1);
    await waitReady(w1);
    // Debug level: the runner logs 'partition state' → starting as the first step of start().
    const w2 = spawnWorker(dep, 'w2', { LOG_LEVEL: 'debug' });
    workers.push(w2);
    await w2.waitForLog((l) => l.msg === 'partition state' && l['to'] === 'starting');
    server.pause();
    w2.signal('SIGTERM');
    await sleep(300);
    server.resume();
    expectExitZero(w2, await w2.exited);
  });
});
