import { Command, Option } from 'commander';
import { EVENT_TYPES, type EventType } from '../../contract/event.js';
import { ErrorCode, ValidationError } from '../../errors.js';
import { OrderPublisher, type OrderEventInput } from '../../publisher/order-publisher.js';
import { commandContext, withConnection, type GlobalFlags } from '../context.js';

export function registerPublish(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command('publish')
    .description('publish one order event and print its stream sequence')
    .argument('<customerId>', 'the customer (a single subject token)')
    .addArgument(new Command().createArgument('<type>', 'event type').choices(EVENT_TYPES))
    .argument('[items...]', 'integer items, for items.added / items.removed')
    .option(
      '--id <id>',
      'event id (Nats-Msg-Id); re-sending the same id stores it once (default: random)',
    )
    .addOption(new Option('--at <iso>', 'event time, ISO-8601'))
    .action(
      async (
        customerId: string,
        type: EventType,
        items: string[],
        opts: { id?: string; at?: string },
        cmd: Command,
      ) => {
        const ctx = commandContext(env, cmd.optsWithGlobals<GlobalFlags>(), {}, 'stderr');
        const input = buildEvent(type, items, opts);
        const result = await withConnection(ctx, 'order-fleet-publish', async (nc) => {
          const publisher = await OrderPublisher.connect(nc, {
            names: ctx.names,
            limits: ctx.config.limits,
            ...ctx.config.publisher,
            log: ctx.log,
          });
          try {
            return await publisher.publish(customerId, input);
          } finally {
            await publisher.close();
          }
        });
        process.stdout.write(
          `${JSON.stringify({ stream: ctx.names.ordersStream, seq: result.seq, duplicate: result.duplicate, subject: result.subject, id: result.id })}\n`,
        );
      },
    );
}

function buildEvent(
  type: EventType,
  rawItems: readonly string[],
  opts: { id?: string; at?: string },
): OrderEventInput {
  const items = rawItems.map((raw) => {
    if (!/^-?\d+$/u.test(raw)) {
      throw new ValidationError(
        ErrorCode.InvalidEvent,
        `invalid event: items: ${JSON.stringify(raw)} is not an integer`,
        'items',
      );
    }
    return Number(raw);
  });
  const common = {
    ...(opts.id === undefined ? {} : { id: opts.id }),
    ...(opts.at === undefined ? {} : { at: opts.at }),
  };
  switch (type) {
    case 'items.added':
    case 'items.removed':
      return { ...common, type, items };
    case 'order.created':
    case 'order.cleared':
      if (items.length > 0) {
        throw new ValidationError(
          ErrorCode.InvalidEvent,
          `invalid event: ${type} takes no items`,
          'items',
        );
      }
      return { ...common, type };
  }
}
