// The scale matrix: worker throughput and memory per resident customer at 1k … 1M customers and
// 8 / 32 / 128 partitions, each against two raw baselines measured on the same events in the
// same run, on a nats-server this script starts itself (never the shared one), with a real worker
// process (`node bin/order-fleet.js worker`):
//
//   raw            one plain pull consumer over the whole stream, consume() + ack per message;
//   raw+kv         the same, plus one pipelined KV put per distinct customer (a value the size of
//                  a snapshot) into a scratch bucket configured like the state bucket: the floor
//                  for any design that persists each customer separately;
//   worker         the worker end to end (decode, validate, apply, KV loads and checkpoints, the
//                  timer index; summary windows open but do not close during the run), from its
//                  first partition starting until every watermark covers its partition's end.
//
// Every customer ends with a 10-item order (events per customer = max(1, minEvents/customers),
// the items spread over them). Each cell runs BENCH rounds on the same published events, rotating
// which of the three goes first; state is reset between rounds. Memory: heap used after a full GC
// (a preload in the worker answers SIGUSR2) with every customer resident, minus the same for an
// idle worker with the same partitions, divided by the customers.
//
//   npm run bench:matrix -- [--customers 1k,10k,100k,1m] [--partitions 8,32,128] [--rounds 3]
//                           [--min-events 100000] [--cells 32:1m,8:1k] [--cpu-prof DIR]
//
// `--cells` picks exact (partitions:customers) pairs instead of the full product.

import { writeFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { eventSubject } from '../src/contract/subjects.js';
import { partitionOf } from '../src/contract/partition.js';
import { customerKey } from '../src/state/keys.js';
import { WatermarkStore } from '../src/state/watermark-store.js';
import {
  provision,
  spawnWorker,
  waitReady,
  type LogLine,
  type TestDeployment,
  type WorkerProcess,
} from '../test/support/fleet.js';
import { startNatsServer, type NatsServerHandle } from '../test/support/nats-server.js';
import {
  formatNumber,
  formatPercent,
  printTable,
  summarize,
  writeResults,
  benchTimerLayout,
} from './support.js';

const { values: flags } = parseArgs({
  options: {
    customers: { type: 'string', default: process.env['BENCH_CUSTOMERS'] ?? '1k,10k,100k,1m' },
    partitions: { type: 'string', default: process.env['BENCH_PARTITIONS'] ?? '8,32,128' },
    rounds: { type: 'string', default: process.env['BENCH_ROUNDS'] ?? '3' },
    'min-events': { type: 'string', default: process.env['BENCH_MIN_EVENTS'] ?? '100000' },
    cells: { type: 'string', default: process.env['BENCH_CELLS'] ?? '' },
    name: { type: 'string', default: 'matrix' },
    /** Write a CPU profile of every worker process into this directory (node --cpu-prof). */
    'cpu-prof': { type: 'string', default: '' },
  },
  allowPositionals: false,
});

/** `1k` → 1000, `1m` → 1000000, `250000` → 250000. */
function count(text: string): number {
  const match = /^(\d+)([km]?)$/iu.exec(text.trim());
  if (match === null) throw new Error(`not a count: ${JSON.stringify(text)}`);
  const unit = match[2]?.toLowerCase();
  const n = Number(match[1]) * (unit === 'k' ? 1000 : unit === 'm' ? 1_000_000 : 1);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`not a positive count: ${text}`);
  return n;
}
const list = (text: string): number[] => text.split(',').filter(Boolean).map(count);

const ROUNDS = count(flags.rounds);
const MIN_EVENTS = count(flags['min-events']);
const ITEMS_PER_CUSTOMER = 10;
const CELLS: { partitions: number; customers: number }[] =
  flags.cells !== ''
    ? flags.cells.split(',').map((cell) => {
        const [p = '', c = ''] = cell.split(':');
        return { partitions: count(p), customers: count(c) };
      })
    : list(flags.partitions).flatMap((partitions) =>
        list(flags.customers).map((customers) => ({ partitions, customers })),
      );
