// Worker throughput, handoff and replay, on a nats-server this script starts itself (never the
// shared one), with real worker processes (`node bin/order-fleet.js worker`) and real signals.
//
//   (a) raw baseline: N events pre-published to ORDERS, read by one plain pull consumer with
//       consume() + ack per message;
//   (b) the worker end to end on the same events: from its first partition starting until every
//       partition's watermark (KV) covers the partition's last event; goal >= 80% of raw.
//       (a) and (b) run in BENCH_ROUNDS rounds on fresh deployments, alternating which goes
//       first; the medians are compared. Watermarks are only polled once the worker has logged
//       that it caught up, so the polling does not compete with the work it measures;
//   (c) SIGTERM handoff with 100,000 customers in memory (one event each): time until the process
//       exits and until a second worker reports ready; once with regular checkpoints, once with
//       every customer still dirty at SIGTERM (the worst case for the final checkpoint);
//   (d) replay after a crash: a worker that never checkpointed is SIGKILLed after applying
//       everything; a second worker replays the whole backlog from the watermark.
//
//   npm run bench:worker   (BENCH_EVENTS=100000, BENCH_CUSTOMERS=1000, BENCH_PARTITIONS=32,
//                           BENCH_HANDOFF_CUSTOMERS=100000, BENCH_ROUNDS=3,
//                           BENCH_LEASE_TTL_MS=8000)

import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { partitionOf } from '../src/contract/partition.js';
import { leaseKey } from '../src/fleet/leases.js';
import type { PublishResult } from '../src/publisher/order-publisher.js';
import { WatermarkStore } from '../src/state/watermark-store.js';
import {
  provision,
  spawnWorker,
  waitReady,
  type LogLine,
  type TestDeployment,
  type WorkerProcess,
} from '../test/support/fleet.js';
import { generateLoad, publishAll, type ModelEvent } from '../test/support/model.js';
import { startNatsServer, type NatsServerHandle } from '../test/support/nats-server.js';
import {
  envInt,
  formatNumber,
  formatPercent,
  printTable,
  summarize,
  writeResults,
  type Cell,
  benchTimerLayout,
} from './support.js';

const EVENTS = envInt('BENCH_EVENTS', 100_000);
const CUSTOMERS = envInt('BENCH_CUSTOMERS', 1_000);
const PARTITIONS = envInt('BENCH_PARTITIONS', 32);
const HANDOFF_CUSTOMERS = envInt('BENCH_HANDOFF_CUSTOMERS', 100_000);
const ROUNDS = envInt('BENCH_ROUNDS', 3);
const GOAL = 0.8;
const LEASE_TTL_MS = envInt('BENCH_LEASE_TTL_MS', 8000);
/** Generous: these waits bound a benchmark run, they are not measurements. */
const WAIT_MS = 600_000;
/**
 * Summary windows open as usual (and are indexed at checkpoints) but never close during a run:
 * their timers fire on a wall-clock deadline after publishing, which would make the figures
 * depend on how long publishing took. `bench:timers` measures that part.
 */
const NO_SUMMARY_TIMERS = { SUMMARY_QUIET_MS: '3600000', SUMMARY_MAX_MS: '3600000' };
/** Worker settings that keep everything in memory and never checkpoint on their own. */
const NEVER_CHECKPOINT = {
  CHECKPOINT_EVERY_EVENTS: '1000000000',
  CHECKPOINT_INTERVAL_MS: '3600000',
  CHECKPOINT_IDLE_MS: '0',
};

const workers: WorkerProcess[] = [];
const deployments: TestDeployment[] = [];

function worker(d: TestDeployment, id: string, env: Record<string, string> = {}): WorkerProcess {
  const w = spawnWorker(d, id, env);
  workers.push(w);
  return w;
}

async function stop(
  w: WorkerProcess,
  signal: NodeJS.Signals,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const exit = await w.stop(signal);
  workers.splice(workers.indexOf(w), 1);
  return exit;
}

