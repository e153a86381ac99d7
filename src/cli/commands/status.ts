import type { Command } from 'commander';
import { fleetStatus, renderStatus } from '../../admin/status.js';
import { commandContext, withConnection, type GlobalFlags } from '../context.js';

export function registerStatus(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command('status')
    .description('members, partition owners, watermarks and lag')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const ctx = commandContext(env, cmd.optsWithGlobals<GlobalFlags>(), {}, 'stderr');
      const status = await withConnection(ctx, 'order-fleet-status', (nc) =>
        fleetStatus(nc, ctx.names, ctx.log),
      );
      process.stdout.write(
        opts.json === true ? `${JSON.stringify(status)}\n` : renderStatus(status),
      );
    });
}
