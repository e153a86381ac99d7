import type { Command } from 'commander';
import { describeError, ErrorCode, errorCode, OrderFleetError } from '../../errors.js';
import { retry } from '../../lifecycle/retry.js';
import { startOrderWorker, type RunningWorker } from '../../main.js';
import { commandContext, type GlobalFlags } from '../context.js';
import { installShutdown } from '../shutdown.js';

export function registerWorker(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command('worker')
    .description(
      'run a worker: consume partitions, keep per-customer aggregators, checkpoint to KV',
    )
    .option(
      '--worker-id <id>',
      'unique id of this worker (env WORKER_ID; default hostname + random suffix)',
    )
    .option(
      '--grace <ms>',
      'graceful shutdown deadline in ms (env SHUTDOWN_GRACE_MS, default 25000)',
    )
    .action(async (opts: { workerId?: string; grace?: string }, cmd: Command) => {
      const ctx = commandContext(
        env,
        cmd.optsWithGlobals<GlobalFlags>(),
        { WORKER_ID: opts.workerId, SHUTDOWN_GRACE_MS: opts.grace },
        'stdout',
      );
      // Signals are handled from the start, so a SIGTERM while connecting or starting is a
      // graceful stop too (not Node's default action), and startup retries transient failures
      // (NATS restarting, JetStream between leaders) until it succeeds or is told to stop.
      const startup = new AbortController();
      let running: RunningWorker | undefined;
      const started = retry(() => startOrderWorker(ctx.config, ctx.log), {
        initialMs: 500,
        maxMs: 10_000,
        signal: startup.signal,
        // An attempt under way may already hold a connection and leases: await it, then close it.
        abandonOnAbort: false,
        onRetry: (err, attempt, delayMs) =>
          ctx.log.warn(
            { code: errorCode(err), err: describeError(err), attempt, delayMs },
            'worker start failed, retrying',
          ),
      }).then((r) => (running = r));
      // First SIGTERM/SIGINT: graceful close (final checkpoint, drain) then exit 0. A second
      // signal, or the grace deadline: the close's signal fires (publishes still retrying give
      // up), every lease is released at once so successors need not wait a TTL, exit 1; replay
      // from the watermarks covers the rest.
      installShutdown({
        graceMs: ctx.config.worker.shutdownGraceMs,
        log: ctx.log,
        force: () => running?.releaseLeasesNow() ?? Promise.resolve(),
        close: async (signal) => {
          startup.abort();
          const worker = await started.catch((err: unknown) => {
            // Startup gave up (aborted by this very shutdown, or a terminal error reported below).
            ctx.log.info({ err: describeError(err) }, 'stopped before the worker started');
            return undefined;
          });
          if (worker === undefined) return;
          const report = await worker.close(signal);
          const failed = report.partitions
            .filter((p) => p.state === 'failed')
            .map((p) => p.partition);
          if (failed.length > 0) {
            // Exit 1: those partitions' last entries were not checkpointed; the next owner replays them.
            ctx.log.error({ partitions: failed }, 'final checkpoint failed for some partitions');
            throw new OrderFleetError(
              ErrorCode.ShutdownIncomplete,
              `final checkpoint failed for partitions ${failed.join(', ')}`,
            );
          }
        },
      });
      // A terminal startup failure (not provisioned, bad credentials) ends the command as before.
      await started.catch((err: unknown) => {
        if (!startup.signal.aborted) throw err; // else the shutdown handler reports and exits
      });
    });
}
