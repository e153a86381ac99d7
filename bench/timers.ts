// Benchmark of durable summary timers, on its own nats-server with real worker processes.
//
// (a) Timer delay at scale: 100,000 customers each make one change, so 100,000 windows are open
//     at once with a quiet period Q. For every summary: deadline = last change time + Q (the last
//     change is the only one, so its time is the summary's openedAt, a JetStream timestamp);
//     reported are deadline → timer entry (closedAt), timer entry → summary stored, and
//     deadline → summary stored (the NOTIFICATIONS message timestamp), as p50 / p99 / max.
// (b) What timers cost the event path: N events pre-published, then one worker applies them; the
//     end-to-end rate (first partition starting → every partition's watermark past its last
//     event) with timers firing (Q short), with timers idle (Q one day), and a raw JetStream
//     consume+ack baseline over the same events in the same run.
//
// Usage: npm run bench:timers   (env BENCH_WINDOWS, BENCH_EVENTS, BENCH_CUSTOMERS to resize)

import { mkdir, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { OrderPublisher, type OrderEventInput } from '../src/publisher/order-publisher.js';
import { watermarkKey } from '../src/state/keys.js';
import {
  provision,
  silentLogger,
  spawnWorker,
  type TestDeployment,
  type WorkerProcess,
} from '../test/support/fleet.js';
import { rng } from '../test/support/model.js';
import { startNatsServer, type NatsServerHandle } from '../test/support/nats-server.js';
import { benchTimerLayout } from './support.js';

const WINDOWS = intEnv('BENCH_WINDOWS', 100_000);
const QUIET_MS = intEnv('BENCH_QUIET_MS', 2000);
const EVENTS = intEnv('BENCH_EVENTS', 60_000);
const CUSTOMERS = intEnv('BENCH_CUSTOMERS', 6000);
const PARTITIONS = 8;

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}

function log(message: string): void {
  process.stderr.write(`[bench:timers] ${message}\n`);
}

// --- small helpers ---------------------------------------------------------------------------

interface Percentiles {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly min: number;
}

function percentiles(values: readonly number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99), max: at(1), min: sorted[0] ?? NaN };
}

async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

function publisher(dep: TestDeployment): OrderPublisher {
  return new OrderPublisher(dep.nc, {
    names: dep.names,
    partitions: dep.partitions,
    limits: { maxPayloadBytes: 16 * 1024, maxItemsPerEvent: 1000 },
    maxInFlight: 1024,
    maxAttempts: 60,
    timeoutMs: 10_000,
    log: silentLogger,
  });
}

/** Publishes (customerId, event) pairs pipelined; returns the last stored sequence per partition. */
async function publishAll(
  dep: TestDeployment,
  events: readonly (readonly [string, OrderEventInput])[],
): Promise<Map<number, number>> {
  const pub = publisher(dep);
  const last = new Map<number, number>();
  let done = 0;
  const chunk = 5000;
  for (let i = 0; i < events.length; i += chunk) {
    const acks = await Promise.all(
      events.slice(i, i + chunk).map(([customerId, event]) => pub.publish(customerId, event)),
    );
    for (const a of acks) {
      const p = Number(a.subject.slice(dep.names.ordersPrefix.length + 1).split('.')[0]);
      last.set(p, Math.max(last.get(p) ?? 0, a.seq));
    }
    done += acks.length;
    if (done % 20_000 === 0 || done === events.length) log(`published ${done}/${events.length}`);
  }
  await pub.close();
  return last;
}

async function streamCount(nc: NatsConnection, stream: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(stream)).state.messages;
}

const SummaryJson = z.object({
  summaryId: z.string(),
  firstSeq: z.number(),
  lastSeq: z.number(),
  openedAt: z.string(),
  closedAt: z.string(),
});

// --- (a) 100k open windows -------------------------------------------------------------------

interface DelayResult {
  readonly windows: number;
  readonly quietMs: number;
  readonly summaries: number;
  readonly publishSeconds: number;
  readonly deadlineToTimerEntryMs: Percentiles;
  readonly timerEntryToSummaryMs: Percentiles;
  readonly deadlineToSummaryMs: Percentiles;
  readonly lastSummaryAfterLastDeadlineMs: number;
  /** Windows closed per second, from the first deadline to the last summary stored. */
  readonly closingPerSecond: number;
}

