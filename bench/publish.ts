// Publish throughput: raw pipelined `js.publish` versus the OrderPublisher SDK (validation,
// partitioning, msgID, bounded in-flight, retries), on a nats-server this script starts itself
// (never the shared one). Both are driven the same way — `BENCH_IN_FLIGHT` lanes, each awaiting
// its publish before the next — and both turn the same event objects into bytes inside the timed
// loop (raw: subject + JSON.stringify, the least any publisher must do). Rounds alternate raw/SDK
// on one stream (setup makes it refuse purges, so each round counts what it added); each round uses
// fresh event ids so nothing is deduplicated.
// Goal: SDK throughput >= 90% of raw.
//
//   npm run bench:publish            (BENCH_EVENTS=50000, BENCH_ROUNDS=3, BENCH_IN_FLIGHT=1024)

import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { loadConfig } from '../src/config/config.js';
import type { EventLimits } from '../src/contract/event.js';
import { resourceNames, type ResourceNames } from '../src/contract/names.js';
import { eventSubject } from '../src/contract/subjects.js';
import { setupDeployment } from '../src/nats/provision.js';
import { OrderPublisher } from '../src/publisher/order-publisher.js';
import { silentLogger } from '../test/support/fleet.js';
import { generateLoad, type ModelEvent } from '../test/support/model.js';
import { startNatsServer } from '../test/support/nats-server.js';
import { envInt, formatPercent, printTable, summarize, writeResults } from './support.js';

const EVENTS = envInt('BENCH_EVENTS', 50_000);
const ROUNDS = envInt('BENCH_ROUNDS', 3);
const IN_FLIGHT = envInt('BENCH_IN_FLIGHT', 1024);
const CUSTOMERS = envInt('BENCH_CUSTOMERS', 1_000);
const PARTITIONS = 32;
const GOAL = 0.9;

type Mode = 'raw' | 'sdk';

interface Run {
  readonly mode: Mode;
  readonly round: number;
  readonly events: number;
  readonly ms: number;
  readonly msgsPerSec: number;
  /** CPU time of this (client) process per event, in microseconds: less sensitive to load. */
  readonly clientCpuUsPerMsg: number;
}

interface Timing {
  readonly ms: number;
  readonly cpuMs: number;
}

/** Wall time and this process's CPU time (user + system) of `fn`. */
async function timed(fn: () => Promise<void>): Promise<Timing> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await fn();
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { ms, cpuMs: (used.user + used.system) / 1000 };
}

/** The same events, with ids made unique to one run so the duplicate window never hits. */
function withIds(base: readonly ModelEvent[], tag: string): ModelEvent[] {
  return base.map((e) => ({
    customerId: e.customerId,
    event: { ...e.event, id: `${tag}-${e.event.id}` },
  }));
}

const textEncoder = new TextEncoder();

/** Raw: `inFlight` lanes each encoding and publishing one event, awaiting it before the next. */
async function runRaw(
  js: JetStreamClient,
  names: ResourceNames,
  events: readonly ModelEvent[],
): Promise<Timing> {
  let next = 0;
  let duplicates = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < events.length; i = next++) {
      const e = events[i];
      if (e === undefined) throw new Error(`no event ${i}`);
      const data = textEncoder.encode(JSON.stringify(e.event));
      const ack = await js.publish(eventSubject(names, PARTITIONS, e.customerId), data, {
        msgID: e.event.id,
      });
      if (ack.duplicate) duplicates++;
    }
  };
  const timing = await timed(async () => {
    await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, events.length) }, lane));
  });
  if (duplicates > 0) throw new Error(`raw run saw ${duplicates} duplicates`);
  return timing;
}

/** SDK: the same lanes, each awaiting `publisher.publish` (the SDK bounds in-flight itself too). */
async function runSdk(
  nc: NatsConnection,
  names: ResourceNames,
  limits: EventLimits,
  events: readonly ModelEvent[],
): Promise<Timing> {
  const publisher = new OrderPublisher(nc, {
    names,
    partitions: PARTITIONS,
    limits,
    maxInFlight: IN_FLIGHT,
    maxAttempts: 30,
    timeoutMs: 5000,
    log: silentLogger,
  });
  let duplicates = 0;
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < events.length; i = next++) {
      const e = events[i];
      if (e === undefined) throw new Error(`no event ${i}`);
      const result = await publisher.publish(e.customerId, e.event);
      if (result.duplicate) duplicates++;
    }
  };
  const timing = await timed(async () => {
    await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, events.length) }, lane));
  });
  await publisher.close();
  if (duplicates > 0) throw new Error(`SDK run saw ${duplicates} duplicates`);
  return timing;
}

async function main(): Promise<void> {
  const server = await startNatsServer();
  try {
    const nc = await connect({ servers: server.url, noAsyncTraces: true });
    try {
      await bench(server.url, server.version, nc);
    } finally {
      await nc.close();
    }
  } finally {
    await server.cleanup();
  }
}

