// Summary windows end to end: a real nats-server, real worker processes, events published with the
// SDK in timed bursts. Every test checks outcomes, never timing:
// - the NOTIFICATIONS stream holds exactly one message per summaryId (Nats-Msg-Id = summaryId);
// - the summaries equal an independent re-fold of the ORDERS log (changes + the timer entries the
//   fleet appended), so every change belongs to exactly one window and windows never overlap;
// - each burst (bursts of a customer are ≥ 3 quiet periods apart, actions in a burst ≤ Q/5 apart)
//   is exactly one window with the net change, contents and sequence range the test expects;
// - no window closed early (closedAt ≥ last change + Q for quiet, ≥ opened + M for max).
// Waiting is outcome based too: until every customer's stored state has applied its last change
// and has no window open, after which no summary can be missing.

import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../src/contract/partition.js';
import { OrderPublisher, type OrderEventInput } from '../../src/publisher/order-publisher.js';
import { customerKey } from '../../src/state/keys.js';
import { eventually, waitReady, type TestDeployment } from '../support/fleet.js';
import { rng } from '../support/model.js';
import {
  checkNotifications,
  contentsOf,
  Driver,
  expectBurstWindows,
  checkpointedAll,
  crashPathWindows,
  indexedTimers,
  randomBurst,
  readNotifications,
  sortNums,
  summaryFleet,
  summaryLogs,
  waitAllClosed,
} from '../support/summaries.js';

const { deploy, worker } = summaryFleet();

const Q = 500;
const M = 2500;
const SUMMARY_ENV = {
  SUMMARY_QUIET_MS: String(Q),
  SUMMARY_MAX_MS: String(M),
  TIMER_TICK_MS: '50',
};
/**
 * Bursts of one customer are at least 3 Q apart, and the next one only starts once the previous
 * window is closed (the stored state says so), so a slow owner cannot merge two bursts; actions
 * within a burst are ≤ Q/5 apart.
 */
const BETWEEN_BURSTS_MS = 3 * Q;
const IN_BURST_MS = Q / 10;

async function nextBurst(dep: TestDeployment, d: Driver): Promise<void> {
  await Promise.all([waitAllClosed(dep, d.lastChangeSeqs()), sleep(BETWEEN_BURSTS_MS)]);
}

