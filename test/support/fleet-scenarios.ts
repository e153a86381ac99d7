// Helpers shared by the fleet acceptance tests (fleet-crash, fleet-rolling, fleet-scale,
// fleet-zombie): background load, `status --json`, graceful stops, log fields, convergence waits.

import type { TimerLayout } from '../../src/nats/deployment.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager, type StoredMsg } from '@nats-io/jetstream';
import { afterEach, expect, onTestFailed } from 'vitest';
import type { FleetStatus } from '../../src/admin/status.js';
import { assignPartitions } from '../../src/fleet/assignment.js';
import type { PublishResult } from '../../src/publisher/order-publisher.js';
import {
  eventually,
  provision,
  readStoredStates,
  runCli,
  type LogLine,
  type TestDeployment,
  type WorkerProcess,
} from './fleet.js';
import {
  diffStates,
  generateLoad,
  lostCustomers,
  modelFromPublished,
  publishAll,
  type ModelEvent,
} from './model.js';
import { startNatsServer } from './nats-server.js';

/** Cleanups registered by a test; run in reverse order after each test, even when it fails. */
export type Teardown = (() => Promise<void>)[];

/** A teardown list for the calling test file, drained after every test. */
export function useTeardown(): Teardown {
  const teardown: Teardown = [];
  afterEach(async () => {
    for (const task of teardown.splice(0).reverse()) await task();
  });
  return teardown;
}

export interface FleetScenario {
  readonly dep: TestDeployment;
  /** Workers the test spawns go here: they are traced on failure and SIGKILLed at teardown. */
  readonly workers: WorkerProcess[];
  /** Records a named step, printed with every worker's last log lines if the test fails. */
  readonly step: (name: string) => void;
}

/** Its own nats-server, a provisioned deployment, and the bookkeeping every fleet test needs. */
export async function startFleetScenario(
  teardown: Teardown,
  opts: {
    readonly partitions: number;
    readonly leaseTtlMs: number;
    readonly timerLayout?: TimerLayout;
  },
): Promise<FleetScenario> {
  const server = await startNatsServer();
  teardown.push(() => server.cleanup());
  const dep = await provision(server.url, opts);
  teardown.push(() => dep.close());
  const workers: WorkerProcess[] = [];
  const step = traceOnFailure(workers);
  teardown.push(async () => {
    // Anything still running after a failure is killed (SIGKILL also ends a SIGSTOPped process);
    // graceful paths were asserted already.
    for (const w of workers) await w.stop('SIGKILL');
  });
  return { dep, workers, step };
}

/** A {@link BackgroundLoad} that is finished at teardown. */
export function startLoad(
  teardown: Teardown,
  dep: TestDeployment,
  opts: ConstructorParameters<typeof BackgroundLoad>[1],
): BackgroundLoad {
  const load = new BackgroundLoad(dep, opts);
  teardown.push(() => load.finish());
  return load;
}

/**
 * Publishes in paced chunks in the background until told to finish and at least `minEvents` are
 * stored, so every phase of the scenario runs under load. Chunks are published one after the
 * other, so the model can be folded from the stored sequences.
 */
export class BackgroundLoad {
  readonly events: ModelEvent[] = [];
  readonly results: PublishResult[] = [];
  #finishing = false;
  #failure: Error | undefined;
  readonly #done: Promise<void>;