async function benchDelay(server: NatsServerHandle): Promise<DelayResult> {
  const dep = await provision(server.url, {
    timerLayout: benchTimerLayout(),
    isolate: true,
    partitions: PARTITIONS,
    env: {
      LOG_LEVEL: 'warn',
      SUMMARY_QUIET_MS: String(QUIET_MS),
      SUMMARY_MAX_MS: String(3_600_000),
      TIMER_TICK_MS: '100',
    },
  });
  const worker = spawnWorker(dep, 'bench-delay');
  try {
    // LOG_LEVEL=warn keeps 100k 'summary published' lines out of the measurement, and with
    // them 'worker ready': the partitions run once their consumers exist.
    await waitFor('partition consumers', () => consumersReady(dep), 60_000);
    const events = Array.from({ length: WINDOWS }, (_, i): [string, OrderEventInput] => [
      `w${i}`,
      { type: 'items.added', items: [i % 97] },
    ]);
    log(`(a) publishing ${WINDOWS} changes, one per customer, quiet ${QUIET_MS} ms`);
    const began = Date.now();
    await publishAll(dep, events);
    const publishSeconds = (Date.now() - began) / 1000;
    log(`(a) waiting for ${WINDOWS} summaries`);
    let lastReport = 0;
    await waitFor(
      'all summaries',
      async () => {
        const n = await streamCount(dep.nc, dep.names.notificationsStream);
        if (n - lastReport >= 10_000) {
          lastReport = n;
          log(`(a) summaries stored: ${n}`);
        }
        return n >= WINDOWS ? n : undefined;
      },
      20 * 60_000,
      500,
    );
    log('(a) reading the NOTIFICATIONS stream');
    const toEntry: number[] = [];
    const toSummary: number[] = [];
    const total: number[] = [];
    let firstDeadline = Number.POSITIVE_INFINITY;
    let lastDeadline = 0;
    let lastStored = 0;
    const js = jetstream(dep.nc);
    const consumer = await js.consumers.get(dep.names.notificationsStream);
    const messages = await consumer.consume({ max_messages: 5000 });
    let seen = 0;
    for await (const m of messages) {
      const s = SummaryJson.parse(m.json());
      // One change per window: its time is openedAt, so the deadline is openedAt + Q.
      if (s.firstSeq !== s.lastSeq) throw new Error(`${s.summaryId}: more than one change`);
      const deadline = Date.parse(s.openedAt) + QUIET_MS;
      const entryAt = Date.parse(s.closedAt);
      const storedAt = Math.floor(m.info.timestampNanos / 1e6);
      toEntry.push(entryAt - deadline);
      toSummary.push(storedAt - entryAt);
      total.push(storedAt - deadline);
      firstDeadline = Math.min(firstDeadline, deadline);
      lastDeadline = Math.max(lastDeadline, deadline);
      lastStored = Math.max(lastStored, storedAt);
      seen++;
      if (m.info.pending === 0) break;
    }
    await messages.close();
    return {
      windows: WINDOWS,
      quietMs: QUIET_MS,
      summaries: seen,
      publishSeconds,
      deadlineToTimerEntryMs: percentiles(toEntry),
      timerEntryToSummaryMs: percentiles(toSummary),
      deadlineToSummaryMs: percentiles(total),
      lastSummaryAfterLastDeadlineMs: lastStored - lastDeadline,
      closingPerSecond: seen / (Math.max(1, lastStored - firstDeadline) / 1000),
    };
  } finally {
    await worker.stop('SIGTERM');
    await dep.close();
  }
}

async function consumersReady(dep: TestDeployment): Promise<true | undefined> {
  const jsm = await jetstreamManager(dep.nc);
  let n = 0;
  for await (const c of jsm.consumers.list(dep.names.ordersStream)) {
    if (c.name.startsWith('partition-')) n++;
  }
  return n === dep.partitions ? true : undefined;
}

// --- (b) throughput with and without timers ----------------------------------------------------

interface RateResult {
  readonly scenario: string;
  readonly events: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  /** For worker runs: seconds until every window was closed (summaries published), if any. */
  readonly summariesDoneSeconds?: number;
  readonly summaries?: number;
}

/** A deterministic mix of adds and removes over `customers` customers. */
function workload(events: number, customers: number): [string, OrderEventInput][] {
  const random = rng(12345);
  return Array.from({ length: events }, () => {
    const customerId = `c${Math.floor(random() * customers)}`;
    const item = Math.floor(random() * 20);
    const event: OrderEventInput =
      random() < 0.75
        ? { type: 'items.added', items: [item] }
        : { type: 'items.removed', items: [item] };
    return [customerId, event];
  });
}

const WatermarkJson = z.object({ seq: z.number() });

async function watermarksReached(
  dep: TestDeployment,
  targets: ReadonlyMap<number, number>,
): Promise<boolean> {
  const kv = await new Kvm(dep.nc).open(dep.names.metaBucket);
  for (const [p, seq] of targets) {
    const entry = await kv.get(watermarkKey(p));
    if (entry === null || entry.operation !== 'PUT') return false;
    if (WatermarkJson.parse(entry.json()).seq < seq) return false;
  }
  return true;
}