describe('summary windows', () => {
  it('bursts separated by more than the quiet period give one summary each, with the exact net change', async () => {
    const { dep, d } = await deploy(SUMMARY_ENV);
    const w = worker(dep, 'w-bursts');
    await waitReady(w);
    const random = rng(7);
    const customers = Array.from({ length: 10 }, (_, i) => `burst-${i}`);
    for (let round = 0; round < 4; round++) {
      if (round > 0) await nextBurst(dep, d);
      const bursts = new Map(
        customers.map((c) => [c, randomBurst(random, contentsOf(d.sent, c))] as const),
      );
      // order.created is not a change: it neither opens nor extends a window.
      if (round === 0)
        bursts.set('burst-0', [{ type: 'order.created' }, ...(bursts.get('burst-0') ?? [])]);
      await d.round(round, bursts, IN_BURST_MS);
    }
    await waitAllClosed(dep, d.lastChangeSeqs());
    const { summaries, log } = await checkNotifications(dep, { quietMs: Q, maxMs: M });
    expectBurstWindows(summaries, log, d.sent);
    expect(summaries.length).toBeGreaterThan(20);
    // The worker published each once, none as a duplicate.
    const published = summaryLogs(w);
    expect(published.filter((l) => l['duplicate'] === true)).toEqual([]);
    expect(new Set(published.map((l) => l['summaryId'])).size).toBe(summaries.length);
  });

  it('actions closer than the quiet period merge into one window', async () => {
    const quiet = 900;
    const { dep, d } = await deploy({
      ...SUMMARY_ENV,
      SUMMARY_QUIET_MS: String(quiet),
      SUMMARY_MAX_MS: '8000',
    });
    await waitReady(worker(dep, 'w-merge'));
    // Six actions a quarter of the quiet period apart: one window, not six.
    const events: OrderEventInput[] = [
      { type: 'items.added', items: [1, 2] },
      { type: 'items.added', items: [3] },
      { type: 'items.removed', items: [1] },
      { type: 'items.added', items: [4, 4] },
      { type: 'items.removed', items: [9] },
      { type: 'items.added', items: [5] },
    ];
    await d.round(0, new Map([['merge-1', events]]), quiet / 4);
    await waitAllClosed(dep, d.lastChangeSeqs());
    const { summaries, log } = await checkNotifications(dep, { quietMs: quiet, maxMs: 8000 });
    // Precondition of the scenario, checked on the stream's own clock: every gap stayed < Q.
    const times = log.filter((r) => r.payload.kind === 'change').map((r) => r.timeMs);
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? t));
    expect(Math.max(...gaps), 'publisher stalled for a whole quiet period').toBeLessThan(quiet);
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({
      firstSeq: d.sent[0]?.seq,
      lastSeq: d.sent[5]?.seq,
      added: [2, 3, 4, 4, 5],
      removed: [],
      contents: [2, 3, 4, 4, 5],
      reason: 'quiet',
    });
  });

  it('a customer who never stops changing gets a summary every max period', async () => {
    const quiet = 600;
    const max = 2000;
    const { dep, d } = await deploy({
      ...SUMMARY_ENV,
      SUMMARY_QUIET_MS: String(quiet),
      SUMMARY_MAX_MS: String(max),
    });
    await waitReady(worker(dep, 'w-max'));
    // A change every Q/3 for well over 2 M.
    const events: OrderEventInput[] = Array.from({ length: 36 }, (_, i) => ({
      type: 'items.added' as const,
      items: [i],
    }));
    await d.round(0, new Map([['busy-1', events]]), quiet / 3);
    await waitAllClosed(dep, d.lastChangeSeqs());
    const { summaries, log } = await checkNotifications(dep, { quietMs: quiet, maxMs: max });
    const changes = log.filter((r) => r.payload.kind === 'change');
    const span = (changes[changes.length - 1]?.timeMs ?? 0) - (changes[0]?.timeMs ?? 0);
    expect(span, 'the scenario must run for more than 2 M').toBeGreaterThan(2 * max);
    // A quiet close is only legitimate after a real pause (the publisher stalling for Q).
    const timeOf = new Map(changes.map((r) => [r.seq, r.timeMs]));
    const nextChange = (seq: number): number | undefined =>
      changes.find((r) => r.seq > seq)?.timeMs;
    for (const s of summaries.slice(0, -1)) {
      if (s.reason === 'quiet') {
        const next = nextChange(s.lastSeq);
        expect((next ?? Infinity) - (timeOf.get(s.lastSeq) ?? 0)).toBeGreaterThanOrEqual(quiet);
      }
    }
    expect(summaries.filter((s) => s.reason === 'max').length).toBeGreaterThanOrEqual(2);
    expect(summaries[summaries.length - 1]?.reason).toBe('quiet');
    // Consecutive windows tile the changes: each starts with the change after the previous one.
    expect(summaries[0]?.firstSeq).toBe(changes[0]?.seq);
    for (const [i, s] of summaries.entries()) {
      const prev = summaries[i - 1];
      if (prev !== undefined)
        expect(s.firstSeq).toBe(changes.find((r) => r.seq > prev.lastSeq)?.seq);
    }
    expect(summaries[summaries.length - 1]?.lastSeq).toBe(changes[changes.length - 1]?.seq);
    expect(summaries[summaries.length - 1]?.contents).toEqual(events.map((_, i) => i));
    // Every window's added is exactly the items of its changes (one each, in order).
    for (const s of summaries) {
      const own = changes.filter((r) => r.seq >= s.firstSeq && r.seq <= s.lastSeq);
      expect(s.added).toEqual(
        sortNums(own.flatMap((r) => (r.payload.kind === 'change' ? r.payload.items : []))),
      );
    }
  });

  it('a net-empty window sends nothing', async () => {
    const { dep, d } = await deploy(SUMMARY_ENV);
    await waitReady(worker(dep, 'w-empty'));
    await d.round(
      0,
      new Map<string, OrderEventInput[]>([
        [
          'empty-1',
          [
            { type: 'items.added', items: [1] },
            { type: 'items.removed', items: [1] },
          ],
        ],
        ['empty-2', [{ type: 'items.removed', items: [4] }]], // absent: nothing changes
        ['empty-3', [{ type: 'order.cleared' }]], // clearing nothing
        ['full-1', [{ type: 'items.added', items: [1, 1] }]],
      ]),
      IN_BURST_MS,
    );
    await nextBurst(dep, d);
    await d.round(
      1,
      new Map<string, OrderEventInput[]>([
        // clear then add back the same: net-empty
        ['full-1', [{ type: 'order.cleared' }, { type: 'items.added', items: [1, 1] }]],
        ['empty-1', [{ type: 'items.added', items: [2] }]],
      ]),
      IN_BURST_MS,
    );
    await waitAllClosed(dep, d.lastChangeSeqs());
    const { summaries, log } = await checkNotifications(dep, { quietMs: Q, maxMs: M });
    expectBurstWindows(summaries, log, d.sent);
    expect(summaries.map((s) => [s.customerId, s.added, s.removed])).toEqual([
      ['full-1', [1, 1], []],
      ['empty-1', [2], []],
    ]);
    // The empty windows did close (a timer entry was applied), they just sent nothing.
    expect(
      log.filter((r) => r.payload.kind === 'timer' && r.customerId.startsWith('empty-')).length,
    ).toBeGreaterThanOrEqual(4);
  });

  it('timers fire for customers that are not in memory (passivated)', async () => {
    // One customer per partition in memory: every window closes on a customer loaded again.
    const { dep, d } = await deploy({ ...SUMMARY_ENV, MAX_CUSTOMERS_IN_MEMORY: '8' });
    await waitReady(worker(dep, 'w-passive'));
    const random = rng(11);
    const customers = Array.from({ length: 60 }, (_, i) => `passive-${i}`);
    for (let round = 0; round < 2; round++) {
      if (round > 0) await nextBurst(dep, d);
      await d.round(
        round,
        new Map(customers.map((c) => [c, randomBurst(random, contentsOf(d.sent, c))] as const)),
        IN_BURST_MS,
      );
    }
    await waitAllClosed(dep, d.lastChangeSeqs());
    const { summaries, log } = await checkNotifications(dep, { quietMs: Q, maxMs: M });
    expectBurstWindows(summaries, log, d.sent);
    expect(summaries.length).toBeGreaterThan(60);
  });

  // Graceful (the timer snapshot) and crash (the crash path of the layout: the timer index, or a
  // scan of the customers' snapshots) with nothing left to replay: a fresh fleet holding almost
  // nobody in memory finds the open windows only where the layout stores them.
  // With a backlog (1,000+ entries per partition published while the fleet is down) the new
  // owners' long catch-up preloads the partitions' snapshots, and on the state layout the open
  // timers come from that one pass ('preload'), or, when the snapshots do not fit in memory, from
  // a pass of their own ('scan').
  it.each([
    { layout: 'state', stop: 'SIGTERM', backlog: 'none' },
    { layout: 'state', stop: 'SIGKILL', backlog: 'none' },
    { layout: 'index', stop: 'SIGKILL', backlog: 'none' },
    { layout: 'state', stop: 'SIGKILL', backlog: 'preload' },
    { layout: 'state', stop: 'SIGKILL', backlog: 'scan' },
  ] as const)(
    'windows open when the whole fleet stops ($stop, $layout layout, backlog $backlog) close once after a cold start',
    async ({ layout, stop, backlog }) => {
      const quiet = 4000;
      const env = { ...SUMMARY_ENV, SUMMARY_QUIET_MS: String(quiet), SUMMARY_MAX_MS: '60000' };
      const { dep, d } = await deploy(env, { timerLayout: layout });
      const a = worker(dep, 'cold-a');
      await waitReady(a);
      const b = worker(dep, 'cold-b');
      await waitReady(b);
      const random = rng(3);
      const customers = Array.from({ length: 40 }, (_, i) => `cold-${i}`);
      await d.round(
        0,
        new Map(customers.map((c) => [c, randomBurst(random, [])] as const)),
        IN_BURST_MS,
      );
      // Every window is open and stored for the crash path, and covered by the watermarks,
      // before the fleet goes down.
      await eventually(
        async () =>
          (await crashPathWindows(dep, layout)).size === customers.length &&
          (await checkpointedAll(dep, d))
            ? true
            : undefined,
        20_000,
      );
      await Promise.all([a.stop(stop), b.stop(stop)]);
      if (stop === 'SIGTERM') {
        expect((await a.exited).code).toBe(0);
        expect((await b.exited).code).toBe(0);
      }
      const before = await readNotifications(dep);
      expect(before.summaries, 'windows must still be open when the fleet stops').toEqual([]);
      expect((await crashPathWindows(dep, layout)).size).toBe(customers.length);
      // The state layout keeps no index at all.
      if (layout === 'state') expect((await indexedTimers(dep)).size).toBe(0);

      if (backlog !== 'none') {
        const filler = Array.from({ length: 240 }, (_, i) => `fill-${i}`);
        await d.round(
          1,
          new Map(
            filler.map((c, i) => [
              c,
              Array.from({ length: 50 }, (): OrderEventInput => ({
                type: 'items.added',
                items: [i % 5],
              })),
            ]),
          ),
          0,
        );
      }
      const fresh = { MAX_CUSTOMERS_IN_MEMORY: backlog === 'preload' ? '100000' : '8' };
      const c = worker(dep, 'cold-c', fresh);
      const e = worker(dep, 'cold-e', fresh);
      await Promise.all([waitReady(c), waitReady(e)]);
      await waitAllClosed(dep, d.lastChangeSeqs());
      const { summaries, log } = await checkNotifications(dep, { quietMs: quiet, maxMs: 60_000 });
      expectBurstWindows(summaries, log, d.sent);
      expect(summaries).toHaveLength(customers.length + (backlog === 'none' ? 0 : 240));
      // Nothing was replayed but the backlog (the windows were found, not re-opened by a
      // replay); the stored windows are all closed again.
      const caughtUp = [...c.logs(), ...e.logs()].filter((l) => l.msg === 'partition caught up');
      expect(caughtUp.length).toBeGreaterThanOrEqual(dep.partitions);
      if (backlog === 'none') expect(caughtUp.filter((l) => l['replayed'] !== 0)).toEqual([]);
      expect([...summaryLogs(c), ...summaryLogs(e)].filter((l) => l['duplicate'] === true)).toEqual(
        [],
      );
      await eventually(
        async () => ((await crashPathWindows(dep, layout)).size === 0 ? true : undefined),
        10_000,
      );
      if (layout === 'state') expect((await indexedTimers(dep)).size).toBe(0);
    },
  );

  // Timer entries share the ORDERS stream's duplicate window with publishers' event ids. Timer
  // ids start with the reserved '~'; a publisher that ignores the contract (raw NATS, not the
  // SDK) and takes a future timer id must still not swallow the timer: the worker sees that the
  // "duplicate" is not its entry and appends the timer under another id.
  it('a raw publish that takes a timer id does not swallow the timer', async () => {
    const { dep, d } = await deploy(SUMMARY_ENV);
    await waitReady(worker(dep, 'w-collide-1'));
    await d.round(0, new Map([['victim-1', [{ type: 'items.added', items: [1] }]]]), 0);
    const seq = d.sent[0]?.seq ?? 0;
    // Another customer's event, published raw, whose message id is the victim's quiet timer id.
    const other = 'other-1';
    const ack = await jetstream(dep.nc).publish(
      `${dep.names.ordersPrefix}.${partitionOf(other, dep.partitions)}.${other}`,
      JSON.stringify({ id: 'raw-1', type: 'items.added', items: [2] }),
      { msgID: `~tmr-${seq}-q${seq}` },
    );
    expect(ack.duplicate).toBe(false);
    await waitAllClosed(dep, new Map([['victim-1', seq]]), 15_000);
    const { summaries } = await checkNotifications(dep, { quietMs: Q, maxMs: M });
    expect(summaries.filter((s) => s.customerId === 'victim-1').map((s) => s.firstSeq)).toEqual([
      seq,
    ]);
  });

  // The other way round: SDK publishers cannot take a timer id (the '~' prefix is reserved), and
  // an id that merely looks like one without the prefix is an ordinary event id.
  it('a publisher event is never dropped because a timer entry used its id', async () => {
    const { dep, d } = await deploy(SUMMARY_ENV);
    await waitReady(worker(dep, 'w-collide-2'));
    await d.round(0, new Map([['first-1', [{ type: 'items.added', items: [1] }]]]), 0);
    await waitAllClosed(dep, d.lastChangeSeqs());
    const seq = d.sent[0]?.seq ?? 0;
    const pub = new OrderPublisher(dep.nc, {
      names: dep.names,
      partitions: dep.partitions,
      limits: { maxPayloadBytes: 16 * 1024, maxItemsPerEvent: 1000 },
      maxInFlight: 1,
      maxAttempts: 3,
      timeoutMs: 5000,
    });
    await expect(
      pub.publish('second-1', { id: `~tmr-${seq}-q${seq}`, type: 'items.added', items: [7] }),
    ).rejects.toMatchObject({ code: 'INVALID_EVENT' });
    const result = await pub.publish('second-1', {
      id: `tmr-${seq}-q${seq}`,
      type: 'items.added',
      items: [7],
    });
    await pub.close();
    expect(result.duplicate).toBe(false);
  });

  // An index entry this version cannot decode (e.g. written by a newer version: the timer schema
  // is strict) is skipped with a warning; it must not stop its partition.
  it('a timer index entry that does not decode does not stop its partition', async () => {
    const { dep, d } = await deploy(SUMMARY_ENV);
    const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
    const stale = 'stale-1';
    const p = partitionOf(stale, dep.partitions);
    await kv.put(
      `t${customerKey(p, stale).slice(1)}`,
      JSON.stringify({
        dueAtMs: 1,
        id: 'tmr-1-q1',
        entry: {
          type: 'summary.timer',
          window: 1,
          lastChangeSeq: 1,
          reason: 'quiet',
          dueAtMs: 1,
          note: 'field of a newer version',
        },
      }),
    );
    const w = worker(dep, 'w-corrupt-index');
    await waitReady(w, 20_000);
    // A customer of the same partition still gets its summary.
    const neighbour = Array.from({ length: 200 }, (_, i) => `n-${i}`).find(
      (c) => partitionOf(c, dep.partitions) === p,
    );
    if (neighbour === undefined) throw new Error('no customer in that partition');
    await d.round(0, new Map([[neighbour, [{ type: 'items.added', items: [3] }]]]), 0);
    await waitAllClosed(dep, d.lastChangeSeqs(), 15_000);
    const { summaries } = await checkNotifications(dep, { quietMs: Q, maxMs: M });
    expect(summaries.map((s) => s.customerId)).toEqual([neighbour]);
  });
});