async function bench(url: string, natsServerVersion: string, nc: NatsConnection): Promise<void> {
  const config = loadConfig({ NATS_URL: url, PARTITIONS: String(PARTITIONS) });
  const names = resourceNames('');
  await setupDeployment(nc, names, config.setup, silentLogger);
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const limits = config.limits;
  const base = generateLoad(CUSTOMERS, EVENTS, 1, 'bench');
  const loadBefore = os.loadavg();

  const once = async (mode: Mode, round: number, events: readonly ModelEvent[]): Promise<Run> => {
    // ORDERS refuses purges (setup hardens it), so each round counts what it added.
    const before = (await jsm.streams.info(names.ordersStream)).state.messages;
    const { ms, cpuMs } =
      mode === 'raw' ? await runRaw(js, names, events) : await runSdk(nc, names, limits, events);
    const stored = (await jsm.streams.info(names.ordersStream)).state.messages - before;
    if (stored !== events.length) {
      throw new Error(`${mode} round ${round}: stored ${stored} of ${events.length} events`);
    }
    return {
      mode,
      round,
      events: events.length,
      ms,
      msgsPerSec: (events.length / ms) * 1000,
      clientCpuUsPerMsg: (cpuMs * 1000) / events.length,
    };
  };

  process.stdout.write(
    `publish bench: ${EVENTS} events x ${ROUNDS} rounds, ${IN_FLIGHT} in flight, ` +
      `${CUSTOMERS} customers, ${PARTITIONS} partitions, nats-server ${natsServerVersion}, node ${process.version}, ` +
      `load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')} on ${os.cpus().length} CPUs\n`,
  );
  // Warm-up (JIT, connection buffers, file store), not reported.
  const warm = base.slice(0, Math.min(EVENTS, 5_000));
  await once('raw', 0, withIds(warm, 'warm-raw'));
  await once('sdk', 0, withIds(warm, 'warm-sdk'));

  const runs: Run[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const mode of ['raw', 'sdk'] as const) {
      const run = await once(mode, round, withIds(base, `r${round}-${mode}`));
      runs.push(run);
      process.stdout.write(
        `  round ${round} ${mode.padEnd(3)} ${Math.round(run.msgsPerSec).toLocaleString('en-US')} msgs/s (${Math.round(run.ms)} ms, client CPU ${run.clientCpuUsPerMsg.toFixed(1)} µs/msg)\n`,
      );
    }
  }

  const stats = (mode: Mode) => {
    const mine = runs.filter((r) => r.mode === mode);
    const rates = mine.map((r) => r.msgsPerSec);
    const s = summarize(rates);
    const cpu = summarize(mine.map((r) => r.clientCpuUsPerMsg)).median;
    return { rates, best: s.max, median: s.median, cpu };
  };
  const raw = stats('raw');
  const sdk = stats('sdk');
  const ratio = { best: sdk.best / raw.best, median: sdk.median / raw.median };
  const meetsGoal = ratio.median >= GOAL;

  process.stdout.write('\n');
  printTable(
    [
      'mode',
      ...runs.filter((r) => r.mode === 'raw').map((r) => `round ${r.round}`),
      'best msgs/s',
      'median msgs/s',
      'client CPU µs/msg',
    ],
    [
      [
        'raw js.publish',
        ...raw.rates.map(Math.round),
        Math.round(raw.best),
        Math.round(raw.median),
        raw.cpu.toFixed(1),
      ],
      [
        'OrderPublisher',
        ...sdk.rates.map(Math.round),
        Math.round(sdk.best),
        Math.round(sdk.median),
        sdk.cpu.toFixed(1),
      ],
      [
        'SDK / raw',
        ...raw.rates.map((r, i) => formatPercent((sdk.rates[i] ?? 0) / r)),
        formatPercent(ratio.best),
        formatPercent(ratio.median),
        formatPercent(sdk.cpu / raw.cpu),
      ],
    ],
  );
  process.stdout.write(
    `\ngoal SDK/raw >= ${formatPercent(GOAL, 0)} (median): ${meetsGoal ? 'met' : 'NOT met'}\n`,
  );

  const file = await writeResults('publish', {
    bench: 'publish',
    date: new Date().toISOString(),
    environment: {
      node: process.version,
      natsServer: natsServerVersion,
      cpus: os.cpus().length,
      // Other processes on the machine skew throughput; keep the load next to the numbers.
      loadAverage: { before: loadBefore, after: os.loadavg() },
      platform: `${os.platform()} ${os.release()}`,
    },
    params: {
      events: EVENTS,
      rounds: ROUNDS,
      inFlight: IN_FLIGHT,
      customers: CUSTOMERS,
      partitions: PARTITIONS,
    },
    runs,
    raw: {
      bestMsgsPerSec: raw.best,
      medianMsgsPerSec: raw.median,
      medianClientCpuUsPerMsg: raw.cpu,
    },
    sdk: {
      bestMsgsPerSec: sdk.best,
      medianMsgsPerSec: sdk.median,
      medianClientCpuUsPerMsg: sdk.cpu,
    },
    ratio,
    goal: GOAL,
    meetsGoal,
  });
  process.stdout.write(`results: ${file}\n`);
}

await main();
