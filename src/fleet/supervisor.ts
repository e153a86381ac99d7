import { describeError, errorCode } from '../errors.js';
import { delay, type BackoffPolicy } from '../lifecycle/retry.js';
import type { Logger } from '../logging/logger.js';
import type { Lease, LeaseManager } from './leases.js';
import type {
  PartitionReport,
  PartitionState,
  QuarantinedCustomer,
  RunnerStats,
} from './partition-runner.js';
import { decideRestart, DEFAULT_RESTART_POLICY, type RunOutcome } from './restart-policy.js';

/** The part of a runner its supervisor needs. */
export interface RunnerHandle {
  readonly state: PartitionState;
  /** True once the runner has caught up with the log as it stood at its start. */
  readonly caughtUp: boolean;
  readonly stats: RunnerStats;
  readonly quarantined: readonly QuarantinedCustomer[];
  readonly done: Promise<PartitionReport>;
  start(): Promise<void>;
  /** `signal` bounds the final checkpoint's retries (the shutdown deadline). */
  stop(signal?: AbortSignal): Promise<PartitionReport>;
}

/** Where a supervised partition stands. */
export type SupervisedState =
  | 'waiting' // for the lease
  | 'starting'
  | 'recovering'
  | 'running'
  | 'backoff' // failed, restarting after a delay
  | 'parked' // failed for a terminal reason: not retried until the partition moves or the worker restarts
  | 'stopping'
  | 'stopped';

export interface ParkedReason {
  readonly code: string;
  readonly reason: string;
  readonly since: string;
}

export interface SupervisorDeps {
  readonly partition: number;
  readonly create: (lease: Lease | undefined) => RunnerHandle;
  /** When set, the runner runs only while this worker holds the partition's lease. */
  readonly leases: LeaseManager | undefined;
  readonly log: Logger;
  /** Receives a runner's counters when it ends, so totals never go backwards. */
  readonly retire: (stats: RunnerStats) => void;
  readonly policy?: BackoffPolicy;
  readonly random?: () => number;
}

/**
 * Keeps one partition's runner alive until told to stop. In a fleet it first waits for the
 * partition's lease, stops the runner the moment the lease is lost, and releases the lease only
 * after the runner's final checkpoint, so the next owner starts exactly at the watermark.
 *
 * Its loop never rejects and never gives up on its own: a failed run is classified by
 * {@link decideRestart}; a retriable one (NATS stalled, a fenced write, a gap) restarts with
 * exponential backoff and jitter, a terminal one (corrupt state) parks the partition with its
 * reason, holding the lease, until the partition is taken away or the worker stops.
 */
export class Supervisor {
  readonly partition: number;
  #state: SupervisedState = 'waiting';
  #runner: RunnerHandle | undefined;
  #lease: Lease | undefined;
  #stopping = false;
  #stopSignal: AbortSignal | undefined;
  readonly #wake = new AbortController();
  #loop: Promise<PartitionReport | undefined> | undefined;
  #failures = 0;
  #restarts = 0;
  #parked: ParkedReason | undefined;
  #lastError: { readonly code: string; readonly error: string } | undefined;
  readonly #deps: SupervisorDeps;
  readonly #log: Logger;

  constructor(deps: SupervisorDeps) {
    this.#deps = deps;
    this.partition = deps.partition;
    this.#log = deps.log.child({ partition: deps.partition });
  }

  get runner(): RunnerHandle | undefined {
    return this.#runner;
  }

  get state(): SupervisedState {
    const runner = this.#runner;
    if (runner === undefined) return this.#state;
    if (runner.state === 'recovering') return 'recovering';
    if (runner.state === 'running') return 'running';
    if (runner.state === 'stopping') return 'stopping';
    return this.#state;
  }

  /** Healthy now: the runner serves (caught up) under a lease it can still prove. */
  get healthy(): boolean {
    return this.#runner?.state === 'running' && (this.#lease?.valid() ?? true);
  }

  get parked(): ParkedReason | undefined {
    return this.#parked;
  }

  /** Runs restarted after a failure, since this supervisor started. */
  get restarts(): number {
    return this.#restarts;
  }

  get lastError(): { readonly code: string; readonly error: string } | undefined {
    return this.#lastError;
  }

