// Upgrading a deployment in place from the `index` timer layout (every deployment created before
// layouts existed) to `state`: setup refuses while a live worker does not advertise `state` (an
// older version would trust an index nobody keeps complete), refuses to go back, and once
// switched, a crash of the owner loses no open window even with the index gone, because the new
// owner reads them from the customers' snapshots. Real nats-server, real worker processes, real
// signals; outcomes read from KV, the streams and the CLI's exit codes.

import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { memberKey } from '../../src/contract/internal-names.js';
import { readDeployment, timerLayoutOf } from '../../src/nats/deployment.js';
import type { OrderEventInput } from '../../src/publisher/order-publisher.js';
import { timerKeyFilter } from '../../src/state/keys.js';
import { eventually, runCli, waitReady, type TestDeployment } from '../support/fleet.js';
import {
  checkNotifications,
  checkpointedAll,
  expectBurstWindows,
  indexedTimers,
  readNotifications,
  storedOpenWindows,
  summaryFleet,
  waitAllClosed,
} from '../support/summaries.js';

const { deploy, worker } = summaryFleet();

const QUIET_MS = 5000;
const POLICY = { quietMs: QUIET_MS, maxMs: 120_000 };
const ENV = {
  SUMMARY_QUIET_MS: String(QUIET_MS),
  SUMMARY_MAX_MS: '120000',
  TIMER_TICK_MS: '50',
  CHECKPOINT_INTERVAL_MS: '200',
};

async function layoutOf(dep: TestDeployment): Promise<string | undefined> {
  const stored = await readDeployment(await new Kvm(dep.nc).open(dep.names.metaBucket));
  return stored === undefined ? undefined : timerLayoutOf(stored);
}

async function deleteIndex(dep: TestDeployment): Promise<number> {
  const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
  let n = 0;
  for (let p = 0; p < dep.partitions; p++) {
    for await (const key of await kv.keys(timerKeyFilter(p))) {
      await kv.delete(key);
      n++;
    }
  }
  return n;
}

describe('timer layout: index → state in place', () => {
  it('a new deployment is on the state layout', async () => {
    const { dep } = await deploy(ENV);
    expect(await layoutOf(dep)).toBe('state');
    // Asking for what it has changes nothing; going back is refused.
    expect((await runCli(dep, ['setup', '--timer-layout', 'state'])).code).toBe(0);
    const back = await runCli(dep, ['setup', '--timer-layout', 'index']);
    expect(back.code).toBe(2);
    expect(back.stderr).toContain('[IMMUTABLE_SETTING]');
    expect(await layoutOf(dep)).toBe('state');
  });

  it('switches only when every live worker supports it; after the switch a crash loses no window', async () => {
    const { dep, d } = await deploy(ENV, { timerLayout: 'index' });
    expect(await layoutOf(dep)).toBe('index');

    // A worker of an older version: its heartbeat lists no layouts. (Written by hand, and kept
    // alive by hand: member entries expire with the bucket TTL.)
    const members = await new Kvm(dep.nc).open(dep.names.memberBucket);
    const old = memberKey('old-version');
    await members.put(
      old,
      JSON.stringify({ id: 'old-version', since: new Date().toISOString(), heartbeatAt: '' }),
    );
    const blocked = await runCli(dep, ['setup', '--timer-layout', 'state']);
    expect(blocked.code, blocked.stderr).toBe(2);
    expect(blocked.stderr).toContain('[UPGRADE_BLOCKED]');
    expect(blocked.stderr).toContain('old-version');
    expect(await layoutOf(dep)).toBe('index');
    await members.delete(old);

    // The new version on the index layout: it keeps the index, as the old one did.
    const a = worker(dep, 'up-a');
    await waitReady(a);
    const customers = Array.from({ length: 40 }, (_, i) => `up-${i}`);
    const bursts = new Map<string, OrderEventInput[]>(
      customers.map((c, i) => [c, [{ type: 'items.added', items: [i % 5, 2] }]]),
    );
    await d.round(0, bursts, 0);
    await eventually(
      async () => ((await indexedTimers(dep)).size === customers.length ? true : undefined),
      30_000,
    );

    const switched = await runCli(dep, ['setup', '--timer-layout', 'state']);
    expect(switched.code, switched.stderr).toBe(0);
    expect(switched.stdout).toContain('timer-layout state');
    expect(await layoutOf(dep)).toBe('state');

    // Everything checkpointed, then the owner crashes. The index it wrote is removed too: after
    // the switch nothing may depend on it (a crash of a state-layout owner leaves none).
    await eventually(
      async () =>
        (await storedOpenWindows(dep)).size === customers.length && (await checkpointedAll(dep, d))
          ? true
          : undefined,
      30_000,
    );
    expect((await a.stop('SIGKILL')).signal).toBe('SIGKILL');
    expect(await deleteIndex(dep)).toBe(customers.length);
    expect((await readNotifications(dep)).summaries, 'windows open at the crash').toEqual([]);

    // A new owner holding almost nobody in memory: only the snapshots can tell it the windows.
    const b = worker(dep, 'up-b', { MAX_CUSTOMERS_IN_MEMORY: '8' });
    await waitReady(b);
    // More windows after the switch: none of them is indexed.
    const later = Array.from({ length: 10 }, (_, i) => `later-${i}`);
    await d.round(1, new Map(later.map((c) => [c, [{ type: 'items.added', items: [7] }]])), 0);
    await waitAllClosed(dep, d.lastChangeSeqs(), 90_000);
    const { summaries, log } = await checkNotifications(dep, POLICY);
    expectBurstWindows(summaries, log, d.sent);
    expect(summaries.map((s) => s.customerId).sort()).toEqual([...customers, ...later].sort());
    expect((await indexedTimers(dep)).size).toBe(0);
  });
});
