import {
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import pLimit from 'p-limit';
import { Kvm } from '@nats-io/kv';
import type { KvWrites } from '../nats/js-writer.js';
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
  type QuarantinedCustomer,
  type RunnerStats,
  type TimerHost,
} from './partition-runner.js';
import type { ContentsAnswer } from './queries.js';
import type { Lease, LeaseManager } from './leases.js';
import { Supervisor, type ParkedReason, type SupervisedState } from './supervisor.js';

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
  /**
   * Where partition consumers are created, deleted and inspected (default: `nc`). On a 2.9
   * server each of those requests holds up everything sent after it on the same connection for
   * a time that grows with the stream's subjects (see main.ts), so the fleet gives them their own.
   */
  readonly managementNc?: NatsConnection;
  readonly names: ResourceNames;
  readonly partitions: number;
  readonly worker: Config['worker'];
  readonly domain: Domain<S, E, O>;
  /** When set, a partition runs only while this worker holds its lease (the fleet). */
  readonly leases?: LeaseManager;
  /** How customer snapshots are written (default: through the state bucket itself). */
  readonly stateWrites?: KvWrites;
  readonly log: Logger;
}

export interface WorkerStats extends RunnerStats {
  /** Partitions given to this worker. */
  readonly partitions: number;
  /** Of those, parked after a terminal failure. */
  readonly parked: number;
  /** Runs restarted after a failure, in this worker's life. */
  readonly restarts: number;
}

export interface PartitionHealth {
  readonly partition: number;
  readonly state: SupervisedState;
  readonly restarts: number;
  readonly parked?: ParkedReason;
  readonly lastError?: { readonly code: string; readonly error: string };
}

export interface WorkerReport {
  readonly partitions: readonly PartitionReport[];
  readonly durationMs: number;
}

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

/** Timeout of the worker's JetStream API requests (consumer creation above all). */
const JS_API_TIMEOUT_MS = 20_000;
/**
 * Partition consumers being set up at once. The server creates them one at a time anyway, so a
 * request's wait is the set-ups ahead of it: at most 8 × ~0.7 s over a million customers'
 * subjects, well inside the API timeout (32 at once: 6 of them timed out). Fewer than 8 slowed a
 * CPU-bound start at 1k customers (each set-up waits for turns of a busy event loop: the 32
 * starts spread over 1.1 s with 2, 0.5 s with 32). See PartitionConsumerDeps.
 */
