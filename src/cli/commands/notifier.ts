import { readFile } from 'node:fs/promises';
import closeWithGrace from 'close-with-grace';
import type { Command } from 'commander';
import { ConfigError, describeError } from '../../errors.js';
import { connectNats } from '../../nats/connection.js';
import { Notifier } from '../../notifications/notifier.js';
import {
  fileSink,
  stdoutSink,
  webhookSink,
  type NotificationSink,
} from '../../notifications/sinks.js';
import { commandContext, type GlobalFlags } from '../context.js';
import type { Config } from '../../config/config.js';
import type { Logger } from '../../logging/logger.js';
import {
  decodeWebhookSecret,
  webhookSigner,
  type WebhookSigner,
} from '../../notifications/webhook-signature.js';

export function registerNotifier(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command('notifier')
    .description(
      'deliver summary notifications to a sink (stdout, file, webhook), at least once, with the summaryId as idempotency key',
    )
    .option('--sink <sink>', 'stdout | file | webhook (env NOTIFIER_SINK, default stdout)')
    .option('--file <path>', 'file to append to, for --sink file (env NOTIFIER_FILE)')
    .option('--url <url>', 'endpoint, for --sink webhook (env NOTIFIER_WEBHOOK_URL)')
    .action(async (opts: { sink?: string; file?: string; url?: string }, cmd: Command) => {
      const overrides = {
        NOTIFIER_SINK: opts.sink,
        NOTIFIER_FILE: opts.file,
        NOTIFIER_WEBHOOK_URL: opts.url,
      };
      // With the stdout sink, stdout carries the notifications, so logs go to stderr.
      const sinkName = opts.sink ?? env['NOTIFIER_SINK'] ?? 'stdout';
      const ctx = commandContext(
        env,
        cmd.optsWithGlobals<GlobalFlags>(),
        overrides,
        sinkName === 'stdout' ? 'stderr' : 'stdout',
      );
      const { notifier: settings } = ctx.config;
      const sink = await buildSink(settings, ctx.log);
      const nc = await connectNats(ctx.config.nats, 'order-fleet-notifier', ctx.log);
      const notifier = new Notifier(nc, {
        names: ctx.names,
        sink,
        maxInFlight: settings.maxInFlight,
        ackWaitMs: Math.max(30_000, settings.webhookTimeoutMs * 3),
        log: ctx.log.child({ component: 'notifier' }),
      });
      try {
        await notifier.start();
      } catch (err) {
        await nc.close();
        throw err;
      }
      closeWithGrace(
        { delay: ctx.config.worker.shutdownGraceMs, logger: false },
        async ({ err }) => {
          if (err !== undefined)
            ctx.log.error({ err: describeError(err) }, 'fatal error, shutting down');
          await notifier.close();
          await nc.drain();
        },
      );
    });
}

async function buildSink(settings: Config['notifier'], log: Logger): Promise<NotificationSink> {
  switch (settings.sink) {
    case 'file':
      if (settings.file === undefined)
        throw new ConfigError(
          'NOTIFIER_FILE (--file) is required for the file sink',
          'NOTIFIER_FILE',
        );
      return fileSink(settings.file);
    case 'webhook': {
      if (settings.webhookUrl === undefined) {
        throw new ConfigError(
          'NOTIFIER_WEBHOOK_URL (--url) is required for the webhook sink',
          'NOTIFIER_WEBHOOK_URL',
        );
      }
      const signer = await loadSigner(settings);
      if (signer === undefined)
        log.warn(
          'webhook deliveries are not signed: set NOTIFIER_WEBHOOK_SECRET or NOTIFIER_WEBHOOK_SECRET_FILE',
        );
      return webhookSink(settings.webhookUrl, settings.webhookTimeoutMs, {
        ...(signer === undefined ? {} : { signer }),
      });
    }
    default:
      return stdoutSink();
  }
}

/** Secrets from the environment and from the file (one per line, or space-separated). */
async function loadSigner(settings: Config['notifier']): Promise<WebhookSigner | undefined> {
  const keys = settings.webhookSecrets.map((s) =>
    decodeWebhookSecret(s, 'NOTIFIER_WEBHOOK_SECRET'),
  );
  if (settings.webhookSecretFile !== undefined) {
    const text = await readFile(settings.webhookSecretFile, 'utf8');
    for (const secret of text.split(/\s+/u).filter((s) => s !== '' && !s.startsWith('#')))
      keys.push(decodeWebhookSecret(secret, 'NOTIFIER_WEBHOOK_SECRET_FILE'));
  }
  return keys.length === 0 ? undefined : webhookSigner(keys);
}
