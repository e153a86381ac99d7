import { Kvm } from '@nats-io/kv';
import type { Command } from 'commander';
import { askContents } from '../../fleet/queries.js';
import { loadDeployment } from '../../nats/deployment.js';
import { orderAggregator, renderOrder } from '../../orders/order-aggregator.js';
import { CustomerStore } from '../../state/customer-store.js';
import { commandContext, withConnection, type GlobalFlags } from '../context.js';

export function registerContents(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command('contents')
    .description(
      "print a customer's order contents, answered by the partition's owner (or from KV, marked stale)",
    )
    .argument('<customerId>')
    .option('--json', 'print JSON')
    .action(async (customerId: string, opts: { json?: boolean }, cmd: Command) => {
      const ctx = commandContext(env, cmd.optsWithGlobals<GlobalFlags>(), {}, 'stderr');
      const reply = await withConnection(ctx, 'order-fleet-contents', async (nc) => {
        const deployment = await loadDeployment(nc, ctx.names);
        const store = new CustomerStore(
          await new Kvm(nc).open(ctx.names.stateBucket),
          orderAggregator,
        );
        return askContents(nc, customerId, {
          names: ctx.names,
          partitions: deployment.partitions,
          timeoutMs: ctx.config.query.timeoutMs,
          store,
          render: renderOrder,
        });
      });
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(reply)}\n`);
      } else {
        const source = reply.stale
          ? 'from KV (stale: no owner answered)'
          : `from owner ${reply.owner ?? '?'}`;
        process.stdout.write(
          `${reply.customerId}: [${reply.items.join(', ')}] (lastSeq ${reply.lastSeq}, partition ${reply.partition}, ${source})\n`,
        );
      }
    });
}
