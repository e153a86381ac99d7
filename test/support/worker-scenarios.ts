// Helpers shared by the single-worker integration tests (worker, worker-crash, passivation,
// dead-letter): summary timers off, worker log lookups, failure output, and per-partition progress
// read through `fleetStatus`, the same reading as `order-fleet status`.

import { performance } from 'node:perf_hooks';
import { Kvm } from '@nats-io/kv';
import { afterEach, type TestContext } from 'vitest';
import { fleetStatus } from '../../src/admin/status.js';
import { partitionOf } from '../../src/contract/partition.js';
import {
  eventually,
  provision,
  silentLogger,
  spawnWorker,
  type LogLine,
  type TestDeployment,
  type WorkerProcess,
} from './fleet.js';
import { startNatsServer, type NatsServerHandle } from './nats-server.js';

/**
 * Summary windows stay open for the whole test: their timers would append entries to the log
 * (and publish summaries) on a wall-clock deadline, which is not what these tests are about.
 */
export const NO_SUMMARY_TIMERS = { SUMMARY_QUIET_MS: '3600000', SUMMARY_MAX_MS: '3600000' };

/**
 * One server and deployment per test, and workers that are SIGKILLed after it (their output is
 * printed when the test fails). Call at the top level of a test file: it registers the afterEach.
 */
export function workerFleet(workerEnv: Readonly<Record<string, string>> = {}): {
  deployment: () => Promise<TestDeployment>;
  worker: (d: TestDeployment, id: string, env?: Record<string, string>) => WorkerProcess;
} {
  let server: NatsServerHandle | undefined;
  let dep: TestDeployment | undefined;
  const workers: WorkerProcess[] = [];
  afterEach(async (ctx: TestContext) => {
    printWorkerOutputOnFailure(ctx, workers);
    // SIGKILL whatever is still running: the test is over, only its outcome mattered.
    for (const w of workers.splice(0)) await w.stop('SIGKILL');
    await dep?.close();
    dep = undefined;
    await server?.cleanup();
    server = undefined;
  });
  return {
    deployment: async () => {
      server = await startNatsServer();
      dep = await provision(server.url, { isolate: false, env: NO_SUMMARY_TIMERS });
      return dep;
    },
    worker: (d, id, env = {}) => {
      const w = spawnWorker(d, id, { ...workerEnv, ...env });
      workers.push(w);
      return w;
    },
  };
}

export function logsWith(w: WorkerProcess, msg: string): LogLine[] {
  return w.logs().filter((l) => l.msg === msg);
}

/** In an afterEach: when the test failed, prints the tail of every worker's output. */
export function printWorkerOutputOnFailure(
  ctx: TestContext,
  workers: readonly WorkerProcess[],
): void {
  if (ctx.task.result?.state === 'fail' && ctx.task.fails !== true) {
    for (const w of workers)
      console.error(`--- worker ${w.id} output (tail)\n${w.output().slice(-6000)}`);
  }
}

export interface PartitionProgress {
  readonly partition: number;
  readonly owner: string | null;
  readonly watermark: number;
  /** null: the consumer could not be read (see PartitionStatus.consumerError). */
  readonly pending: number | null;
  readonly unacked: number | null;
}

/** What `order-fleet status` shows per partition: lease holder, watermark, pending, unacked. */
export async function partitionProgress(d: TestDeployment): Promise<PartitionProgress[]> {
  const status = await fleetStatus(d.nc, d.names, silentLogger);
  return status.table.map((t) => ({
    partition: t.partition,
    owner: t.owner,
    watermark: t.watermark,
    pending: t.pending,
    unacked: t.unacked,
  }));
}

/** Per partition, the sequence of the last published event of its customers. */
export function lastSeqOfPartitions(
  d: TestDeployment,
  results: readonly { readonly customerId: string; readonly seq: number }[],
): Map<number, number> {
  const last = new Map<number, number>();
  for (const r of results) {
    const p = partitionOf(r.customerId, d.partitions);
    last.set(p, Math.max(last.get(p) ?? 0, r.seq));
  }
  return last;
}

/**
 * Polls the partitions until every one is owned by `owner`, checkpointed up to its last event
 * (`last`, 0 when absent), with nothing pending or unacknowledged. On timeout the error shows the
 * last table seen.
 */
export async function waitCheckpointed(
  d: TestDeployment,
  owner: string,
  last: ReadonlyMap<number, number>,
): Promise<void> {
  let seen: PartitionProgress[] | undefined;
  let slowestMs = 0;
  const done = await eventually(async () => {
    const began = performance.now();
    seen = await partitionProgress(d);
    slowestMs = Math.max(slowestMs, performance.now() - began);
    return seen.every(
      (t) =>
        t.owner === owner &&
        t.watermark === (last.get(t.partition) ?? 0) &&
        t.pending === 0 &&
        t.unacked === 0,
    )
      ? true
      : undefined;
  }, 45_000).then(
    () => true,
    (err: unknown) => err,
  );
  if (done !== true) {
    throw new Error(
      `partitions not checkpointed by ${owner} (slowest status ${Math.round(slowestMs)} ms): ` +
        JSON.stringify(seen),
      { cause: done },
    );
  }
}

/** The aggregator counts the events it applied; read that count for every stored customer. */
export async function storedEventCounts(d: TestDeployment): Promise<Map<string, number>> {
  const kv = await new Kvm(d.nc).open(d.names.stateBucket);
  const keys: string[] = [];
  for await (const key of await kv.keys('c.>')) keys.push(key);
  const out = new Map<string, number>();
  await Promise.all(
    keys.map(async (key) => {
      const entry = await kv.get(key);
      if (entry === null || entry.operation !== 'PUT') return;
      const value = entry.json<{ customerId: string; state: { events: number } }>();
      out.set(value.customerId, value.state.events);
    }),
  );
  return out;
}