  start(): void {
    this.#loop ??= this.#run().catch((err: unknown) => {
      // #run handles every failure itself; reaching this is a bug, and must not kill the worker.
      this.#log.error({ err: describeError(err) }, 'partition supervisor failed');
      return undefined;
    });
  }

  /** Stops the runner (final checkpoint bounded by `signal`), releases the lease. Idempotent. */
  async stop(signal?: AbortSignal): Promise<PartitionReport | undefined> {
    this.#stopping = true;
    this.#stopSignal ??= signal;
    this.#wake.abort();
    const runner = this.#runner;
    // A runner still starting is stopped by the loop as soon as start() returns.
    if (runner !== undefined && runner.state !== 'idle' && runner.state !== 'starting')
      await runner.stop(signal);
    return this.#loop;
  }

  /**
   * Forced exit: gives the lease up now (conditional delete), without waiting for a final
   * checkpoint. From here on the runner's lease is invalid, so it writes nothing more; the next
   * owner fences it and replays from the last watermark.
   */
  async releaseLeaseNow(): Promise<void> {
    this.#stopping = true;
    this.#wake.abort();
    await this.#release(this.#lease);
  }

  async #run(): Promise<PartitionReport | undefined> {
    let last: PartitionReport | undefined;
    const { leases, policy = DEFAULT_RESTART_POLICY, random } = this.#deps;
    while (!this.#stopping) {
      this.#state = 'waiting';
      const lease =
        leases === undefined
          ? undefined
          : await leases.acquire(this.partition, () => this.#stopping, this.#wake.signal);
      if (this.#stopping || (leases !== undefined && lease === undefined)) {
        await this.#release(lease);
        break;
      }
      this.#lease = lease;
      const outcome = await this.#runOnce(lease);
      last = outcome.report ?? last;
      if (this.#stopping) break;
      const decision = decideRestart(outcome, this.#failures, policy, random);
      if (decision.action === 'park') {
        this.#parked = {
          code: decision.code,
          reason: decision.reason,
          since: new Date().toISOString(),
        };
        this.#state = 'parked';
        this.#log.error({ code: decision.code, reason: decision.reason }, 'partition parked');
        // The lease is kept: no other worker would do better with the same stored bytes, and
        // `status` shows who parked it. It is released when the partition moves or we stop.
        await delay(2 ** 31 - 1, this.#wake.signal);
        // Its failed run was reported when it parked; nothing of it is left to checkpoint, so a
        // shutdown is not incomplete because of it (the next owner starts from the same watermark).
        last = undefined;
        break;
      }
      await this.#release(lease);
      this.#lease = undefined;
      this.#failures = decision.failures;
      this.#restarts++;
      this.#state = 'backoff';
      this.#log.warn(
        { delayMs: decision.delayMs, failures: decision.failures, ...this.#lastError },
        'partition failed, restarting',
      );
      await delay(decision.delayMs, this.#wake.signal);
    }
    await this.#release(this.#lease);
    this.#lease = undefined;
    this.#state = 'stopped';
    return last;
  }

  async #runOnce(
    lease: Lease | undefined,
  ): Promise<RunOutcome & { readonly report?: PartitionReport }> {
    this.#state = 'starting';
    let runner: RunnerHandle;
    try {
      runner = this.#deps.create(lease);
      this.#runner = runner;
      await runner.start();
    } catch (err) {
      this.#runner = undefined;
      this.#noteError(err);
      this.#log.warn({ code: errorCode(err), err: describeError(err) }, 'partition start failed');
      return { error: err, ranHealthy: false };
    }
    lease?.onLost(() => {
      runner.stop().catch((err: unknown) => {
        this.#log.warn({ err: describeError(err) }, 'stopping after a lost lease failed');
      });
    });
    // stop() may have been called while start() was running; honour it now.
    if (this.#stopping) await runner.stop(this.#stopSignal);
    const report = await runner.done;
    this.#runner = undefined;
    this.#deps.retire(runner.stats);
    const error =
      report.state === 'failed'
        ? (report.error ?? new Error(`partition ${this.partition} failed`))
        : undefined;
    if (error !== undefined) this.#noteError(error);
    return { report, error, ranHealthy: runner.caughtUp };
  }

  #noteError(err: unknown): void {
    this.#lastError = { code: errorCode(err), error: describeError(err) };
  }

  async #release(lease: Lease | undefined): Promise<void> {
    try {
      await lease?.release();
    } catch (err) {
      // The lease expires on its own after the TTL; the next owner just waits a little longer.
      this.#log.warn({ err: describeError(err) }, 'lease release failed');
    }
  }
}
