// Crash recovery with real processes and a real signal: a worker is SIGKILLed in the middle of a
// stream of 12,000 events over 500 customers, publishing goes on without it, and a new worker
// replays from the last watermark. The outcome must be exactly the model: nothing lost, nothing
// applied twice.

import { afterEach, describe, expect, it, type TestContext } from 'vitest';
import { partitionOf } from '../../src/contract/partition.js';
import type { PublishResult } from '../../src/publisher/order-publisher.js';
import {
  provision,
  readStoredStates,
  spawnWorker,
  waitReady,
  type TestDeployment,
  type WorkerProcess,
} from '../support/fleet.js';
import {
  diffStates,
  generateLoad,
  modelFromPublished,
  publishAll,
  type ModelEvent,
} from '../support/model.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import {
  logsWith,
  NO_SUMMARY_TIMERS,
  storedEventCounts,
  waitCheckpointed,
} from '../support/worker-scenarios.js';

const CUSTOMERS = 500;
const EVENTS = 12_000;
/** Published while the first worker runs, before it is killed... */
const BEFORE_KILL = 4_000;
/** ...and of the rest, how many are acknowledged when the SIGKILL is sent. */
const KILL_AFTER = 2_000;

let server: NatsServerHandle | undefined;
let dep: TestDeployment | undefined;
const workers: WorkerProcess[] = [];
/** What the test was doing, with timestamps: printed when it fails or times out. */
const phases: string[] = [];
function phase(name: string): void {
  phases.push(`${new Date().toISOString()} ${name}`);
}

afterEach(async (ctx: TestContext) => {
  if (ctx.task.result?.state === 'fail' && ctx.task.fails !== true) {
    console.error(`--- phases\n${phases.join('\n')}`);
    for (const w of workers)
      console.error(`--- worker ${w.id} output (tail)\n${w.output().slice(-6000)}`);
  }
  phases.length = 0;
  for (const w of workers.splice(0)) await w.stop('SIGKILL');
  await dep?.close();
  dep = undefined;
  await server?.cleanup();
  server = undefined;
});

/** Per customer: how many events the stream holds for it and the sequence of the last one. */
function perCustomer(
  events: readonly ModelEvent[],
  results: readonly PublishResult[],
): Map<string, { events: number; lastSeq: number }> {
  const seqs = new Map<number, string>();
  events.forEach((e, i) => {
    const r = results[i];
    if (r !== undefined) seqs.set(r.seq, e.customerId);
  });
  const out = new Map<string, { events: number; lastSeq: number }>();
  for (const [seq, id] of seqs) {
    const c = out.get(id) ?? { events: 0, lastSeq: 0 };
    out.set(id, { events: c.events + 1, lastSeq: Math.max(c.lastSeq, seq) });
  }
  return out;
}

describe('worker crash', () => {
  it('replays from the watermark after SIGKILL: state equals the model, nothing lost or doubled', async () => {
    server = await startNatsServer();
    const d = await provision(server.url, { isolate: false, env: NO_SUMMARY_TIMERS });
    dep = d;

    const load = generateLoad(CUSTOMERS, EVENTS, 42, 'crash');
    const first = spawnWorker(d, 'crash-w1', { LOG_LEVEL: 'debug' });
    workers.push(first);
    await waitReady(first);
    phase('first worker ready');

    // Phase 1: the worker applies and checkpoints part of the stream.
    const results1 = await publishAll(d, load.slice(0, BEFORE_KILL));
    phase('phase 1 published');
    await first.waitForLog((l) => l.msg === 'checkpoint' && Number(l['watermark']) > 0);
    phase('first worker checkpointed');

    // Phase 2: SIGKILL in the middle of publishing; publishing goes on without a worker.
    let killed = false;
    const results2 = await publishAll(d, load.slice(BEFORE_KILL), {
      onPublished: (n) => {
        if (n >= KILL_AFTER && !killed) {
          killed = true;
          first.signal('SIGKILL');
        }
      },
    });
    phase('phase 2 published');
    expect(killed).toBe(true);
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
    phase('first worker killed');
    const checkpointsBeforeKill = logsWith(first, 'checkpoint').length;
    expect(checkpointsBeforeKill).toBeGreaterThan(0);

    const results = [...results1, ...results2];
    expect(new Set(results.map((r) => r.seq)).size).toBe(EVENTS);
    const expected = modelFromPublished(load, results).expected();
    const facts = perCustomer(load, results);
    const lastSeqOfPartition = new Map<number, number>();
    for (const r of results) {
      const p = partitionOf(r.customerId, d.partitions);
      lastSeqOfPartition.set(p, Math.max(lastSeqOfPartition.get(p) ?? 0, r.seq));
    }

    // Phase 3: a new worker takes over (once the dead worker's leases expire) and replays.
    const second = spawnWorker(d, 'crash-w2');
    workers.push(second);
    await waitCheckpointed(d, second.id, lastSeqOfPartition);
    phase('second worker checkpointed everything');

    // Every customer's stored state is the model's; nothing missing, nothing extra.
    const stored = await readStoredStates(d);
    expect(diffStates(expected, stored)).toEqual([]);
    // Nothing applied twice, nothing lost: the count of applied events and the last applied
    // sequence of every customer match the stream exactly.
    const counts = await storedEventCounts(d);
    let lost = 0;
    let doubled = 0;
    const wrongLastSeq: string[] = [];
    for (const [id, fact] of facts) {
      const applied = counts.get(id) ?? 0;
      lost += Math.max(0, fact.events - applied);
      doubled += Math.max(0, applied - fact.events);
      const got = stored.get(id)?.lastSeq;
      if (got !== fact.lastSeq) wrongLastSeq.push(`${id}: lastSeq ${got} != ${fact.lastSeq}`);
    }
    expect({ lost, doubled }).toEqual({ lost: 0, doubled: 0 });
    expect(wrongLastSeq).toEqual([]);

    // The new worker saw an unclean handoff on every partition (its owner died), started at the
    // watermark, and replayed exactly the entries after it.
    const starting = logsWith(second, 'partition starting');
    expect(starting).toHaveLength(d.partitions);
    expect(starting.every((l) => l['cleanHandoff'] === false)).toBe(true);
    expect(starting.every((l) => l['previousOwner'] === first.id)).toBe(true);
    const caughtUp = logsWith(second, 'partition caught up');
    expect(caughtUp).toHaveLength(d.partitions);
    let replayed = 0;
    for (const start of starting) {
      const p = Number(start['partition']);
      const watermark = Number(start['watermark']);
      const after = results.filter(
        (r) => partitionOf(r.customerId, d.partitions) === p && r.seq > watermark,
      ).length;
      expect(start['backlog'], `backlog of partition ${p}`).toBe(after);
      const done = caughtUp.find((l) => l['partition'] === p);
      expect(done?.['replayed'], `replayed in partition ${p}`).toBe(after);
      replayed += after;
    }
    expect(replayed).toBeGreaterThan(0);
    // The first worker had checkpointed some of it: the replay did not start from zero.
    expect(starting.some((l) => Number(l['watermark']) > 0)).toBe(true);

    expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const stopped = logsWith(second, 'partition stopped');
    expect(stopped).toHaveLength(d.partitions);
    expect(stopped.every((l) => l['state'] === 'stopped' && l['deadLettered'] === 0)).toBe(true);
  });
});
