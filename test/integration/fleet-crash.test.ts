// Acceptance: SIGKILL one of three workers under load. Real nats-server, real `order-fleet worker`
// processes, a real SIGKILL (no final checkpoint, no lease release, no membership delete), and a
// short lease TTL. Proves that
// - the dead worker's partitions are taken over by the survivors once its membership and leases
//   expire: `status --json` shows survivors as owners, with the watermark epoch bumped, and the
//   survivors log 'partition starting' with cleanHandoff false for each of them (crash replay);
// - the final state of every customer equals an independent model of what the stream holds, and
//   no customer's stored lastSeq lags its last event (nothing lost, nothing applied twice).
// No timing is asserted: only outcomes.

import { describe, expect, it } from 'vitest';
import {
  field,
  linesOf,
  numberField,
  settled,
  settledOwners,
  stopAllGracefully,
  startFleetScenario,
  startLoad,
  useTeardown,
} from '../support/fleet-scenarios.js';
import {
  eventually,
  readStoredStates,
  spawnWorker,
  waitReady,
  type LogLine,
} from '../support/fleet.js';
import { diffStates, lostCustomers, modelFromPublished } from '../support/model.js';

const PARTITIONS = 8;
const CUSTOMERS = 1000;
const MIN_EVENTS = 15_000;
const LEASE_TTL_MS = 2000;

/** Everything a test started, torn down in reverse order even when the test fails. */
const teardown = useTeardown();

describe('fleet crash (SIGKILL) under load', () => {
  it("hands a killed worker's partitions to the survivors, who replay to the exact state", async () => {
    const { dep, workers, step } = await startFleetScenario(teardown, {
      partitions: PARTITIONS,
      leaseTtlMs: LEASE_TTL_MS,
    });
    const load = startLoad(teardown, dep, {
      customers: CUSTOMERS,
      minEvents: MIN_EVENTS,
      chunk: 500,
      pauseMs: 50,
      prefix: 'crash',
    });

    const [c1, c2, c3] = ['c1', 'c2', 'c3'].map((id) => {
      const w = spawnWorker(dep, id);
      workers.push(w);
      return w;
    });
    if (c1 === undefined || c2 === undefined || c3 === undefined) throw new Error('unreachable');
    for (const w of workers) await waitReady(w);
    step('workers ready');
    const before = await settledOwners(dep, ['c1', 'c2', 'c3']);
    const victimPartitions = before.table.filter((t) => t.owner === 'c2').map((t) => t.partition);
    expect(victimPartitions.length).toBeGreaterThan(0);
    const epochBefore = new Map(before.table.map((t) => [t.partition, t.epoch]));
    // Let the victim apply some entries past its last checkpoint.
    await eventually(() => (load.published > 2000 ? true : undefined));
    const survivorsLogAt = new Map([c1, c3].map((w) => [w.id, w.logs().length]));

    step('SIGKILL c2');
    c2.signal('SIGKILL');
    expect(await c2.exited).toEqual({ code: null, signal: 'SIGKILL' });

    // Survivors take over every partition once the victim's membership and leases expire.
    const after = await settledOwners(dep, ['c1', 'c3']);
    for (const p of victimPartitions) {
      const row = after.table.find((t) => t.partition === p);
      expect(row?.owner === 'c1' || row?.owner === 'c3').toBe(true);
      // A new runner fenced the dead one: the epoch went up.
      expect(row?.epoch ?? 0).toBeGreaterThan(epochBefore.get(p) ?? 0);
    }
    step('taken over');
    // Each of the victim's partitions was started by a survivor from a crashed (unclean) state.
    // The status shows the new epoch as soon as the survivor fenced, which is before its runner
    // has created the consumer and reported the start: wait for every report.
    const startsSince = (): LogLine[] =>
      [c1, c3].flatMap((w) =>
        w
          .logs()
          .slice(survivorsLogAt.get(w.id) ?? 0)
          .filter((l) => l.msg === 'partition starting'),
      );
    const takeovers = await eventually(() => {
      const all = startsSince();
      return victimPartitions.every((p) => all.some((l) => numberField(l, 'partition') === p))
        ? all
        : undefined;
    });
    for (const p of victimPartitions) {
      const starts = takeovers.filter((l) => numberField(l, 'partition') === p);
      expect(starts.length, `takeovers of partition ${p}`).toBeGreaterThan(0);
      expect(field(starts[0] ?? {}, 'cleanHandoff')).toBe(false);
      expect(field(starts[0] ?? {}, 'previousOwner')).toBe('c2');
    }
    // There was something to replay or catch up: the load kept running while leases expired.
    const victimStarts = takeovers.filter((l) =>
      victimPartitions.includes(numberField(l, 'partition')),
    );
    expect(victimStarts.reduce((sum, l) => sum + numberField(l, 'backlog'), 0)).toBeGreaterThan(0);
    // Partitions the survivors already owned kept running, or (bounded-load rebalancing may shift
    // one between survivors) moved with a graceful, clean handoff: only the victim's replay.
    const survivorMoves = takeovers.filter(
      (l) => !victimPartitions.includes(numberField(l, 'partition')),
    );
    expect(survivorMoves.filter((l) => field(l, 'cleanHandoff') !== true)).toEqual([]);

    await load.finish();
    expect(load.published).toBeGreaterThanOrEqual(MIN_EVENTS);
    const final = await settled(dep, ['c1', 'c3']);
    expect(final.table.every((t) => t.owner === 'c1' || t.owner === 'c3')).toBe(true);

    step('settled');
    // Every customer's state equals the model; no lastSeq lags the customer's last event.
    const model = modelFromPublished(load.events, load.results);
    const stored = await readStoredStates(dep);
    expect(diffStates(model.expected(), stored)).toEqual([]);
    const lost = lostCustomers(load.events, load.results, stored);
    const doubled = [...model.expected()].filter(
      ([id, items]) => (stored.get(id)?.items.length ?? 0) > items.length,
    );
    expect({ lost: lost.length, doubled: doubled.length }).toEqual({ lost: 0, doubled: 0 });

    // The survivors shut down cleanly afterwards.
    await stopAllGracefully(dep, [c1, c3]);
    const stopped = [c1, c3].flatMap((w) => linesOf(w, 'partition stopped'));
    expect(stopped.filter((l) => field(l, 'state') !== 'stopped')).toEqual([]);
  });
});
