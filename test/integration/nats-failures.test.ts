// Acceptance (issue 8): the worker never exits on its own because NATS fails underneath it, a
// terminal failure parks only its partition (visible in status, /readyz and metrics), and a
// forced shutdown hands partitions over at once. Real nats-server processes (paused, restarted),
// real `order-fleet worker` processes, outcomes only: every customer equals the model.

import { setTimeout as sleep } from 'node:timers/promises';
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { leaseKey } from '../../src/contract/internal-names.js';
import { partitionOf } from '../../src/contract/partition.js';
import { customerKey } from '../../src/state/keys.js';
import {
  eventually,
  provision,
  readStoredStates,
  spawnWorker,
  type TestDeployment,
  type WorkerProcess,
} from '../support/fleet.js';
import { freePort, startNatsServer } from '../support/index.js';
import {
  fleetStatusJson,
  settled,
  settledOwners,
  startLoad,
  stopGracefully,
  traceOnFailure,
  useTeardown,
  alive,
  expectModel,
} from '../support/fleet-scenarios.js';
import { diffStates, generateLoad, modelFromPublished, publishAll } from '../support/model.js';
import { NO_SUMMARY_TIMERS } from '../support/worker-scenarios.js';

const teardown = useTeardown();

async function scenario(opts: {
  readonly partitions: number;
  readonly leaseTtlMs: number;
}): Promise<{
  dep: TestDeployment;
  server: Awaited<ReturnType<typeof startNatsServer>>;
  workers: WorkerProcess[];
  step: (name: string) => void;
  worker: (id: string, env?: Record<string, string>) => WorkerProcess;
}> {
  const server = await startNatsServer();
  teardown.push(() => server.cleanup());
  const dep = await provision(server.url, { ...opts, env: NO_SUMMARY_TIMERS });
  teardown.push(() => dep.close());
  const workers: WorkerProcess[] = [];
  const step = traceOnFailure(workers);
  teardown.push(async () => {
    for (const w of workers) await w.stop('SIGKILL');
  });
  const worker = (id: string, env: Record<string, string> = {}): WorkerProcess => {
    const w = spawnWorker(dep, id, env);
    workers.push(w);
    return w;
  };
  return { dep, server, workers, step, worker };
}

