import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import closeWithGrace from 'close-with-grace';
import type { Command } from 'commander';
import { startConsoleServer } from '../../console/console-server.js';
import { FleetView } from '../../console/fleet-view.js';
import { ConfigError, describeError } from '../../errors.js';
import { askContents } from '../../fleet/queries.js';
import { connectNats } from '../../nats/connection.js';
import { loadDeployment } from '../../nats/deployment.js';
import { createOrderAggregator, renderOrder } from '../../orders/order-aggregator.js';
import { customerHistory } from '../../recovery/customer-history.js';
import { DeadLetterAdmin } from '../../recovery/dead-letter-admin.js';
import { EVERYTHING } from '../../recovery/dead-letter-selection.js';
import { CustomerStore } from '../../state/customer-store.js';
import { WatermarkStore } from '../../state/watermark-store.js';
import { commandContext, type GlobalFlags } from '../context.js';

export function registerConsole(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command('console')
    .description(
      'a live web console: fleet, partitions, handoffs, dead letters, customer lookup, summary pipeline (read-only unless --allow-actions)',
    )
    .option('--port <n>', 'HTTP port (env CONSOLE_PORT, default 8080; 0 = any)')
    .option('--host <host>', 'listen address (env CONSOLE_HOST, default 127.0.0.1)')
    .option(
      '--allow-actions',
      'enable actions (redrive) for requests with the admin token (env CONSOLE_ADMIN_TOKEN)',
    )
    .option(
      '--consumer-poll-ms <ms>',
      'how often consumer info (lag) is polled (env CONSOLE_CONSUMER_POLL_MS, default 15000)',
    )
    .action(
      async (
        opts: { port?: string; host?: string; allowActions?: boolean; consumerPollMs?: string },
        cmd: Command,
      ) => {
        const ctx = commandContext(
          env,
          cmd.optsWithGlobals<GlobalFlags>(),
          {
            CONSOLE_PORT: opts.port,
            CONSOLE_HOST: opts.host,
            CONSOLE_CONSUMER_POLL_MS: opts.consumerPollMs,
          },
          'stderr',
        );
        const settings = ctx.config.console;
        if (opts.allowActions === true && settings.adminToken === undefined) {
          throw new ConfigError(
            '--allow-actions needs CONSOLE_ADMIN_TOKEN: actions are for the admin role only',
            'CONSOLE_ADMIN_TOKEN',
          );
        }
        const nc = await connectNats(ctx.config.nats, 'order-fleet-console', ctx.log);
        const closers: (() => Promise<void>)[] = [() => nc.drain()];
        const closeAll = async (): Promise<void> => {
          for (const close of closers.splice(0).reverse()) {
            try {
              await close();
            } catch (err) {
              ctx.log.warn({ err: describeError(err) }, 'console close step failed');
            }
          }
        };
        try {
          const deployment = await loadDeployment(nc, ctx.names);
          const watermarks = new WatermarkStore(await new Kvm(nc).open(ctx.names.metaBucket));
          const aggregator = createOrderAggregator(ctx.config.worker.summary);
          const store = new CustomerStore(
            await new Kvm(nc).open(ctx.names.stateBucket),
            aggregator,
          );
          const js = jetstream(nc);
          const jsm = await jetstreamManager(nc);
          const view = new FleetView(nc, {
            names: ctx.names,
            partitions: deployment.partitions,
            consumerPollMs: settings.consumerPollMs,
            streamPollMs: 2000,
            log: ctx.log.child({ component: 'console' }),
          });
          await view.start();
          closers.push(() => view.close());
          const admin = await DeadLetterAdmin.open(nc, ctx.names);
          const server = await startConsoleServer({
            port: settings.port,
            host: settings.host,
            view,
            pushIntervalMs: 500,
            log: ctx.log.child({ component: 'console-http' }),
            lookup: async (customerId) => {
              const [current, history] = await Promise.all([
                askContents(nc, customerId, {
                  names: ctx.names,
                  partitions: deployment.partitions,
                  timeoutMs: ctx.config.query.timeoutMs,
                  store,
                  render: renderOrder,
                }),
                customerHistory(
                  {
                    js,
                    jsm,
                    names: ctx.names,
                    partitions: deployment.partitions,
                    limits: ctx.config.limits,
                    aggregator,
                    superseded: async (p) => watermarks.superseded(p),
                  },
                  customerId,
                ),
              ]);
              return { current, history };
            },
            ...(opts.allowActions === true && settings.adminToken !== undefined
              ? {
                  actions: {
                    adminToken: settings.adminToken,
                    redrive: async (sel: {
                      reason?: string | undefined;
                      customer?: string | undefined;
                    }) => {
                      const letters = await admin.read({
                        ...EVERYTHING,
                        reasons: sel.reason === undefined ? [] : [sel.reason],
                        customers: sel.customer === undefined ? [] : [sel.customer],
                      });
                      const outcomes = await admin.redrive(letters, { dryRun: false });
                      return {
                        selected: outcomes.length,
                        redriven: outcomes.filter((o) => o.action === 'redriven').length,
                      };
                    },
                  },
                }
              : {}),
          });
          closers.push(() => server.close());
          process.stdout.write(
            `${JSON.stringify({ console: server.url, readOnly: opts.allowActions !== true })}\n`,
          );
        } catch (err) {
          await closeAll();
          throw err;
        }
        closeWithGrace({ delay: 5000, logger: false }, async ({ err }) => {
          if (err !== undefined) ctx.log.error({ err: describeError(err) }, 'console failed');
          await closeAll();
        });
      },
    );
}