const CONSUMER_SETUP_CONCURRENCY = 8;

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
  /** Supervisors being stopped by close(), still holding leases a forced exit must release. */
  readonly #stoppingSupervisors: Supervisor[] = [];
  #retiredRestarts = 0;
  readonly #pendingCatchUp = new Set<number>();
  /** Counters of runners that have ended, so totals never go backwards. */
  readonly #retired = Object.fromEntries(COUNTERS.map((k) => [k, 0])) as Record<Counter, number>;
  #closing: Promise<WorkerReport> | undefined;
  readonly #consumerSetup = pLimit(CONSUMER_SETUP_CONCURRENCY);

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
    // Partition starts create consumers: on a 2.9 server each creation counts the filter's
    // matches over every subject of the stream, so 32 partitions starting at once over a million
    // customers' subjects queued past nats.js's 5 s default, failed, and were retried on top of
    // the queue (measured: a start-up that never settled). A slow answer is not a failure here.
    this.#jsm = await jetstreamManager(this.#deps.managementNc ?? nc, {
      timeout: JS_API_TIMEOUT_MS,
    });
    // Bind without the direct-get API: direct gets may be served by a lagging replica, and a
    // stale read of a watermark or a snapshot could make a new owner skip entries.
    const kvm = new Kvm(nc);
    this.#customers = new CustomerStore(
      await kvm.open(names.stateBucket),
      domain.aggregator,
      this.#deps.stateWrites,
    );
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
        this.#retiredRestarts += supervisor.restarts;
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
    // Each stop on its own: one failing must not keep the others (or the starts) from happening.
    for (const result of await Promise.allSettled(stops)) {
      if (result.status === 'rejected')
        this.#log.error({ err: describeError(result.reason) }, 'stopping a partition failed');
    }
    for (const p of want) {
      if (this.#supervisors.has(p)) continue;
      const supervisor = new Supervisor({
        partition: p,
        create: (lease) => this.#createRunner(p, lease),
        leases: this.#deps.leases,
        log: this.#log,
        retire: (stats) => {
          for (const key of COUNTERS) this.#retired[key] += stats[key];
        },
      });
      this.#supervisors.set(p, supervisor);
      this.#pendingCatchUp.add(p);
      supervisor.start();
    }
  }

  /** Totals over the runners of this worker, past and present (gauges only for the present). */
  stats(): WorkerStats {
    const totals = { ...this.#retired, resident: 0, openTimers: 0, quarantined: 0 };
    let parked = 0;
    let restarts = this.#retiredRestarts;
    for (const supervisor of this.#supervisors.values()) {
      restarts += supervisor.restarts;
      if (supervisor.parked !== undefined) parked++;
      const s = supervisor.runner?.stats;
      if (s === undefined) continue;
      for (const key of COUNTERS) totals[key] += s[key];
      totals.resident += s.resident;
      totals.openTimers += s.openTimers;
      totals.quarantined += s.quarantined;
    }
    return { ...totals, partitions: this.#supervisors.size, parked, restarts };
  }

  /** Quarantined customers of the partitions running here. */
  quarantined(): QuarantinedCustomer[] {
    return [...this.#supervisors.values()].flatMap((s) => s.runner?.quarantined ?? []);
  }

  /** Where each partition given to this worker stands, for `status` and the admin endpoints. */
  health(): PartitionHealth[] {
    return [...this.#supervisors.values()]
      .map((s) => ({
        partition: s.partition,
        state: s.state,
        restarts: s.restarts,
        ...(s.parked === undefined ? {} : { parked: s.parked }),
        ...(s.lastError === undefined ? {} : { lastError: s.lastError }),
      }))
      .sort((a, b) => a.partition - b.partition);
  }

  get ownedPartitions(): number[] {
    return [...this.#supervisors.keys()].sort((a, b) => a - b);
  }

  /**
   * Graceful shutdown: stop intake everywhere, apply what was received, final checkpoint of every
   * partition (in parallel, each on its own), then report. `signal` is the shutdown deadline: it
   * bounds the retries of the final dead-letter and summary publishes. Idempotent. The caller
   * drains the connection.
   */
  close(signal?: AbortSignal): Promise<WorkerReport> {
    this.#closing ??= this.#close(signal);
    return this.#closing;
  }

  /**
   * Forced exit (second signal, or the deadline passed): release every lease this worker holds
   * now, by conditional delete, without waiting for final checkpoints. The watermarks stay as
   * they are (not marked clean), so each next owner starts at once and replays from there.
   */
  async releaseLeasesNow(): Promise<void> {
    const supervisors = [...this.#supervisors.values(), ...this.#stoppingSupervisors];
    await Promise.allSettled(supervisors.map((s) => s.releaseLeaseNow()));
  }

  async #close(signal: AbortSignal | undefined): Promise<WorkerReport> {
    const began = Date.now();
    this.#transition('draining');
    const supervisors = [...this.#supervisors.values()];
    this.#stoppingSupervisors.push(...supervisors);
    this.#supervisors.clear();
    const reports: PartitionReport[] = [];
    for (const [i, result] of (
      await Promise.allSettled(supervisors.map((s) => s.stop(signal)))
    ).entries()) {
      if (result.status === 'fulfilled') {
        if (result.value !== undefined) reports.push(result.value);
      } else {
        this.#log.error(
          { partition: supervisors[i]?.partition, err: describeError(result.reason) },
          'stopping a partition failed',
        );
      }
    }
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
      consumerSetup: this.#consumerSetup,
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
        checkpointIdleMs: worker.checkpointIdleMs,
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

  /**
   * Healthy now, not caught-up-once: every partition this worker was given runs, has caught up,
   * and holds a lease it can prove. A partition restarting, waiting for its lease, or parked
   * makes the worker not ready.
   */
  get ready(): boolean {
    if (this.#pendingCatchUp.size > 0) return false;
    if (this.#state !== 'running' && this.#state !== 'recovering') return false;
    for (const supervisor of this.#supervisors.values()) if (!supervisor.healthy) return false;
    return true;
  }

  #transition(to: WorkerState, fields: Record<string, unknown> = {}): void {
    const from = this.#state;
    this.#state = to;
    this.#log.info({ from, to, ...fields }, 'worker state');
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