const WAIT_MS = 1_800_000; // bounds a run; not a measurement
const PUBLISH_IN_FLIGHT = 4096;
const KV_IN_FLIGHT = 1024;

const workers: WorkerProcess[] = [];
const probeScript = path.join(os.tmpdir(), `order-fleet-heap-probe-${process.pid}.mjs`);

/**
 * Preloaded into the worker: on SIGUSR2, a full GC, then process.memoryUsage() to a file; with
 * BENCH_CPU_PROF_DIR, a CPU profile of the whole process written at exit (NODE_OPTIONS may not
 * carry --cpu-prof, so the preload drives the inspector's profiler itself).
 */
function writeProbe(): void {
  writeFileSync(
    probeScript,
    [
      "import v8 from 'node:v8';",
      "import vm from 'node:vm';",
      "import inspector from 'node:inspector';",
      "import { writeFileSync } from 'node:fs';",
      "import path from 'node:path';",
      "v8.setFlagsFromString('--expose-gc');",
      "const gc = vm.runInNewContext('gc');",
      "process.on('SIGUSR2', () => {",
      '  gc(); gc();',
      '  const file = process.env.BENCH_HEAP_PROBE_FILE;',
      '  if (file) writeFileSync(file, JSON.stringify({ ...process.memoryUsage(), at: Date.now() }));',
      '});',
      'const dir = process.env.BENCH_CPU_PROF_DIR;',
      'if (dir) {',
      '  const session = new inspector.Session();',
      '  session.connect();',
      "  session.post('Profiler.enable');",
      "  session.post('Profiler.setSamplingInterval', { interval: 1000 });",
      "  session.post('Profiler.start');",
      "  process.on('exit', () => {",
      "    session.post('Profiler.stop', (err, result) => {",
      '      if (!err) writeFileSync(path.join(dir, `worker-${process.pid}.cpuprofile`), JSON.stringify(result.profile));',
      '    });',
      '  });',
      '}',
      '',
    ].join('\n'),
  );
}

interface HeapSample {
  readonly heapUsed: number;
  readonly rss: number;
}

