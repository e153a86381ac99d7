import { setTimeout as sleep } from 'node:timers/promises';
import {
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Config } from '../config/config.js';
import type { ResourceNames } from '../contract/names.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import type { Aggregator } from '../orders/aggregator.js';
import type { EntryDecoder } from '../orders/order-log.js';
import { CustomerStore, type CustomerSnapshot } from '../state/customer-store.js';
import { WatermarkStore } from '../state/watermark-store.js';
import { DeadLetterSink } from './dead-letter.js';
import {
  PartitionRunner,
  type CatchUpReport,
  type OutputSink,
  type PartitionReport,
  type RunnerStats,
  type TimerHost,
} from './partition-runner.js';
import type { ContentsAnswer } from './queries.js';
import type { Lease, LeaseManager } from './leases.js';

/**
 * What a worker runs: the aggregator, how to decode a log entry, how to answer a question, and
 * optionally where outputs go and how durable timers are kept.
 */
export interface Domain<S, E, O = never> {
  readonly aggregator: Aggregator<S, E, O>;
  readonly decoder: EntryDecoder<E>;
  readonly render: (snapshot: CustomerSnapshot<S>) => ContentsAnswer;
  readonly outputs?: OutputSink<O>;
  readonly timers?: TimerHost<E>;
}

export type WorkerState =
  'created' | 'starting' | 'recovering' | 'running' | 'draining' | 'stopped';

export interface WorkerDeps<S, E, O = never> {
  readonly nc: NatsConnection;
  readonly names: ResourceNames;
  readonly partitions: number;
  readonly worker: Config['worker'];
  readonly domain: Domain<S, E, O>;
  /** When set, a partition runs only while this worker holds its lease (the fleet). */
  readonly leases?: LeaseManager;
  readonly log: Logger;
}

export interface WorkerReport {
  readonly partitions: readonly PartitionReport[];
  readonly durationMs: number;
}

const RESTART_BACKOFF_MS = 250;
const COUNTERS = [
  'applied',
  'skipped',
  'deadLettered',
  'checkpoints',
  'replayed',
  'outputs',
  'timersFired',
] as const;
type Counter = (typeof COUNTERS)[number];

/**
 * Runs a set of partitions, each under a small supervisor that restarts its runner after a
 * failure (a fenced write, a delivery gap, a NATS outage). `setPartitions` is the seam the fleet
 * uses as ownership moves; on its own, a worker runs every partition.
 */
export class Worker<S, E, O = never> {
  #state: WorkerState = 'created';
  readonly #deps: WorkerDeps<S, E, O>;
  readonly #log: Logger;
  readonly #js: JetStreamClient;
  #jsm: JetStreamManager | undefined;
  #customers: CustomerStore<S> | undefined;
  #watermarks: WatermarkStore | undefined;
  #deadLetters: DeadLetterSink | undefined;
  readonly #supervisors = new Map<number, Supervisor>();
  readonly #pendingCatchUp = new Set<number>();
  /** Counters of runners that have ended, so totals never go backwards. */
  readonly #retired = Object.fromEntries(COUNTERS.map((k) => [k, 0])) as Record<Counter, number>;
  #closing: Promise<WorkerReport> | undefined;

  constructor(deps: WorkerDeps<S, E, O>) {
    this.#deps = deps;
    this.#log = deps.log.child({ component: 'worker', workerId: deps.worker.id });
    this.#js = jetstream(deps.nc);
  }

  get state(): WorkerState {
    return this.#state;
  }

  get id(): string {
    return this.#deps.worker.id;
  }