  constructor(
    private readonly dep: TestDeployment,
    private readonly opts: {
      readonly customers: number;
      readonly minEvents: number;
      readonly chunk: number;
      readonly pauseMs: number;
      readonly prefix: string;
      /** Publish only for these customers (default: `<prefix>-<n>` for n < customers). */
      readonly customerIds?: readonly string[];
      /** Publishes in flight per chunk (default 64: paced load; more for a burst). */
      readonly maxInFlight?: number;
    },
  ) {
    this.#done = this.#run().then(
      () => undefined,
      (err: unknown) => {
        // Recorded and rethrown by finish(), so the test fails with the publisher's error.
        this.#failure = err instanceof Error ? err : new Error(String(err));
      },
    );
  }

  get published(): number {
    return this.results.length;
  }

  #remap(generated: string): string {
    const ids = this.opts.customerIds;
    if (ids === undefined) return generated;
    const id = ids[Number(generated.slice(this.opts.prefix.length + 1))];
    if (id === undefined) throw new Error(`no customer for ${generated}`);
    return id;
  }

  async #run(): Promise<void> {
    for (let seed = 1; !(this.#finishing && this.published >= this.opts.minEvents); seed++) {
      const chunk = generateLoad(this.opts.customers, this.opts.chunk, seed, this.opts.prefix).map(
        (e) => ({ ...e, customerId: this.#remap(e.customerId) }),
      );
      const results = await publishAll(this.dep, chunk, {
        maxInFlight: this.opts.maxInFlight ?? 64,
      });
      this.events.push(...chunk);
      this.results.push(...results);
      await sleep(this.opts.pauseMs);
    }
  }

  /** Stops after the minimum is reached; rethrows a publishing failure. */
  async finish(): Promise<void> {
    this.#finishing = true;
    await this.#done;
    if (this.#failure !== undefined) throw this.#failure;
  }
}

export async function fleetStatusJson(dep: TestDeployment): Promise<FleetStatus> {
  const result = await runCli(dep, ['status', '--json']);
  if (result.code !== 0) throw new Error(`status exited ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as FleetStatus;
}

/** Asserts a worker exited 0; on failure the message carries the worker's last logs. */
export function expectExitZero(
  worker: WorkerProcess,
  exit: { code: number | null; signal: NodeJS.Signals | null },
): void {
  const tail = worker
    .logs()
    .filter((l) => typeof l['level'] === 'number' && l['level'] >= 30)
    .slice(-15)
    .map((l) => JSON.stringify(l))
    .join('\n');
  expect(exit, `${worker.id} exit; last log lines:\n${tail}`).toEqual({ code: 0, signal: null });
}

/** SIGTERM (once) and wait for the exit, which must be graceful (code 0). */
export async function stopGracefully(worker: WorkerProcess): Promise<void> {
  expectExitZero(worker, await worker.stop('SIGTERM'));
}

export function field(line: LogLine, key: string): unknown {
  return line[key];
}

export function numberField(line: LogLine, key: string): number {
  const value = field(line, key);
  if (typeof value !== 'number')
    throw new Error(`log line has no number ${key}: ${JSON.stringify(line)}`);
  return value;
}

export function numbersField(line: LogLine, key: string): number[] {
  const value = field(line, key);
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'number'))
    throw new Error(`log line has no number[] ${key}: ${JSON.stringify(line)}`);
  return value;
}

export function linesOf(worker: WorkerProcess, msg: string): LogLine[] {
  return worker.logs().filter((l) => l.msg === msg);
}

/**
 * Waits until membership is exactly `owners` and every partition is held by the owner the
 * rendezvous assignment gives it: one owner each, no handoff under way (lag may still be > 0).
 */
export async function settledOwners(
  dep: TestDeployment,
  owners: readonly string[],
): Promise<FleetStatus> {
  const assignment = assignPartitions(owners, dep.partitions);
  return eventually(
    async () => {
      const s = await fleetStatusJson(dep);
      const ok =
        s.table.every((t) => t.owner === assignment.get(t.partition)) &&
        JSON.stringify(s.members.map((m) => m.id)) === JSON.stringify([...owners].sort());
      return ok ? s : undefined;
    },
    45_000,
    250,
  );
}

/**
 * Stops workers one by one, each gracefully, waiting for the rest to own everything before the
 * next SIGTERM (a worker stopped while it is still starting a runner exits 1: see the regression test
 * in fleet-rolling.test.ts).
 */
export async function stopAllGracefully(
  dep: TestDeployment,
  workers: readonly WorkerProcess[],
): Promise<void> {
  for (const [i, w] of workers.entries()) {
    await stopGracefully(w);
    const rest = workers.slice(i + 1).map((r) => r.id);
    if (rest.length > 0) await settledOwners(dep, rest);
  }
}

/**
 * Returns `step(name)`. If the test fails or times out, prints the steps it reached and each
 * worker's last log lines (info and above), so a failure on a loaded machine can be diagnosed.
 */
export function traceOnFailure(workers: readonly WorkerProcess[]): (name: string) => void {
  const began = performance.now();
  const steps: string[] = [];
  onTestFailed(() => {
    const out = [`steps: ${steps.join(' → ')}`];
    // TEST_TRACE_DIR: every worker's whole log as well, one file each (for a failure that only
    // shows under load, with TEST_WORKER_LOG_LEVEL=debug).
    const dir = process.env['TEST_TRACE_DIR'];
    if (dir !== undefined) {
      mkdirSync(dir, { recursive: true });
      for (const w of workers)
        writeFileSync(
          path.join(dir, `${w.id}-${process.pid}.log`),
          w
            .logs()
            .map((l) => JSON.stringify(l))
            .join('\n'),
        );
    }
    for (const w of workers) {
      out.push(`--- ${w.id}`);
      out.push(
        ...w
          .logs()
          .filter((l) => typeof l['level'] === 'number' && l['level'] >= 30)
          .slice(-25)
          .map((l) => JSON.stringify(l)),
      );
    }
    console.error(out.join('\n'));
  });
  return (name) => {
    steps.push(`${name} @${Math.round(performance.now() - began)}ms`);
  };
}

/**
 * Waits until the fleet has converged on `owners`: membership is exactly `owners`, every partition
 * is held by the owner the rendezvous assignment gives it (so exactly one owner each, and no
 * handoff still under way), and every partition is fully delivered and checkpointed (lag 0).
 */
export async function settled(
  dep: TestDeployment,
  owners: readonly string[],
  /**
   * Per partition, the sequence of its last published entry: each watermark must reach it too.
   * No lag is the consumers' word; this is the outcome, and a consumer that stands past entries
   * it never delivered (or a runner between restarts) shows no lag while behind it.
   */
  lastSeqs?: ReadonlyMap<number, number>,
): Promise<FleetStatus> {
  const assignment = assignPartitions(owners, dep.partitions);
  return eventually(
    async () => {
      const s = await fleetStatusJson(dep);
      const ok =
        s.table.length === dep.partitions &&
        s.table.every(
          (t) =>
            t.owner === assignment.get(t.partition) &&
            t.lag === 0 &&
            t.watermark >= (lastSeqs?.get(t.partition) ?? 0),
        ) &&
        JSON.stringify(s.members.map((m) => m.id)) === JSON.stringify([...owners].sort());
      return ok ? s : undefined;
    },
    45_000,
    250,
  );
}

/** The worker process has not exited (nor been killed). */
export function alive(w: WorkerProcess): boolean {
  return w.child.exitCode === null && w.child.signalCode === null;
}

/** Every stored customer equals the model folded from what was published, and none lost an event. */
export async function expectModel(
  dep: TestDeployment,
  events: readonly ModelEvent[],
  results: readonly PublishResult[],
): Promise<void> {
  const stored = await readStoredStates(dep);
  expect(diffStates(modelFromPublished(events, results).expected(), stored)).toEqual([]);
  expect(lostCustomers(events, results, stored)).toEqual([]);
}

/** Every message of the dead-letter stream, in order. */
export async function readDeadLetters(d: TestDeployment): Promise<StoredMsg[]> {
  const jsm = await jetstreamManager(d.nc);
  const info = await jsm.streams.info(d.names.deadLetterStream);
  const out: StoredMsg[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && seq > 0; seq++) {
    const msg = await jsm.streams.getMessage(d.names.deadLetterStream, { seq });
    if (msg !== null) out.push(msg);
  }
  return out;
}
