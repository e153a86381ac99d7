import type { Command } from 'commander';
import { ErrorCode, OrderFleetError } from '../../errors.js';
import { startOrderWorker } from '../../main.js';
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
      const running = await startOrderWorker(ctx.config, ctx.log);
      // First SIGTERM/SIGINT: graceful close (final checkpoint, drain) then exit 0. A second
      // signal, or the grace deadline: the close's signal fires (publishes still retrying give
      // up), every lease is released at once so successors need not wait a TTL, exit 1; replay
      // from the watermarks covers the rest.
      installShutdown({
        graceMs: ctx.config.worker.shutdownGraceMs,
        log: ctx.log,
        force: () => running.releaseLeasesNow(),
        close: async (signal) => {
          const report = await running.close(signal);
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
    });
}
