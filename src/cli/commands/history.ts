import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { Command } from 'commander';
import { askContents } from '../../fleet/queries.js';
import { loadDeployment } from '../../nats/deployment.js';
import { createOrderAggregator, renderOrder } from '../../orders/order-aggregator.js';
import { customerHistory, renderHistory } from '../../recovery/customer-history.js';
import { CustomerStore } from '../../state/customer-store.js';
import { WatermarkStore } from '../../state/watermark-store.js';
import { commandContext, withConnection, type GlobalFlags } from '../context.js';

export function registerHistory(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command('history')
    .description(
      "a customer's log entries in order, folded with the aggregator: contents after each, the window and summary each belongs to, and whether the stored state matches",
    )
    .argument('<customerId>')
    .option('--json', 'print JSON')
    .action(async (customerId: string, opts: { json?: boolean }, cmd: Command) => {
      const ctx = commandContext(env, cmd.optsWithGlobals<GlobalFlags>(), {}, 'stderr');
      const aggregator = createOrderAggregator(ctx.config.worker.summary);
      const { history, current } = await withConnection(ctx, 'order-fleet-history', async (nc) => {
        const deployment = await loadDeployment(nc, ctx.names);
        const watermarks = new WatermarkStore(await new Kvm(nc).open(ctx.names.metaBucket));
        const history = await customerHistory(
          {
            js: jetstream(nc),
            jsm: await jetstreamManager(nc),
            names: ctx.names,
            partitions: deployment.partitions,
            limits: ctx.config.limits,
            aggregator,
            superseded: async (p) => watermarks.superseded(p),
          },
          customerId,
        );
        const current = await askContents(nc, customerId, {
          names: ctx.names,
          partitions: deployment.partitions,
          timeoutMs: ctx.config.query.timeoutMs,
          store: new CustomerStore(await new Kvm(nc).open(ctx.names.stateBucket), aggregator),
          render: renderOrder,
        });
        return { history, current };
      });
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify({ ...history, current })}\n`);
        return;
      }
      process.stdout.write(
        renderHistory(history, {
          lastSeq: current.lastSeq,
          items: current.items,
          stale: current.stale,
          ...(current.owner === undefined ? {} : { owner: current.owner }),
        }),
      );
    });
}
