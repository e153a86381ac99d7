import { describeError, errorCode } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { backoffDelay, delay, type BackoffPolicy } from './retry.js';

export interface TaskOptions {
  /**
   * Keep the task alive: when it ends (by failing, or by returning while the group is still
   * open, e.g. a watch iterator that stopped), run it again after a backoff. Without it a
   * failure is caught, logged and reported once.
   */
  readonly restart?: BackoffPolicy;
}

export interface TaskFailure {
  readonly task: string;
  readonly code: string;
  readonly error: string;
}

/** Restart policy of long-running loops (watches, heartbeats) when nothing else is said. */
export const LOOP_RESTART: BackoffPolicy = { initialMs: 250, maxMs: 10_000 };

/**
 * Owner of a component's background tasks (watch loops, heartbeats, status watchers). Every
 * task is started here, its failure is caught, classified (by code) and logged, optionally
 * restarted with backoff, and `close()` aborts and awaits them all. So no background promise
 * floats and no rejection can reach the process as an unhandled one.
 */
export class TaskGroup {
  readonly #ac = new AbortController();
  readonly #tasks = new Set<Promise<void>>();
  #failures = 0;
  #restarts = 0;

  constructor(
    private readonly log: Logger,
    private readonly onFailure?: (failure: TaskFailure) => void,
  ) {}

  /** Aborted when the group closes; tasks stop at the next await that honours it. */
  get signal(): AbortSignal {
    return this.#ac.signal;
  }

  get closed(): boolean {
    return this.#ac.signal.aborted;
  }

  get stats(): { readonly running: number; readonly failures: number; readonly restarts: number } {
    return { running: this.#tasks.size, failures: this.#failures, restarts: this.#restarts };
  }

  /** Starts `fn` as an owned task. Does nothing once the group is closed. */
  spawn(name: string, fn: (signal: AbortSignal) => Promise<void>, options: TaskOptions = {}): void {
    if (this.closed) return;
    const task = this.#supervise(name, fn, options).finally(() => this.#tasks.delete(task));
    this.#tasks.add(task);
  }

  async #supervise(
    name: string,
    fn: (signal: AbortSignal) => Promise<void>,
    options: TaskOptions,
  ): Promise<void> {
    const signal = this.#ac.signal;
    for (let attempt = 1; !signal.aborted; attempt++) {
      const began = performance.now();
      try {
        await fn(signal);
        if (signal.aborted || options.restart === undefined) return;
        this.log.warn({ task: name }, 'background task ended unexpectedly, restarting');
      } catch (err) {
        if (signal.aborted) return; // failures while closing are the close's business
        this.#failures++;
        const failure = { task: name, code: errorCode(err), error: describeError(err) };
        this.onFailure?.(failure);
        if (options.restart === undefined) {
          this.log.error(failure, 'background task failed');
          return;
        }
        this.log.warn(failure, 'background task failed, restarting');
      }
      this.#restarts++;
      // A task that ran well for a while before failing starts its backoff from the beginning.
      if (performance.now() - began > options.restart.maxMs) attempt = 1;
      await delay(backoffDelay(attempt, options.restart), signal);
    }
  }

  /** Aborts every task and waits for all of them to end. Idempotent. */
  async close(): Promise<void> {
    this.#ac.abort();
    await Promise.allSettled([...this.#tasks]);
  }
}
