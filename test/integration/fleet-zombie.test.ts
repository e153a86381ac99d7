// Acceptance: a zombie owner. SIGSTOP the owner of a partition for longer than the lease TTL, let
// another worker take the partition over (status shows the new owner and a higher watermark
// epoch), keep publishing to that partition, then SIGCONT the old owner. Real nats-server, real
// `order-fleet worker` processes, real SIGSTOP/SIGCONT. Proves that
// - the resumed worker notices it was fenced: it logs 'lease lost' and/or its runner fails with
//   FENCED or WRITE_CONFLICT, and it stops that partition instead of writing;
// - it never overwrote the new owner's state with older state: a watch on the partition's state
//   keys sees every customer's lastSeq only ever go up, and ends at the customer's last event;
// - the final state of every customer equals an independent model of what the stream holds, and
//   every partition ends with exactly one owner.
// No timing is asserted: only outcomes.

import { setTimeout as sleep } from 'node:timers/promises';
import { KvWatchInclude, Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../src/contract/partition.js';
import {
  fleetStatusJson,
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
  type TestDeployment,
} from '../support/fleet.js';
import { diffStates, lostCustomers, modelFromPublished } from '../support/model.js';

const PARTITIONS = 8;
const CUSTOMERS = 800;
const MIN_EVENTS = 8000;
const LEASE_TTL_MS = 2000;
/** The partition whose owner is frozen. */
const TARGET = 0;
const FENCE_CODES = ['FENCED', 'WRITE_CONFLICT'];

/** Everything a test started, torn down in reverse order even when the test fails. */
const teardown = useTeardown();

/** Records every write to one partition's customer keys, in stream order. */
async function watchPartitionWrites(
  dep: TestDeployment,
  partition: number,
): Promise<{ writes: { key: string; lastSeq: number }[]; stop: () => Promise<void> }> {
  const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
  const watch = await kv.watch({ key: `c.${partition}.>`, include: KvWatchInclude.UpdatesOnly });
  const writes: { key: string; lastSeq: number }[] = [];
  const done = (async () => {
    for await (const entry of watch) {
      if (entry.operation === 'PUT')
        writes.push({ key: entry.key, lastSeq: entry.json<{ lastSeq: number }>().lastSeq });
    }
  })();
  return {
    writes,
    stop: async () => {
      watch.stop();
      await done;
    },
  };
}

describe('fleet zombie owner (SIGSTOP past the lease TTL, then SIGCONT)', () => {
  it('fences the resumed worker, which never overwrites the new owner', async () => {
    const { dep, workers, step } = await startFleetScenario(teardown, {
      partitions: PARTITIONS,
      leaseTtlMs: LEASE_TTL_MS,
    });
    const writes = await watchPartitionWrites(dep, TARGET);
    teardown.push(() => writes.stop());

    // General load over all partitions, plus load aimed at the target partition only.
    const general = startLoad(teardown, dep, {
      customers: CUSTOMERS,
      minEvents: MIN_EVENTS,
      chunk: 400,
      pauseMs: 100,
      prefix: 'zg',
    });
    const targetIds = Array.from({ length: 4000 }, (_, i) => `zt-${i}`)
      .filter((id) => partitionOf(id, PARTITIONS) === TARGET)
      .slice(0, 100);
    expect(targetIds.length).toBe(100);
    const targeted = startLoad(teardown, dep, {
      customers: targetIds.length,
      minEvents: 2000,
      chunk: 100,
      pauseMs: 50,
      prefix: 'zx',
      customerIds: targetIds,
    });

    // Debug level: a runner's 'partition state' line carries the error code when it fails.
    // Started one after the other, so each settles with its share before the next joins.
    for (const id of ['z1', 'z2', 'z3']) {
      const w = spawnWorker(dep, id, { LOG_LEVEL: 'debug' });
      workers.push(w);
      await waitReady(w);
    }
    step('workers ready');
    const before = await settledOwners(dep, ['z1', 'z2', 'z3']);
    const targetBefore = before.table[TARGET];
    const victim = workers.find((w) => w.id === targetBefore?.owner);
    if (targetBefore === undefined || victim === undefined)
      throw new Error(`no owner for partition ${TARGET}: ${JSON.stringify(before.table)}`);
    const victimPartitions = before.table.filter((t) => t.owner === victim.id);
    const others = workers.filter((w) => w !== victim);

    step(`SIGSTOP ${victim.id}`);
    victim.signal('SIGSTOP');
    // Frozen past the TTL: another worker takes the partition over and bumps its epoch.
    const takenOver = await eventually(
      async () => {
        const s = await fleetStatusJson(dep);
        const row = s.table[TARGET];
        return row !== undefined &&
          row.owner !== null &&
          row.owner !== victim.id &&
          row.epoch > targetBefore.epoch
          ? s
          : undefined;
      },
      45_000,
      250,
    );
    step('taken over');
    const newOwnerId = takenOver.table[TARGET]?.owner;
    const newOwner = others.find((w) => w.id === newOwnerId);
    if (newOwner === undefined) throw new Error(`unexpected new owner ${String(newOwnerId)}`);
    const takeover = await newOwner.waitForLog(
      (l) =>
        l.msg === 'partition starting' &&
        l['partition'] === TARGET &&
        l['previousOwner'] === victim.id,
    );
    // The victim never checkpointed cleanly: the new owner replays from the last watermark.
    expect(takeover['cleanHandoff']).toBe(false);
    expect(numberField(takeover, 'epoch')).toBeGreaterThan(targetBefore.epoch);
    // Keep publishing to the partition while the victim is frozen, and let the new owner write.
    const targetedAtTakeover = targeted.published;
    const writesAtTakeover = writes.writes.length;
    await eventually(
      () =>
        targeted.published >= targetedAtTakeover + 500 && writes.writes.length > writesAtTakeover
          ? true
          : undefined,
      45_000,
    );
    step('new owner wrote');
    // The victim's partitions all moved (its membership expired too).
    const whileFrozen = await settledOwners(
      dep,
      others.map((w) => w.id),
    );
    for (const t of victimPartitions)
      expect(whileFrozen.table[t.partition]?.owner).not.toBe(victim.id);

    step('all moved');
    const resumedAt = victim.logs().length;
    victim.signal('SIGCONT');

    // The resumed worker finds out it was fenced and stops each of its old partitions instead of
    // going on: the first stop of each after resuming is a failure, and each shows the fence — a
    // 'lease lost' (its renew was rejected) and/or the runner failing with FENCED (lease validity
    // over, no write attempted) or WRITE_CONFLICT (a conditional write lost to the new owner).
    // (A checkpoint that was in flight at SIGSTOP may instead fail with a client TimeoutError;
    // the renew rejected right after resuming still logs 'lease lost' then.)
    const since = (l: LogLine): boolean => victim.logs().indexOf(l) >= resumedAt;
    const isFence = (l: LogLine, p: number): boolean =>
      l['partition'] === p &&
      ((l.msg === 'lease lost' &&
        l['reason'] === 'renew rejected: another worker holds the lease') ||
        (l.msg === 'partition state' &&
          l['to'] === 'failed' &&
          FENCE_CODES.includes(String(l['code']))));
    for (const t of victimPartitions) {
      const stopped = await victim.waitForLog(
        (l) => l.msg === 'partition stopped' && l['partition'] === t.partition && since(l),
        20_000,
      );
      expect(stopped['state'], `partition ${t.partition}: ${JSON.stringify(stopped)}`).toBe(
        'failed',
      );
      const fence = await victim.waitForLog((l) => isFence(l, t.partition) && since(l), 20_000);
      expect(fence['partition']).toBe(t.partition);
    }
    step('all fenced');
    // The victim comes back as a healthy member; the fleet settles with one owner per partition.
    await general.finish();
    await targeted.finish();
    const final = await settled(dep, ['z1', 'z2', 'z3']);
    expect(final.table.every((t) => t.owner !== null)).toBe(true);
    expect(final.table[TARGET]?.epoch ?? 0).toBeGreaterThan(takenOver.table[TARGET]?.epoch ?? 0);

    step('settled');
    // Final state equals the model; nothing lost, nothing doubled.
    const events = [...general.events, ...targeted.events];
    const results = [...general.results, ...targeted.results];
    const model = modelFromPublished(events, results);
    const stored = await readStoredStates(dep);
    expect(diffStates(model.expected(), stored)).toEqual([]);
    // The new owner's writes were never overwritten by older state: final lastSeq is the last
    // event's seq for every customer...
    const lost = lostCustomers(events, results, stored);
    expect(lost).toEqual([]);
    // ...and on the target partition, no write ever moved a customer's lastSeq backwards.
    await sleep(200);
    const lastByKey = new Map<string, number>();
    const backwards: string[] = [];
    for (const w of writes.writes) {
      const previous = lastByKey.get(w.key) ?? 0;
      if (w.lastSeq < previous) backwards.push(`${w.key}: ${previous} → ${w.lastSeq}`);
      lastByKey.set(w.key, Math.max(previous, w.lastSeq));
    }
    expect(backwards).toEqual([]);
    expect(writes.writes.length).toBeGreaterThan(targetIds.length);

    await stopAllGracefully(dep, workers);
  });
});
