import { pino } from 'pino';
import type { NatsConnection } from '@nats-io/transport-node';
import { loadConfig, type Config, type EnvInput } from '../config/config.js';
import { resourceNames, type ResourceNames } from '../contract/names.js';
import { createLogger, type Logger } from '../logging/logger.js';
import { connectNats } from '../nats/connection.js';

/** Global flags every command accepts; each overrides the environment variable it names. */
export interface GlobalFlags {
  readonly natsUrl?: string;
  readonly logLevel?: string;
  readonly namespace?: string;
}

export interface CommandContext {
  readonly config: Config;
  readonly names: ResourceNames;
  readonly log: Logger;
}

/**
 * Builds config (env, then flags) and a logger. Long-running commands (worker) log JSON to
 * stdout; one-shot commands print their answer on stdout and log to stderr, so their output
 * stays machine-readable.
 */
export function commandContext(
  env: EnvInput,
  flags: GlobalFlags,
  overrides: EnvInput,
  logTo: 'stdout' | 'stderr',
): CommandContext {
  const config = loadConfig(env, {
    NATS_URL: flags.natsUrl,
    // One-shot commands only log warnings unless asked: their answer is what matters.
    LOG_LEVEL:
      flags.logLevel ?? (logTo === 'stderr' && (env.LOG_LEVEL ?? '') === '' ? 'warn' : undefined),
    ORDER_FLEET_NAMESPACE: flags.namespace,
    ...overrides,
  });
  const log = createLogger(
    config.logLevel,
    pino.destination({ dest: logTo === 'stdout' ? 1 : 2, sync: true }),
  );
  return { config, names: resourceNames(config.namespace), log };
}

/** Runs `fn` with a connection that is drained afterwards, whatever happens. */
export async function withConnection<T>(
  ctx: CommandContext,
  name: string,
  fn: (nc: NatsConnection) => Promise<T>,
): Promise<T> {
  const nc = await connectNats(ctx.config.nats, name, ctx.log);
  try {
    return await fn(nc);
  } finally {
    await nc.drain();
  }
}