async function probeHeap(w: WorkerProcess, file: string): Promise<HeapSample> {
  await rm(file, { force: true });
  w.signal('SIGUSR2');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      const sample = JSON.parse(await readFile(file, 'utf8')) as HeapSample;
      return { heapUsed: sample.heapUsed, rss: sample.rss };
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// load
// ---------------------------------------------------------------------------------------------

interface Load {
  readonly customers: number;
  readonly eventsPerCustomer: number;
  readonly events: number;
}

function loadFor(customers: number): Load {
  const eventsPerCustomer = Math.max(1, Math.ceil(MIN_EVENTS / customers));
  return { customers, eventsPerCustomer, events: customers * eventsPerCustomer };
}

/** Event `j` of customer `c`: 10 items in total, then removes and adds that keep 10. */
function eventOf(load: Load, c: number, j: number): Record<string, unknown> {
  const id = `m-${c}-${j}`;
  const k = load.eventsPerCustomer;
  if (k <= ITEMS_PER_CUSTOMER) {
    const from = Math.floor((j * ITEMS_PER_CUSTOMER) / k);
    const to = Math.floor(((j + 1) * ITEMS_PER_CUSTOMER) / k);
    const items = Array.from({ length: to - from }, (_, i) => c + from + i);
    return { id, type: 'items.added', items };
  }
  if (j < ITEMS_PER_CUSTOMER) return { id, type: 'items.added', items: [c + j] };
  const extra = j - ITEMS_PER_CUSTOMER;
  const last = j === k - 1 && (k - ITEMS_PER_CUSTOMER) % 2 === 1;
  if (last) return { id, type: 'order.created' };
  return extra % 2 === 0
    ? { id, type: 'items.removed', items: [c] }
    : { id, type: 'items.added', items: [c] };
}

/** Publishes the load round-robin over customers; returns the last sequence per partition. */
async function publishLoad(d: TestDeployment, load: Load): Promise<Map<number, number>> {
  const js = jetstream(d.nc);
  const encoder = new TextEncoder();
  const last = new Map<number, number>();
  const inFlight = new Set<Promise<void>>();
  let published = 0;
  const started = performance.now();
  for (let j = 0; j < load.eventsPerCustomer; j++) {
    for (let c = 0; c < load.customers; c++) {
      const customerId = `m${c}`;
      const event = eventOf(load, c, j);
      const p = partitionOf(customerId, d.partitions);
      const subject = eventSubject(d.names, d.partitions, customerId);
      const data = encoder.encode(JSON.stringify(event));
      const pending = js
        .publish(subject, data, { msgID: String(event['id']), timeout: 60_000 })
        .then((ack) => {
          if (ack.duplicate) throw new Error(`duplicate event ${String(event['id'])}`);
          last.set(p, Math.max(last.get(p) ?? 0, ack.seq));
          published++;
        })
        .finally(() => inFlight.delete(pending));
      inFlight.add(pending);
      if (inFlight.size >= PUBLISH_IN_FLIGHT) await Promise.race(inFlight);
    }
  }
  await Promise.all(inFlight);
  const ms = performance.now() - started;
  process.stdout.write(
    `  published ${formatNumber(published)} events in ${formatNumber(ms)} ms (${formatNumber((published / ms) * 1000)}/s)\n`,
  );
  return last;
}

// ---------------------------------------------------------------------------------------------
// the three contenders
// ---------------------------------------------------------------------------------------------

interface Run {
  /** True when the worker stopped making progress (the round is left out of the medians). */
  readonly stalled?: boolean;
  readonly ms: number;
  readonly eventsPerSec: number;
  /** 1-minute load average when the run ended. */
  readonly load: number;
  /** Worker runs only: partition runs that failed and were restarted (a fenced lease, a stall). */
  readonly restarts?: number;
}

function run(events: number, ms: number): Run {
  return { ms, eventsPerSec: (events / ms) * 1000, load: os.loadavg()[0] ?? 0 };
}

/** A snapshot-sized value for the raw+kv baseline (what a 10-item customer's snapshot weighs). */
const SNAPSHOT_LIKE = new TextEncoder().encode(
  JSON.stringify({
    v: 1,
    aggregator: 'orders',
    version: 2,
    customerId: 'm123456',
    lastSeq: 1234567,
    state: {
      items: Array.from({ length: ITEMS_PER_CUSTOMER }, (_, i) => 123456 + i),
      created: false,
      absentRemovals: 0,
      events: 1,
      window: {
        openedSeq: 1234567,
        openedAtMs: 1764633600000,
        lastChangeSeq: 1234567,
        lastChangeAtMs: 1764633600000,
        itemsAtOpen: [],
      },
      summaries: 0,
    },
  }),
);

async function rawConsume(
  d: TestDeployment,
  jsm: JetStreamManager,
  events: number,
  kvBucket: string | undefined,
): Promise<Run> {
  const name = `bench-raw-${kvBucket === undefined ? 'ack' : 'kv'}`;
  await jsm.consumers.add(d.names.ordersStream, {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
  });
  const consumer = await jetstream(d.nc).consumers.get(d.names.ordersStream, name);
  const kv = kvBucket === undefined ? undefined : await new Kvm(d.nc).open(kvBucket);
  const prefix = `${d.names.ordersPrefix}.`;
  const seen = new Set<string>();
  const puts = new Set<Promise<void>>();
  const started = performance.now();
  const messages = await consumer.consume({ max_messages: 1000 });
  let n = 0;
  for await (const m of messages) {
    m.ack();
    if (kv !== undefined) {
      // `<prefix>.<p>.<customerId>`: the customer is everything after the second dot.
      const rest = m.subject.slice(prefix.length);
      const dot = rest.indexOf('.');
      const customerId = rest.slice(dot + 1);
      if (!seen.has(customerId)) {
        seen.add(customerId);
        const put = kv
          .put(customerKey(Number(rest.slice(0, dot)), customerId), SNAPSHOT_LIKE)
          .then(() => undefined)
          .finally(() => puts.delete(put));
        puts.add(put);
        if (puts.size >= KV_IN_FLIGHT) await Promise.race(puts);
      }
    }
    if (++n >= events) break;
  }
  await Promise.all(puts);
  await d.nc.flush();
  const ms = performance.now() - started;
  await jsm.consumers.delete(d.names.ordersStream, name);
  return run(n, ms);
}

function at(line: LogLine): number {
  const t = line['time'];
  if (typeof t !== 'string') throw new Error(`log line without time: ${JSON.stringify(line)}`);
  return Date.parse(t);
}

/** No watermark moved for this long: the worker is stuck (reported, not waited for). */
const STALL_MS = 180_000;

class StallError extends Error {}

async function readWatermarks(d: TestDeployment, store: WatermarkStore): Promise<number[]> {
  return Promise.all(
    Array.from({ length: d.partitions }, async (_, p) => (await store.load(p)).watermark.seq),
  );
}

/**
 * Until every partition's watermark covers its last event; returns Date.now() then. Polls every
 * `everyMs`; throws a StallError when no watermark moved for STALL_MS.
 */
async function waitWatermarks(
  d: TestDeployment,
  last: ReadonlyMap<number, number>,
  w: WorkerProcess,
  everyMs: number,
  until: () => boolean = () => false,
): Promise<number | undefined> {
  const store = new WatermarkStore(await new Kvm(d.nc).open(d.names.metaBucket));
  let previous = '';
  let movedAt = Date.now();
  for (;;) {
    const seqs = await readWatermarks(d, store);
    const now = Date.now();
    if (seqs.every((seq, p) => seq >= (last.get(p) ?? 0))) return now;
    if (until()) return undefined;
    if (w.child.exitCode !== null || w.child.signalCode !== null) {
      throw new Error(`worker ${w.id} exited while waiting\n${w.output().slice(-4000)}`);
    }
    const key = seqs.join(',');
    if (key !== previous) {
      previous = key;
      movedAt = now;
    } else if (now - movedAt > STALL_MS) {
      const behind = seqs
        .map((seq, p) => ({ p, seq, last: last.get(p) ?? 0 }))
        .filter((x) => x.seq < x.last);
      throw new StallError(
        `no watermark moved for ${STALL_MS} ms; behind: ${JSON.stringify(behind)}`,
      );
    }
    await sleep(everyMs);
  }
}

/**
 * 'worker ready' (every partition caught up), while watching for a stall (slowly: the polling
 * must not compete with the work it waits for); an error as soon as the worker exits.
 */
async function ready(
  d: TestDeployment,
  last: ReadonlyMap<number, number>,
  w: WorkerProcess,
): Promise<void> {
  let isReady = false;
  const readyLine = waitReady(w, WAIT_MS).then(() => {
    isReady = true;
  });
  readyLine.catch(() => undefined); // the race below reports it
  const exited = w.exited.then(
    (exit) =>
      new Error(`worker ${w.id} exited (${JSON.stringify(exit)})\n${w.output().slice(-4000)}`),
  );
  // Only a worker with work to do can stall; an idle one (no events) just waits for ready.
  const watch =
    last.size === 0
      ? new Promise<undefined>(() => undefined)
      : waitWatermarks(d, last, w, 1000, () => isReady).then(() => undefined);
  watch.catch(() => undefined); // the race below reports it
  const first = await Promise.race([readyLine, exited, watch]);
  if (first instanceof Error) throw first;
}

function workerEnv(
  d: TestDeployment,
  customers: number,
  probeFile: string,
): Record<string, string> {
  return {
    ...d.env,
    LOG_LEVEL: 'info',
    // Windows open (and are indexed) as in production, but never close during a run.
    SUMMARY_QUIET_MS: '3600000',
    SUMMARY_MAX_MS: '3600000',
    CHECKPOINT_INTERVAL_MS: '1000',
    MAX_CUSTOMERS_IN_MEMORY: String(Math.max(250_000, 2 * customers)),
    BENCH_HEAP_PROBE_FILE: probeFile,
    NODE_OPTIONS: `--max-old-space-size=8192 --import=${probeScript}`,
    ...(flags['cpu-prof'] === '' ? {} : { BENCH_CPU_PROF_DIR: path.resolve(flags['cpu-prof']) }),
  };
}

async function workerRun(
  d: TestDeployment,
  last: ReadonlyMap<number, number>,
  events: number,
  customers: number,
  id: string,
): Promise<{ run: Run; heap: HeapSample }> {
  const probeFile = path.join(os.tmpdir(), `order-fleet-heap-${process.pid}-${id}.json`);
  const w = spawnWorker(d, id, workerEnv(d, customers, probeFile));
  workers.push(w);
  try {
    await ready(d, last, w);
    const doneAt = (await waitWatermarks(d, last, w, 50)) ?? Date.now();
    const firstStart = Math.min(
      ...w
        .logs()
        .filter((l) => l.msg === 'partition starting')
        .map(at),
    );
    // Each restart recreates a consumer, which is what made start-ups at scale spiral.
    const restarts = w.logs().filter((l) => l.msg === 'partition failed, restarting').length;
    const result = { ...run(events, doneAt - firstStart), restarts };
    const heap = await probeHeap(w, probeFile);
    return { run: result, heap };
  } finally {
    await w.stop('SIGTERM');
    workers.splice(workers.indexOf(w), 1);
    await rm(probeFile, { force: true });
    // BENCH_WORKER_LOG_DIR: each worker run's whole log, to see why a round was slow.
    const logDir = process.env['BENCH_WORKER_LOG_DIR'];
    if (logDir !== undefined && logDir !== '')
      await writeFile(
        path.join(logDir, `${id}-${Date.now()}.jsonl`),
        w
          .logs()
          .map((l) => JSON.stringify(l))
          .join('\n'),
      );
  }
}

async function idleHeap(d: TestDeployment): Promise<HeapSample> {
  const probeFile = path.join(os.tmpdir(), `order-fleet-heap-${process.pid}-idle.json`);
  const w = spawnWorker(d, `bench-idle-${d.partitions}`, workerEnv(d, 0, probeFile));
  workers.push(w);
  try {
    await ready(d, new Map(), w);
    await sleep(2000); // let start-up garbage and first checkpoints settle
    return await probeHeap(w, probeFile);
  } finally {
    await w.stop('SIGTERM');
    workers.splice(workers.indexOf(w), 1);
    await rm(probeFile, { force: true });
  }
}

/** Back to an empty state bucket and no watermarks (the events stay), between worker rounds. */
async function resetState(
  d: TestDeployment,
  jsm: JetStreamManager,
  scratch: string,
): Promise<void> {
  await jsm.streams.purge(`KV_${d.names.stateBucket}`);
  await jsm.streams.purge(`KV_${d.names.metaBucket}`, { filter: `$KV.${d.names.metaBucket}.wm.>` });
  await jsm.streams.purge(`KV_${scratch}`);
}

// ---------------------------------------------------------------------------------------------

type Contender = 'raw' | 'raw+kv' | 'worker';

interface CellRound {
  readonly round: number;
  readonly order: readonly Contender[];
  readonly raw: Run;
  readonly rawKv: Run;
  readonly worker: Run;
  readonly heapUsed: number;
}

export interface CellResult {
  readonly partitions: number;
  readonly customers: number;
  readonly events: number;
  readonly eventsPerCustomer: number;
  readonly rounds: readonly CellRound[];
  readonly idleHeapUsed: number;
  /** Medians over rounds. */
  readonly rawEventsPerSec: number;
  readonly rawKvEventsPerSec: number;
  readonly workerEventsPerSec: number;
  readonly ratioToRaw: number;
  readonly ratioToRawKv: number;
  readonly bytesPerCustomer: number;
  readonly loadAverage: number;
  readonly stalledRounds: number;
  /** Partition restarts summed over the rounds. */
  readonly restarts: number;
}

async function cell(
  server: NatsServerHandle,
  partitions: number,
  customers: number,
  idle: Map<number, number>,
): Promise<CellResult> {
  const load = loadFor(customers);
  process.stdout.write(
    `\n${partitions} partitions, ${formatNumber(customers)} customers, ${formatNumber(load.events)} events ` +
      `(${load.eventsPerCustomer}/customer), load average ${os.loadavg()[0]?.toFixed(1) ?? '?'}\n`,
  );
  const d = await provision(server.url, {
    timerLayout: benchTimerLayout(),
    partitions,
    isolate: true,
    leaseTtlMs: 8000,
  });
  try {
    const jsm = await jetstreamManager(d.nc);
    const scratch = `${d.names.stateBucket}-bench-floor`;
    const state = await jsm.streams.info(`KV_${d.names.stateBucket}`);
    await new Kvm(d.nc).create(scratch, {
      history: 1,
      replicas: state.config.num_replicas,
      storage: state.config.storage,
    });
    if (!idle.has(partitions)) idle.set(partitions, (await idleHeap(d)).heapUsed);
    const idleHeapUsed = idle.get(partitions) ?? 0;
    const last = await publishLoad(d, load);
    const rounds: CellRound[] = [];
    const contenders: Contender[] = ['raw', 'raw+kv', 'worker'];
    for (let round = 1; round <= ROUNDS; round++) {
      const shift = (round - 1) % contenders.length;
      const order = [...contenders.slice(shift), ...contenders.slice(0, shift)];
      const runs = new Map<Contender, Run>();
      let heapUsed = 0;
      for (const contender of order) {
        await resetState(d, jsm, scratch);
        if (contender === 'raw') runs.set('raw', await rawConsume(d, jsm, load.events, undefined));
        else if (contender === 'raw+kv')
          runs.set('raw+kv', await rawConsume(d, jsm, load.events, scratch));
        else {
          try {
            const w = await workerRun(d, last, load.events, customers, `bench-m${round}`);
            runs.set('worker', w.run);
            heapUsed = w.heap.heapUsed;
          } catch (err) {
            if (!(err instanceof StallError)) throw err;
            // Reported as a failed round (and left out of the medians), not waited for.
            process.stdout.write(`  round ${round}: worker STALLED: ${err.message}\n`);
            runs.set('worker', {
              ms: Number.NaN,
              eventsPerSec: Number.NaN,
              load: os.loadavg()[0] ?? 0,
              stalled: true,
            });
            heapUsed = Number.NaN;
          }
        }
      }
      const r: CellRound = {
        round,
        order,
        raw: runs.get('raw') ?? run(0, 1),
        rawKv: runs.get('raw+kv') ?? run(0, 1),
        worker: runs.get('worker') ?? run(0, 1),
        heapUsed,
      };
      rounds.push(r);
      process.stdout.write(
        `  round ${round} (${order.join(' → ')}): raw ${formatNumber(r.raw.eventsPerSec)}/s, ` +
          `raw+kv ${formatNumber(r.rawKv.eventsPerSec)}/s, worker ${formatNumber(r.worker.eventsPerSec)}/s ` +
          `(${formatPercent(r.worker.eventsPerSec / r.raw.eventsPerSec)} / ${formatPercent(r.worker.eventsPerSec / r.rawKv.eventsPerSec)}), ` +
          `heap ${formatNumber((heapUsed - idleHeapUsed) / customers)} B/customer, ` +
          `${r.worker.restarts ?? 0} restarts, load ${r.worker.load.toFixed(1)}\n`,
      );
    }
    const median = (f: (r: CellRound) => number): number => {
      const values = rounds.map(f).filter(Number.isFinite);
      return values.length === 0 ? Number.NaN : summarize(values).median;
    };
    const rawRate = median((r) => r.raw.eventsPerSec);
    const rawKvRate = median((r) => r.rawKv.eventsPerSec);
    const workerRate = median((r) => r.worker.eventsPerSec);
    return {
      partitions,
      customers,
      events: load.events,
      eventsPerCustomer: load.eventsPerCustomer,
      rounds,
      idleHeapUsed,
      rawEventsPerSec: rawRate,
      rawKvEventsPerSec: rawKvRate,
      workerEventsPerSec: workerRate,
      // Ratios per round, then the median: both sides of a ratio ran next to each other.
      ratioToRaw: median((r) => r.worker.eventsPerSec / r.raw.eventsPerSec),
      ratioToRawKv: median((r) => r.worker.eventsPerSec / r.rawKv.eventsPerSec),
      bytesPerCustomer: median((r) => (r.heapUsed - idleHeapUsed) / customers),
      loadAverage: median((r) => r.worker.load),
      stalledRounds: rounds.filter((r) => r.worker.stalled === true).length,
      restarts: rounds.reduce((sum, r) => sum + (r.worker.restarts ?? 0), 0),
    };
  } finally {
    // Each cell has a namespace of its own: drop its streams so the next cell starts small.
    try {
      const jsm = await jetstreamManager(d.nc);
      const ns = d.namespace.toLowerCase();
      for await (const name of jsm.streams.names()) {
        if (name.toLowerCase().includes(ns)) await jsm.streams.delete(name);
      }
    } finally {
      await d.close();
    }
  }
}

async function main(): Promise<void> {
  writeProbe();
  const server = await startNatsServer();
  try {
    process.stdout.write(
      `matrix bench: cells ${CELLS.map((c) => `${c.partitions}:${formatNumber(c.customers)}`).join(', ')}; ` +
        `${ROUNDS} rounds; ≥ ${formatNumber(MIN_EVENTS)} events per cell; nats-server ${server.version}; ` +
        `${os.cpus().length} CPUs; load average ${os.loadavg()[0]?.toFixed(1) ?? '?'}\n`,
    );
    const idle = new Map<number, number>();
    const cells: CellResult[] = [];
    for (const c of CELLS) cells.push(await cell(server, c.partitions, c.customers, idle));
    process.stdout.write('\n');
    printTable(
      [
        'partitions',
        'customers',
        'events',
        'raw/s',
        'raw+kv/s',
        'worker/s',
        'of raw',
        'of raw+kv',
        'B/customer',
        'load',
        'restarts',
      ],
      cells.map((c) => [
        c.partitions,
        c.customers,
        c.events,
        Math.round(c.rawEventsPerSec),
        Math.round(c.rawKvEventsPerSec),
        Math.round(c.workerEventsPerSec),
        formatPercent(c.ratioToRaw),
        formatPercent(c.ratioToRawKv),
        Math.round(c.bytesPerCustomer),
        c.loadAverage.toFixed(1),
        c.restarts,
      ]),
    );
    const file = await writeResults(flags.name, {
      at: new Date().toISOString(),
      environment: {
        rounds: ROUNDS,
        minEvents: MIN_EVENTS,
        itemsPerCustomer: ITEMS_PER_CUSTOMER,
        natsServer: server.version,
        node: process.version,
        cpus: os.cpus().length,
        loadAverage: os.loadavg(),
      },
      cells,
    });
    process.stdout.write(`\nresults: ${file}\n`);
  } finally {
    for (const w of workers.splice(0)) await w.stop('SIGKILL');
    await server.cleanup();
    await rm(probeScript, { force: true });
  }
}

await main();
// A wait that lost a race (e.g. waitReady's timeout timer) must not keep the process alive.
process.exit(process.exitCode ?? 0);