describe('NATS failing underneath the fleet', () => {
  it('a NATS stall (SIGSTOP 7 s) while a worker waits on a lease: it stays up and takes the partition afterwards', async () => {
    const { dep, server, step, worker } = await scenario({ partitions: 2, leaseTtlMs: 3000 });
    // Somebody else holds partition 0's lease and renews it (a previous owner still draining).
    const leases = await new Kvm(dep.nc).open(dep.names.leaseBucket);
    const ghost = JSON.stringify({ owner: 'ghost', partition: 0, at: new Date().toISOString() });
    await leases.put(leaseKey(0), ghost);
    let holding = true;
    const renewing = (async () => {
      while (holding) {
        await leases.put(leaseKey(0), ghost).catch(() => undefined); // the server may be paused
        await sleep(500);
      }
    })();
    teardown.push(async () => {
      holding = false;
      await renewing;
    });

    const w1 = worker('w1');
    // w1 runs partition 1 and waits on partition 0.
    await eventually(async () => {
      const s = await fleetStatusJson(dep);
      return s.table[1]?.owner === 'w1' && s.table[0]?.owner === 'ghost' ? true : undefined;
    });
    const first = generateLoad(40, 400, 1, 'stall');
    const firstResults = await publishAll(dep, first);
    step('waiting on the lease');

    server.pause();
    await sleep(7000);
    server.resume();
    step('server resumed');
    holding = false;
    await renewing;
    // The ghost's entry now expires after the TTL; w1 takes it by itself.
    const second = generateLoad(40, 400, 2, 'stall');
    const secondResults = await publishAll(dep, second);
    await settled(dep, ['w1']);
    step('settled');
    expect(alive(w1)).toBe(true);
    await expectModel(dep, [...first, ...second], [...firstResults, ...secondResults]);
    await stopGracefully(w1);
  });

  it('a single-server restart under load: every worker stays up and the state equals the model', async () => {
    const { dep, server, step, worker } = await scenario({ partitions: 4, leaseTtlMs: 3000 });
    const w1 = worker('w1');
    const w2 = worker('w2');
    await settledOwners(dep, ['w1', 'w2']);
    const load = startLoad(teardown, dep, {
      customers: 60,
      minEvents: 3000,
      chunk: 200,
      pauseMs: 50,
      prefix: 'restart',
    });
    await eventually(() => (load.published > 600 ? true : undefined));
    step('restarting nats');
    await server.restart();
    step('nats back');
    await load.finish();
    await settled(dep, ['w1', 'w2']);
    step('settled');
    expect([alive(w1), alive(w2)]).toEqual([true, true]);
    await expectModel(dep, load.events, load.results);
    await stopGracefully(w1);
    await stopGracefully(w2);
  });

  // A short backlog reads each customer as it is met; a long one (1,000+ entries per partition,
  // as after a crash) reads the partition's customers in one pass first: both must park.
  it.each([
    { backlog: 'short', events: 400 },
    { backlog: 'long', events: 8000 },
  ])(
    'a corrupt snapshot parks its partition (status, /readyz, metrics); the other partitions go on ($backlog backlog)',
    async ({ events: secondEvents }) => {
      const { dep, step, worker } = await scenario({ partitions: 4, leaseTtlMs: 3000 });
      const port = await freePort();
      const adminEnv = { ADMIN_PORT: String(port), ADMIN_HOST: '127.0.0.1' };
      const w1 = worker('w1', adminEnv);
      const first = generateLoad(40, 400, 1, 'corrupt');
      const firstResults = await publishAll(dep, first);
      await settled(dep, ['w1']);
      await stopGracefully(w1);
      step('first run stopped');

      // Damage one customer's stored snapshot: JSON, but no snapshot format this fleet ever wrote
      // (as a botched manual repair or a foreign writer would leave it).
      const victim = first[0]?.customerId ?? '';
      const victimPartition = partitionOf(victim, dep.partitions);
      const stateKv = await new Kvm(dep.nc).open(dep.names.stateBucket);
      await stateKv.put(
        customerKey(victimPartition, victim),
        JSON.stringify({ v: 99, lastSeq: 0, state: { items: [] } }),
      );

      const second = generateLoad(40, secondEvents, 2, 'corrupt');
      const secondResults = await publishAll(dep, second);
      const w2 = worker('w2', adminEnv);
      const status = await eventually(async () => {
        const s = await fleetStatusJson(dep);
        return s.parked.includes(victimPartition) ? s : undefined;
      });
      step('parked');
      const row = status.table[victimPartition];
      expect(row?.state).toBe('parked');
      expect(row?.parked?.code).toBe('STATE_CORRUPT');
      expect(row?.owner).toBe('w2');

      // Not ready while a partition is parked; the metrics say why.
      const readyz = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(readyz.status).toBe(503);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/^order_fleet_partitions_parked\{[^}]*\} 1$/mu);
      expect(metrics).toMatch(/^order_fleet_partition_restarts_total\{[^}]*\} \d+$/mu);

      // Every other partition caught up, and its customers equal the model.
      await eventually(async () => {
        const s = await fleetStatusJson(dep);
        return s.table.every((t) => t.partition === victimPartition || t.lag === 0)
          ? true
          : undefined;
      });
      const events = [...first, ...second];
      const results = [...firstResults, ...secondResults];
      const expected = modelFromPublished(events, results).expected();
      const stored = await readStoredStates(dep);
      const others = (m: ReadonlyMap<string, unknown>): string[] =>
        [...m.keys()].filter((id) => partitionOf(id, dep.partitions) !== victimPartition);
      const keep = <V>(m: ReadonlyMap<string, V>): Map<string, V> =>
        new Map(others(m).map((id) => [id, m.get(id) as V]));
      expect(others(expected).length).toBeGreaterThan(0);
      expect(diffStates(keep(expected), keep(stored))).toEqual([]);
      expect(alive(w2)).toBe(true);
      await stopGracefully(w2);
    },
  );

  it('a forced shutdown releases every lease first: the successor takes over long before the lease TTL', async () => {
    // A TTL far above the wait below: only the forced release can explain a quick takeover.
    const { dep, step, worker } = await scenario({ partitions: 4, leaseTtlMs: 90_000 });
    const w1 = worker('w1');
    const w2 = worker('w2');
    await settledOwners(dep, ['w1', 'w2']);
    const load = startLoad(teardown, dep, {
      customers: 60,
      minEvents: 2000,
      chunk: 200,
      pauseMs: 50,
      prefix: 'forced',
    });
    await eventually(() => (load.published > 400 ? true : undefined));
    step('forcing w1');
    // A second signal during the graceful close forces the exit. (Two SIGTERMs sent at once may
    // be delivered as one: standard signals do not queue. SIGINT is a second, distinct signal.)
    w1.signal('SIGTERM');
    w1.signal('SIGINT');
    expect(await w1.exited).toEqual({ code: 1, signal: null });
    step('w1 exited');
    // w2 owns everything well before a 90 s TTL could have expired anything.
    await eventually(
      async () => {
        const s = await fleetStatusJson(dep);
        return s.table.every((t) => t.owner === 'w2') ? true : undefined;
      },
      20_000,
      250,
    );
    step('w2 owns all');
    await load.finish();
    await settled(dep, ['w2']);
    await expectModel(dep, load.events, load.results);
    await stopGracefully(w2);
  });
});