async function benchWorkerRate(
  server: NatsServerHandle,
  scenario: string,
  summaryEnv: Record<string, string>,
  events: readonly (readonly [string, OrderEventInput])[],
): Promise<RateResult> {
  const dep = await provision(server.url, {
    timerLayout: benchTimerLayout(),
    isolate: true,
    partitions: PARTITIONS,
    env: { LOG_LEVEL: 'info', TIMER_TICK_MS: '100', ...summaryEnv },
  });
  let worker: WorkerProcess | undefined;
  try {
    log(`(b) ${scenario}: publishing ${events.length} events`);
    const targets = await publishAll(dep, events);
    worker = spawnWorker(dep, `bench-${scenario.replace(/[^a-z0-9]+/giu, '-')}`);
    const w = worker;
    const started = await w.waitForLog((l) => l.msg === 'partition starting', 60_000);
    const t0 = Date.parse(String(started['time']));
    await waitFor(
      'watermarks',
      async () => ((await watermarksReached(dep, targets)) ? true : undefined),
      10 * 60_000,
      50,
    );
    const seconds = (Date.now() - t0) / 1000;
    let summariesDoneSeconds: number | undefined;
    let summaries: number | undefined;
    if (
      summaryEnv['SUMMARY_QUIET_MS'] !== undefined &&
      Number(summaryEnv['SUMMARY_QUIET_MS']) < 60_000
    ) {
      // Every customer's window closes once its quiet period is over.
      const customers = new Set(events.map(([c]) => c)).size;
      // Events are applied and checkpointed (with the timer index): once the index holds no open
      // timer, every window has closed and its summary is stored.
      await waitFor(
        'windows closed',
        async () => ((await noOpenTimers(dep)) ? true : undefined),
        10 * 60_000,
        200,
      );
      summaries = await streamCount(dep.nc, dep.names.notificationsStream);
      summariesDoneSeconds = (Date.now() - t0) / 1000;
      log(`(b) ${scenario}: ${summaries} summaries for ${customers} customers`);
    }
    return {
      scenario,
      events: events.length,
      seconds,
      eventsPerSecond: events.length / seconds,
      ...(summariesDoneSeconds === undefined ? {} : { summariesDoneSeconds }),
      ...(summaries === undefined ? {} : { summaries }),
    };
  } finally {
    await worker?.stop('SIGTERM');
    await dep.close();
  }
}

/** True when the timer index holds no open timer (every window closed and checkpointed). */
async function noOpenTimers(dep: TestDeployment): Promise<boolean> {
  const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
  for await (const key of await kv.keys('t.>')) {
    const entry = await kv.get(key);
    if (entry !== null && entry.operation === 'PUT') return false;
  }
  return true;
}

async function benchRaw(
  server: NatsServerHandle,
  events: readonly (readonly [string, OrderEventInput])[],
): Promise<RateResult> {
  const dep = await provision(server.url, {
    timerLayout: benchTimerLayout(),
    isolate: true,
    partitions: PARTITIONS,
  });
  try {
    log(`(b) raw baseline: publishing ${events.length} events`);
    await publishAll(dep, events);
    const jsm = await jetstreamManager(dep.nc);
    await jsm.consumers.add(dep.names.ordersStream, {
      durable_name: 'bench-raw',
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      max_ack_pending: 20_000,
    });
    const consumer = await jetstream(dep.nc).consumers.get(dep.names.ordersStream, 'bench-raw');
    const t0 = Date.now();
    const messages = await consumer.consume({ max_messages: 1000 });
    let n = 0;
    for await (const m of messages) {
      // Decode like a worker would, then ack.
      JSON.parse(m.string());
      m.ack();
      if (++n >= events.length) break;
    }
    await messages.close();
    await dep.nc.flush();
    const seconds = (Date.now() - t0) / 1000;
    return {
      scenario: 'raw JetStream consume+ack',
      events: n,
      seconds,
      eventsPerSecond: n / seconds,
    };
  } finally {
    await dep.close();
  }
}