  async start(partitions: Iterable<number> = range(this.#deps.partitions)): Promise<void> {
    this.#transition('starting');
    const { nc, names, domain } = this.#deps;
    this.#jsm = await jetstreamManager(nc);
    // Bind without the direct-get API: direct gets may be served by a lagging replica, and a
    // stale read of a watermark or a snapshot could make a new owner skip entries.
    const kvm = new Kvm(nc);
    this.#customers = new CustomerStore(await kvm.open(names.stateBucket), domain.aggregator);
    this.#watermarks = new WatermarkStore(await kvm.open(names.metaBucket));
    this.#deadLetters = new DeadLetterSink(
      this.#js,
      names,
      this.#deps.log.child({ component: 'dead-letter', workerId: this.id }),
    );
    this.#transition('recovering');
    await this.setPartitions(partitions);
    if (this.#pendingCatchUp.size === 0) this.#transition('running');
  }

  /** Starts the partitions newly in `desired` and stops, with a final checkpoint, those no longer in it. */
  async setPartitions(desired: Iterable<number>): Promise<void> {
    const want = new Set(desired);
    const stops: Promise<unknown>[] = [];
    const wasPending = this.#pendingCatchUp.size > 0;
    for (const [p, supervisor] of this.#supervisors) {
      if (!want.has(p)) {
        this.#supervisors.delete(p);
        this.#pendingCatchUp.delete(p);
        stops.push(supervisor.stop());
      }
    }
    // Giving away the partitions still catching up can make the worker ready right here.
    if (
      wasPending &&
      this.#pendingCatchUp.size === 0 &&
      [...want].every((p) => this.#supervisors.has(p))
    ) {
      this.#becameReady();
    }
    await Promise.all(stops);
    for (const p of want) {
      if (this.#supervisors.has(p)) continue;
      const supervisor = new Supervisor(
        p,
        (lease) => this.#createRunner(p, lease),
        this.#deps.leases,
        this.#log,
        (stats) => {
          for (const key of COUNTERS) this.#retired[key] += stats[key];
        },
      );
      this.#supervisors.set(p, supervisor);
      this.#pendingCatchUp.add(p);
      supervisor.start();
    }
  }

  /** Totals over the runners of this worker, past and present (gauges only for the present). */
  stats(): RunnerStats & { readonly partitions: number } {
    const totals = { ...this.#retired, resident: 0, openTimers: 0 };
    for (const supervisor of this.#supervisors.values()) {
      const s = supervisor.runner?.stats;
      if (s === undefined) continue;
      for (const key of COUNTERS) totals[key] += s[key];
      totals.resident += s.resident;
      totals.openTimers += s.openTimers;
    }
    return { ...totals, partitions: this.#supervisors.size };
  }

  get ownedPartitions(): number[] {
    return [...this.#supervisors.keys()].sort((a, b) => a - b);
  }

  /**
   * Graceful shutdown: stop intake everywhere, apply what was received, final checkpoint of every
   * partition (in parallel), then report. Idempotent. The caller drains the connection.
   */
  close(): Promise<WorkerReport> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<WorkerReport> {
    const began = Date.now();
    this.#transition('draining');
    const supervisors = [...this.#supervisors.values()];
    this.#supervisors.clear();
    const reports = (await Promise.all(supervisors.map((s) => s.stop()))).filter(
      (r): r is PartitionReport => r !== undefined,
    );
    this.#transition('stopped', {
      partitions: reports.length,
      failed: reports.filter((r) => r.state === 'failed').length,
      durationMs: Date.now() - began,
    });
    return { partitions: reports, durationMs: Date.now() - began };
  }

  #createRunner(partition: number, lease: Lease | undefined): PartitionRunner<S, E, O> {
    const { nc, names, domain, worker } = this.#deps;
    if (
      this.#jsm === undefined ||
      this.#customers === undefined ||
      this.#watermarks === undefined ||
      this.#deadLetters === undefined
    ) {
      throw new Error('worker not started');
    }
    return new PartitionRunner<S, E, O>({
      nc,
      js: this.#js,
      jsm: this.#jsm,
      names,
      partition,
      aggregator: domain.aggregator,
      decode: domain.decoder,
      ...(domain.outputs === undefined ? {} : { outputs: domain.outputs }),
      ...(domain.timers === undefined ? {} : { timers: domain.timers }),
      customers: this.#customers,
      watermarks: this.#watermarks,
      deadLetters: this.#deadLetters,
      render: domain.render,
      settings: {
        workerId: worker.id,
        checkpointEveryEvents: worker.checkpointEveryEvents,
        checkpointIntervalMs: worker.checkpointIntervalMs,
        checkpointConcurrency: worker.checkpointConcurrency,
        // Each partition gets an equal share of the worker's memory cap.
        capacity: () =>
          Math.floor(worker.maxCustomersInMemory / Math.max(1, this.#supervisors.size)),
        canWrite: () => lease?.valid() ?? true,
      },
      log: this.#deps.log.child({ component: 'partition-runner', workerId: worker.id }),
      onCaughtUp: (report) => this.#onCaughtUp(report),
    });
  }

  #onCaughtUp(report: CatchUpReport): void {
    const wasPending = this.#pendingCatchUp.delete(report.partition);
    if (this.#pendingCatchUp.size > 0 || !wasPending) return;
    this.#becameReady();
  }

  #becameReady(): void {
    if (this.#closing !== undefined) return;
    if (this.#state === 'recovering') this.#transition('running');
    // Readiness: every partition this worker was given is running and caught up.
    this.#log.info({ partitions: this.ownedPartitions }, 'worker ready');
  }

  /** True when every partition this worker was given runs and has caught up. */
  get ready(): boolean {
    return (
      this.#pendingCatchUp.size === 0 && (this.#state === 'running' || this.#state === 'recovering')
    );
  }

  #transition(to: WorkerState, fields: Record<string, unknown> = {}): void {
    const from = this.#state;
    this.#state = to;
    this.#log.info({ from, to, ...fields }, 'worker state');
  }
}

/** The part of a runner its supervisor needs. */
interface RunnerHandle {
  readonly state: PartitionRunner<unknown, unknown>['state'];
  readonly stats: RunnerStats;
  readonly done: Promise<PartitionReport>;
  start(): Promise<void>;
  stop(): Promise<PartitionReport>;
}

/**
 * Keeps one partition's runner alive until told to stop. In a fleet it first waits for the
 * partition's lease, stops the runner the moment the lease is lost, and releases the lease only
 * after the runner's final checkpoint, so the next owner starts exactly at the watermark.
 */
class Supervisor {
  #runner: RunnerHandle | undefined;
  #stopping = false;
  #loop: Promise<PartitionReport | undefined> | undefined;

  constructor(
    readonly partition: number,
    private readonly create: (lease: Lease | undefined) => RunnerHandle,
    private readonly leases: LeaseManager | undefined,
    private readonly log: Logger,
    private readonly retire: (stats: RunnerStats) => void,
  ) {}

  get runner(): RunnerHandle | undefined {
    return this.#runner;
  }

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<PartitionReport | undefined> {
    this.#stopping = true;
    const runner = this.#runner;
    // A runner still starting is stopped by the loop as soon as start() returns.
    if (runner !== undefined && runner.state !== 'idle' && runner.state !== 'starting')
      await runner.stop();
    return this.#loop;
  }

  async #run(): Promise<PartitionReport | undefined> {
    let last: PartitionReport | undefined;
    for (let attempt = 0; !this.#stopping; attempt++) {
      const lease = await this.leases?.acquire(this.partition, () => this.#stopping);
      if (this.#stopping) {
        await lease?.release();
        break;
      }
      const runner = this.create(lease);
      this.#runner = runner;
      try {
        await runner.start();
      } catch (err) {
        this.log.error(
          { partition: this.partition, err: describeError(err) },
          'partition start failed',
        );
        await this.#release(lease);
        await sleep(Math.min(5000, RESTART_BACKOFF_MS * 2 ** Math.min(attempt, 5)));
        continue;
      }
      lease?.onLost(() => void runner.stop());
      // stop() may have been called while start() was running; honour it now.
      if (this.#stopping) await runner.stop();
      last = await runner.done;
      this.#runner = undefined;
      this.retire(runner.stats);
      await this.#release(lease);
      if (this.#stopping) break;
      if (last.state === 'failed') {
        this.log.error(
          {
            partition: this.partition,
            err: last.error === undefined ? undefined : describeError(last.error),
          },
          'partition failed, restarting',
        );
        await sleep(RESTART_BACKOFF_MS);
      } else {
        attempt = 0;
      }
    }
    return last;
  }

  async #release(lease: Lease | undefined): Promise<void> {
    try {
      await lease?.release();
    } catch (err) {
      // The lease expires on its own after the TTL; the next owner just waits a little longer.
      this.log.warn({ partition: this.partition, err: describeError(err) }, 'lease release failed');
    }
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
