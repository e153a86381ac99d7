// A timer read from a stale index entry: the window closed (its timer entry is in the log, the
// summary stored, the state checkpointed), but the index still says "open" — what a crash between
// the state write and the index write leaves behind. The next owner fires that timer, and the
// server answers "duplicate" (the deterministic id is still in the duplicate window): the entry
// is behind the runner and will never be delivered again. The runner must let the customer's
// state decide (no window: the timer goes and the index entry is deleted), not wait for an entry
// that never comes, and must not send the summary a second time.

import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../src/contract/partition.js';
import { customerKey } from '../../src/state/keys.js';
import { eventually, waitReady } from '../support/fleet.js';
import {
  checkNotifications,
  indexedTimers,
  summaryFleet,
  waitAllClosed,
} from '../support/summaries.js';

const { deploy, worker } = summaryFleet();

const Q = 500;
const M = 2500;
const SUMMARY_ENV = { SUMMARY_QUIET_MS: String(Q), SUMMARY_MAX_MS: String(M), TIMER_TICK_MS: '50' };

describe('a stale timer index entry', () => {
  it('answered as a duplicate, is settled from the state: the index empties, one summary', async () => {
    // Only the index layout has an index to go stale.
    const { dep, d } = await deploy(SUMMARY_ENV, { timerLayout: 'index' });
    const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
    const customer = 'stale-c';
    const key = `t${customerKey(partitionOf(customer, dep.partitions), customer).slice(1)}`;

    const first = worker(dep, 'w-first');
    await waitReady(first);
    // A window held open long enough to copy its index entry (max period M, quiet Q).
    await d.round(0, new Map([[customer, [{ type: 'items.added', items: [1, 2] }]]]), 0);
    const open = await eventually(async () => {
      const entry = await kv.get(key);
      return entry !== null && entry.operation === 'PUT' ? entry.string() : undefined;
    }, 20_000);
    await waitAllClosed(dep, d.lastChangeSeqs());
    await eventually(async () => ((await indexedTimers(dep)).has(customer) ? undefined : true));
    const before = await checkNotifications(dep, { quietMs: Q, maxMs: M });
    expect(before.summaries.map((s) => s.customerId)).toEqual([customer]);

    // The crash, and the stale entry it could have left: the index says the window is open.
    await first.stop('SIGKILL');
    await kv.put(key, open);

    const next = worker(dep, 'w-next');
    await waitReady(next);
    await eventually(
      async () => ((await indexedTimers(dep)).has(customer) ? undefined : true),
      30_000,
    );
    const after = await checkNotifications(dep, { quietMs: Q, maxMs: M });
    expect(after.summaries).toEqual(before.summaries);
  });
});