// --- main --------------------------------------------------------------------------------------

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  const line = (r: readonly string[]): string =>
    `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const [head, ...body] = rows;
  if (head === undefined) return '';
  return [
    line(head),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...body.map(line),
  ].join('\n');
}

/**
 * The floor a window's close is compared with: pipelined `js.publish` of as many small messages
 * (1,024 in flight, each with a msg id, as a timer entry or a summary has) into a scratch
 * stream on the same server, in the same run.
 */
async function benchRawPublish(server: NatsServerHandle, messages: number): Promise<number> {
  const dep = await provision(server.url, {
    timerLayout: benchTimerLayout(),
    isolate: true,
    partitions: PARTITIONS,
  });
  const stream = 'BENCH_RAW_PUBLISH';
  try {
    const jsm = await jetstreamManager(dep.nc);
    await jsm.streams.add({ name: stream, subjects: ['bench.rawpub.>'] });
    const js = jetstream(dep.nc);
    const data = new TextEncoder().encode(JSON.stringify({ type: 'summary.timer', window: 1 }));
    let next = 0;
    const began = performance.now();
    await Promise.all(
      Array.from({ length: 1024 }, async () => {
        for (let i = next++; i < messages; i = next++) {
          await js.publish(`bench.rawpub.${i % 1000}`, data, { msgID: `raw-${i}` });
        }
      }),
    );
    const perSecond = messages / ((performance.now() - began) / 1000);
    await jsm.streams.delete(stream);
    log(`(a) raw pipelined publish: ${Math.round(perSecond)} messages/s`);
    return perSecond;
  } finally {
    await dep.close();
  }
}

async function main(): Promise<void> {
  const server = await startNatsServer();
  try {
    const delay = await benchDelay(server);
    const rawPublishPerSecond = await benchRawPublish(server, WINDOWS);
    const events = workload(EVENTS, CUSTOMERS);
    const raw = await benchRaw(server, events);
    const idle = await benchWorkerRate(
      server,
      'worker, timers idle (Q = 1 day)',
      { SUMMARY_QUIET_MS: String(86_400_000), SUMMARY_MAX_MS: String(86_400_000) },
      events,
    );
    const firing = await benchWorkerRate(
      server,
      `worker, timers firing (Q = ${QUIET_MS} ms)`,
      { SUMMARY_QUIET_MS: String(QUIET_MS), SUMMARY_MAX_MS: String(60_000) },
      events,
    );

    const out: string[] = [];
    out.push(
      `(a) ${delay.windows} open windows, one change each, Q = ${delay.quietMs} ms, 1 worker, ${PARTITIONS} partitions`,
    );
    out.push(
      `    published in ${fmt(delay.publishSeconds, 1)} s; summaries: ${delay.summaries}; last summary ${fmt(delay.lastSummaryAfterLastDeadlineMs)} ms after the last deadline`,
    );
    out.push(
      `    closing rate ${fmt(delay.closingPerSecond)} windows/s = ${fmt((100 * delay.closingPerSecond) / rawPublishPerSecond, 1)} % of raw pipelined publish ${fmt(rawPublishPerSecond)}/s (goal ≥ 50 %)`,
    );
    out.push('');
    out.push(
      table([
        ['delay (ms)', 'p50', 'p99', 'max'],
        ...(
          [
            ['deadline → timer entry in the log', delay.deadlineToTimerEntryMs],
            ['timer entry → summary stored', delay.timerEntryToSummaryMs],
            ['deadline → summary stored', delay.deadlineToSummaryMs],
          ] as const
        ).map(([label, p]) => [label, fmt(p.p50), fmt(p.p99), fmt(p.max)]),
      ]),
    );
    out.push('');
    out.push(`(b) ${EVENTS} events over ${CUSTOMERS} customers, pre-published, 1 worker`);
    out.push('');
    out.push(
      table([
        ['scenario', 'events', 'seconds', 'events/s', 'vs raw', 'all summaries out (s)'],
        ...[raw, idle, firing].map((r) => [
          r.scenario,
          String(r.events),
          fmt(r.seconds, 2),
          fmt(r.eventsPerSecond),
          fmt(r.eventsPerSecond / raw.eventsPerSecond, 2),
          r.summariesDoneSeconds === undefined
            ? '-'
            : `${fmt(r.summariesDoneSeconds, 2)} (${r.summaries ?? 0} summaries)`,
        ]),
      ]),
    );
    const text = out.join('\n');
    process.stdout.write(`${text}\n`);
    await mkdir(new URL('./results/', import.meta.url), { recursive: true });
    await writeFile(
      new URL('./results/timers.json', import.meta.url),
      `${JSON.stringify(
        {
          at: new Date().toISOString(),
          machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
          loadAverage: (await import('node:os')).loadavg(),
          natsServer: server.version,
          delay,
          rawPublishPerSecond,
          throughput: { raw, timersIdle: idle, timersFiring: firing },
        },
        null,
        2,
      )}\n`,
    );
    log('wrote bench/results/timers.json');
  } finally {
    await server.cleanup();
  }
}

await main();