async function deployment(server: NatsServerHandle): Promise<TestDeployment> {
  // A namespace of its own per scenario: nothing one scenario leaves behind touches another.
  const d = await provision(server.url, {
    timerLayout: benchTimerLayout(),
    partitions: PARTITIONS,
    isolate: true,
    // The production default (LEASE_TTL_MS), not the tests' 3 s: a lease is only trusted for 60%
    // of its TTL, and a worker busy with 100,000 customers can miss a 1.8 s window.
    leaseTtlMs: LEASE_TTL_MS,
    env: NO_SUMMARY_TIMERS,
  });
  deployments.push(d);
  return d;
}

async function prepublish(
  d: TestDeployment,
  events: readonly ModelEvent[],
): Promise<PublishResult[]> {
  const results = await publishAll(d, events, { maxInFlight: 1024 });
  if (new Set(results.map((r) => r.seq)).size !== events.length) {
    throw new Error('some events were stored as duplicates');
  }
  return results;
}

/** Log line timestamps (pino isoTime) in epoch ms. */
function at(line: LogLine): number {
  const t = line['time'];
  if (typeof t !== 'string') throw new Error(`log line without time: ${JSON.stringify(line)}`);
  return Date.parse(t);
}

function logsWith(w: WorkerProcess, msg: string): LogLine[] {
  return w.logs().filter((l) => l.msg === msg);
}

function sumOf(lines: readonly LogLine[], field: string): number {
  return lines.reduce((n, l) => n + Number(l[field]), 0);
}

function lastSeqByPartition(results: readonly PublishResult[]): Map<number, number> {
  const last = new Map<number, number>();
  for (const r of results) {
    const p = partitionOf(r.customerId, PARTITIONS);
    last.set(p, Math.max(last.get(p) ?? 0, r.seq));
  }
  return last;
}

/** Polls the watermarks in KV until each partition's covers its last event; returns Date.now(). */
async function waitWatermarks(
  d: TestDeployment,
  last: ReadonlyMap<number, number>,
  w: WorkerProcess,
): Promise<number> {
  const watermarks = new WatermarkStore(await new Kvm(d.nc).open(d.names.metaBucket));
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const seqs = await Promise.all(
      Array.from({ length: PARTITIONS }, async (_, p) => (await watermarks.load(p)).watermark.seq),
    );
    const now = Date.now();
    if (seqs.every((seq, p) => seq >= (last.get(p) ?? 0))) return now;
    if (w.child.exitCode !== null || w.child.signalCode !== null) {
      throw new Error(`worker ${w.id} exited while waiting\n${w.output().slice(-4000)}`);
    }
    if (now > deadline) throw new Error(`watermarks did not reach the end in ${WAIT_MS} ms`);
    await sleep(20);
  }
}

/**
 * Waits until these keys of a bucket with a TTL are gone (a dead worker's leases or membership
 * expired). Key by key: `kv.keys()` on a bucket whose entries expire meanwhile may never return.
 */
