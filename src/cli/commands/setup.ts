import type { Command } from 'commander';
import { timerLayoutOf } from '../../nats/deployment.js';
import { setupDeploymentWhenReady } from '../../nats/provision.js';
import { commandContext, withConnection, type GlobalFlags } from '../context.js';

export function registerSetup(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command('setup')
    .description('create or update, idempotently, the streams and KV buckets the fleet needs')
    .option(
      '--partitions <n>',
      'partition count of a new deployment (env PARTITIONS, default 32); cannot change later',
    )
    .option(
      '--timer-layout <layout>',
      'index or state (env TIMER_LAYOUT); unset keeps the stored one (state for a new deployment); state switches an index deployment once every live worker supports it',
    )
    .option(
      '--replicas <n>',
      'replicas for streams and buckets (env ORDERS_REPLICAS, default 1; 3 on a 3-node cluster)',
    )
    .option('--json', 'print the report as JSON')
    .action(
      async (
        opts: { partitions?: string; timerLayout?: string; replicas?: string; json?: boolean },
        cmd: Command,
      ) => {
        const ctx = commandContext(
          env,
          cmd.optsWithGlobals<GlobalFlags>(),
          {
            PARTITIONS: opts.partitions,
            TIMER_LAYOUT: opts.timerLayout,
            ORDERS_REPLICAS: opts.replicas,
          },
          'stderr',
        );
        const report = await withConnection(ctx, 'order-fleet-setup', (nc) =>
          setupDeploymentWhenReady(nc, ctx.names, ctx.config.setup, ctx.log),
        );
        if (opts.json === true) {
          process.stdout.write(`${JSON.stringify(report)}\n`);
          return;
        }
        for (const r of report.resources) {
          const changed = r.changed.length > 0 ? ` (${r.changed.join(', ')})` : '';
          process.stdout.write(`${r.kind.padEnd(6)} ${r.name.padEnd(24)} ${r.action}${changed}\n`);
        }
        process.stdout.write(`partitions ${report.deployment.partitions}\n`);
        process.stdout.write(`timer-layout ${timerLayoutOf(report.deployment)}\n`);
      },
    );
}
