import { setMaxListeners } from 'node:events';
import { describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';

export interface ShutdownOptions {
  /** How long the graceful close may take before the exit is forced. */
  readonly graceMs: number;
  readonly log: Logger;
  /** Graceful close. `signal` fires at the deadline or on a second signal. Rejecting exits 1. */
  readonly close: (signal: AbortSignal) => Promise<void>;
  /** Forced exit: what must still happen first (release leases). Bounded by `forceBudgetMs`. */
  readonly force: () => Promise<void>;
  readonly forceBudgetMs?: number;
  readonly exit?: (code: number) => void;
}

/**
 * Signal handling of a long-running command. First SIGTERM/SIGINT: graceful close, exit 0. A
 * second signal, or the grace deadline: the close's signal fires (retries give up), `force()`
 * runs (bounded), exit 1. An uncaught error (a bug: every background task is owned) logs and
 * closes gracefully, then exits 1.
 */
export function installShutdown(options: ShutdownOptions): void {
  const { log, graceMs, forceBudgetMs = 2000 } = options;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const ac = new AbortController();
  // Every partition's final publishes and retries listen on this one signal during a close, so
  // dozens of listeners are the design, not a leak (Node warns past 10).
  setMaxListeners(1000, ac.signal);
  let started = false;
  let forcing = false;
  let exitCode = 0;

  const force = (why: string, fields: Record<string, unknown>): void => {
    if (forcing) return;
    forcing = true;
    log.error(fields, why);
    ac.abort();
    const budget = new Promise<void>((resolve) => setTimeout(resolve, forceBudgetMs).unref());
    Promise.race([options.force(), budget])
      .catch((err: unknown) => log.error({ err: describeError(err) }, 'forced release failed'))
      .finally(() => exit(1));
  };

  const begin = (fields: Record<string, unknown>): void => {
    if (started) return;
    started = true;
    log.info(fields, 'shutdown requested');
    setTimeout(
      () => force('shutdown deadline passed, forcing exit', { delayMs: graceMs }),
      graceMs,
    ).unref();
    options.close(ac.signal).then(
      () => {
        if (!forcing) exit(exitCode);
      },
      (err: unknown) => {
        log.error({ err: describeError(err) }, 'shutdown failed');
        if (!forcing) exit(1);
      },
    );
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (started) force('second signal, forcing exit', { signal });
    else begin({ signal });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const onFatal = (err: unknown): void => {
    log.error({ err: describeError(err) }, 'fatal error, shutting down');
    exitCode = 1;
    begin({ reason: 'fatal error' });
  };
  process.on('uncaughtException', onFatal);
  process.on('unhandledRejection', onFatal);
}