async function waitExpired(kv: KV, keys: readonly string[]): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const entries = await Promise.all(keys.map((key) => kv.get(key)));
    if (entries.every((e) => e === null || e.operation !== 'PUT')) return;
    if (Date.now() > deadline) throw new Error(`${keys.join(', ')} did not expire`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// (a) raw JetStream consume + ack
// ---------------------------------------------------------------------------------------------

interface RawRun {
  readonly events: number;
  readonly ms: number;
  readonly eventsPerSec: number;
}

async function rawBaseline(d: TestDeployment, n: number): Promise<RawRun> {
  const jsm = await jetstreamManager(d.nc);
  const name = 'bench-raw';
  await jsm.consumers.add(d.names.ordersStream, {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
  });
  const consumer = await jetstream(d.nc).consumers.get(d.names.ordersStream, name);
  const started = performance.now();
  const messages = await consumer.consume({ max_messages: 1000 });
  let count = 0;
  for await (const m of messages) {
    m.ack();
    if (++count >= n) break;
  }
  await d.nc.flush();
  const ms = performance.now() - started;
  await jsm.consumers.delete(d.names.ordersStream, name);
  return { events: count, ms, eventsPerSec: (count / ms) * 1000 };
}

// ---------------------------------------------------------------------------------------------
// (b) the worker, end to end
// ---------------------------------------------------------------------------------------------

interface WorkerRun {
  readonly events: number;
  /** Process spawn → every watermark covers its partition's last event. */
  readonly spawnToDoneMs: number;
  /** First 'partition starting' → every watermark at the end: the measured time. */
  readonly ms: number;
  /** First 'partition starting' → last 'partition caught up' (before the last checkpoint). */
  readonly catchUpMs: number;
  readonly eventsPerSec: number;
}

async function workerEndToEnd(
  d: TestDeployment,
  results: readonly PublishResult[],
  id: string,
): Promise<WorkerRun> {
  const spawnedAt = Date.now();
  const w = worker(d, id);
  await waitReady(w, WAIT_MS);
  const doneAt = await waitWatermarks(d, lastSeqByPartition(results), w);
  const firstStart = Math.min(...logsWith(w, 'partition starting').map(at));
  const lastCaughtUp = Math.max(...logsWith(w, 'partition caught up').map(at));
  await stop(w, 'SIGTERM');
  const ms = doneAt - firstStart;
  return {
    events: results.length,
    spawnToDoneMs: doneAt - spawnedAt,
    ms,
    catchUpMs: lastCaughtUp - firstStart,
    eventsPerSec: (results.length / ms) * 1000,
  };
}

interface Round {
  readonly round: number;
  readonly first: 'raw' | 'worker';
  readonly raw: RawRun;
  readonly worker: WorkerRun;
  readonly ratio: number;
}

async function throughputRound(
  server: NatsServerHandle,
  load: readonly ModelEvent[],
  round: number,
): Promise<Round> {
  const d = await deployment(server);
  const results = await prepublish(d, load);
  const first = round % 2 === 1 ? 'raw' : 'worker';
  let raw: RawRun;
  let run: WorkerRun;
  if (first === 'raw') {
    raw = await rawBaseline(d, load.length);
    run = await workerEndToEnd(d, results, `bench-e2e-${round}`);
  } else {
    run = await workerEndToEnd(d, results, `bench-e2e-${round}`);
    raw = await rawBaseline(d, load.length);
  }
  return { round, first, raw, worker: run, ratio: run.eventsPerSec / raw.eventsPerSec };
}

// ---------------------------------------------------------------------------------------------
// (c) SIGTERM handoff with many customers in memory
// ---------------------------------------------------------------------------------------------

interface HandoffResult {
  readonly variant: string;
  readonly customers: number;
  /** Customers the final checkpoints wrote (sum over partitions, from the debug log). */
  readonly writtenAtSigterm: number;
  readonly exitCode: number | null;
  /** SIGTERM → process exit. */
  readonly exitMs: number;
  /** Second worker: spawn → 'worker ready'. */
  readonly nextReadyMs: number;
  /** SIGTERM → second worker ready (no owner answers in between). */
  readonly gapMs: number;
  readonly replayedByNext: number;
  readonly cleanHandoffs: number;
  /** Second worker: longest start → caught up of one partition (fencing, timer index, consumer). */
  readonly slowestPartitionStartMs: number;
  /** First worker: partitions whose final checkpoint failed (the next owner replays them). */
  readonly failedFinalCheckpoints: number;
  readonly leasesLost: number;
}

async function handoff(
  server: NatsServerHandle,
  variant: string,
  env: Record<string, string>,
): Promise<HandoffResult> {
  const d = await deployment(server);
  const events: ModelEvent[] = Array.from({ length: HANDOFF_CUSTOMERS }, (_, i) => ({
    customerId: `h-${i}`,
    event: { id: `h-${i}`, type: 'items.added', items: [i % 20] },
  }));
  const results = await prepublish(d, events);
  const first = worker(d, `bench-handoff-${variant}-1`, { LOG_LEVEL: 'debug', ...env });
  // Ready = every partition applied everything that was in the log when it started.
  await waitReady(first, WAIT_MS);
  if (env['CHECKPOINT_INTERVAL_MS'] === undefined) {
    await waitWatermarks(d, lastSeqByPartition(results), first);
  }
  const checkpointsBefore = logsWith(first, 'checkpoint').length;

  const sigtermAt = performance.now();
  const exit = await stop(first, 'SIGTERM');
  const exitedAt = performance.now();
  const finals = logsWith(first, 'checkpoint')
    .slice(checkpointsBefore)
    .filter((l) => l['final'] === true);

  const spawnedAt = performance.now();
  const second = worker(d, `bench-handoff-${variant}-2`);
  await waitReady(second, WAIT_MS);
  const readyAt = performance.now();
  const result: HandoffResult = {
    variant,
    customers: HANDOFF_CUSTOMERS,
    writtenAtSigterm: sumOf(finals, 'customers'),
    exitCode: exit.code,
    exitMs: exitedAt - sigtermAt,
    nextReadyMs: readyAt - spawnedAt,
    gapMs: readyAt - sigtermAt,
    replayedByNext: sumOf(logsWith(second, 'partition caught up'), 'replayed'),
    cleanHandoffs: logsWith(second, 'partition starting').filter((l) => l['cleanHandoff'] === true)
      .length,
    failedFinalCheckpoints: logsWith(first, 'partition stopped').filter(
      (l) => l['state'] === 'failed',
    ).length,
    leasesLost: logsWith(first, 'lease lost').length,
    slowestPartitionStartMs: Math.max(
      ...logsWith(second, 'partition caught up').map((l) => Number(l['durationMs'])),
    ),
  };
  await stop(second, 'SIGTERM');
  return result;
}

// ---------------------------------------------------------------------------------------------
// (d) replay after a crash
// ---------------------------------------------------------------------------------------------

interface ReplayResult {
  readonly events: number;
  readonly replayed: number;
  /** First 'partition starting' → last 'partition caught up'. */
  readonly catchUpMs: number;
  /** First 'partition starting' → every watermark at the end. */
  readonly checkpointedMs: number;
  readonly eventsPerSec: number;
  readonly cleanHandoffs: number;
}

async function replay(
  server: NatsServerHandle,
  load: readonly ModelEvent[],
): Promise<ReplayResult> {
  const d = await deployment(server);
  const results = await prepublish(d, load);
  const first = worker(d, 'bench-replay-1', NEVER_CHECKPOINT);
  await waitReady(first, WAIT_MS);
  await stop(first, 'SIGKILL');
  // Let the dead worker's leases and membership expire, so every partition starts at once.
  const kvm = new Kvm(d.nc);
  await waitExpired(
    await kvm.open(d.names.leaseBucket),
    Array.from({ length: PARTITIONS }, (_, p) => leaseKey(p)),
  );
  await waitExpired(await kvm.open(d.names.memberBucket), [`m.${first.id}`]);

  const second = worker(d, 'bench-replay-2');
  await waitReady(second, WAIT_MS);
  const doneAt = await waitWatermarks(d, lastSeqByPartition(results), second);
  const starting = logsWith(second, 'partition starting');
  const caughtUp = logsWith(second, 'partition caught up');
  await stop(second, 'SIGTERM');
  const firstStart = Math.min(...starting.map(at));
  const catchUpMs = Math.max(...caughtUp.map(at)) - firstStart;
  const replayed = sumOf(caughtUp, 'replayed');
  return {
    events: results.length,
    replayed,
    catchUpMs,
    checkpointedMs: doneAt - firstStart,
    eventsPerSec: (replayed / catchUpMs) * 1000,
    cleanHandoffs: starting.filter((l) => l['cleanHandoff'] === true).length,
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const server = await startNatsServer();
  try {
    const load = generateLoad(CUSTOMERS, EVENTS, 1, 'bench');
    process.stdout.write(
      `worker bench: ${formatNumber(EVENTS)} events over ${formatNumber(CUSTOMERS)} customers, ` +
        `${PARTITIONS} partitions, ${ROUNDS} rounds; nats-server ${server.version}; ` +
        `${os.cpus().length} CPUs; load average ${os.loadavg()[0]?.toFixed(1) ?? '?'}\n`,
    );

    const rounds: Round[] = [];
    for (let r = 1; r <= ROUNDS; r++) rounds.push(await throughputRound(server, load, r));
    const rawRate = summarize(rounds.map((r) => r.raw.eventsPerSec)).median;
    const workerRate = summarize(rounds.map((r) => r.worker.eventsPerSec)).median;
    const ratio = workerRate / rawRate;

    const handoffs = [
      await handoff(server, 'checkpointed', {}),
      await handoff(server, 'all-dirty', NEVER_CHECKPOINT),
    ];
    const replayed = await replay(server, load);

    const rows: Cell[][] = [
      ...rounds.flatMap((r): Cell[][] => [
        [
          `(a) raw consume+ack, round ${r.round}`,
          r.raw.events,
          Math.round(r.raw.ms),
          Math.round(r.raw.eventsPerSec),
          `1 pull consumer, ack each${r.first === 'raw' ? ' (ran first)' : ''}`,
        ],
        [
          `(b) worker end to end, round ${r.round}`,
          r.worker.events,
          Math.round(r.worker.ms),
          Math.round(r.worker.eventsPerSec),
          `${formatPercent(r.ratio)} of raw; caught up in ${formatNumber(r.worker.catchUpMs)} ms; ` +
            `spawn→done ${formatNumber(r.worker.spawnToDoneMs)} ms${r.first === 'worker' ? ' (ran first)' : ''}`,
        ],
      ]),
      [
        '(a)/(b) medians',
        EVENTS,
        '',
        Math.round(workerRate),
        `worker ${formatPercent(ratio)} of raw ${formatNumber(rawRate)}/s (goal ${formatPercent(GOAL, 0)}: ${ratio >= GOAL ? 'met' : 'NOT met'})`,
      ],
      ...handoffs.map((h): Cell[] => [
        `(c) SIGTERM handoff, ${h.variant}`,
        h.customers,
        Math.round(h.exitMs),
        '',
        `exit ${String(h.exitCode)} after final checkpoints writing ${formatNumber(h.writtenAtSigterm)} customers ` +
          `(${h.failedFinalCheckpoints} partitions failed, ${h.leasesLost} leases lost); ` +
          `next ready ${formatNumber(h.nextReadyMs)} ms after spawn (${formatNumber(h.gapMs)} ms after SIGTERM), ` +
          `slowest partition start ${formatNumber(h.slowestPartitionStartMs)} ms, ` +
          `replayed ${h.replayedByNext}, clean ${h.cleanHandoffs}/${PARTITIONS}`,
      ]),
      [
        '(d) replay after SIGKILL',
        replayed.replayed,
        Math.round(replayed.catchUpMs),
        Math.round(replayed.eventsPerSec),
        `all watermarks at the end after ${formatNumber(replayed.checkpointedMs)} ms; ` +
          `clean ${replayed.cleanHandoffs}/${PARTITIONS}`,
      ],
    ];
    process.stdout.write('\n');
    printTable(['scenario', 'events', 'ms', 'events/s', 'notes'], rows);
    const file = await writeResults('worker', {
      at: new Date().toISOString(),
      environment: {
        events: EVENTS,
        customers: CUSTOMERS,
        partitions: PARTITIONS,
        rounds: ROUNDS,
        handoffCustomers: HANDOFF_CUSTOMERS,
        leaseTtlMs: LEASE_TTL_MS,
        natsServer: server.version,
        node: process.version,
        cpus: os.cpus().length,
        loadAverage: os.loadavg(),
        workerEnv: { ...deployments[0]?.env, NATS_URL: undefined },
      },
      throughput: {
        goal: GOAL,
        rawEventsPerSec: rawRate,
        workerEventsPerSec: workerRate,
        ratio,
        met: ratio >= GOAL,
        rounds,
      },
      handoff: handoffs,
      replay: replayed,
    });
    process.stdout.write(`\nresults: ${file}\n`);
  } finally {
    for (const w of workers.splice(0)) await w.stop('SIGKILL');
    for (const d of deployments.splice(0)) await d.close();
    await server.cleanup();
  }
}

await main();
