import { Command, CommanderError, Option } from 'commander';
import {
  describeError,
  ErrorCode,
  errorCode,
  isOrderFleetError,
  isValidationError,
} from '../errors.js';
import { registerAuth } from './commands/auth.js';
import { registerConsole } from './commands/console.js';
import { registerContents } from './commands/contents.js';
import { registerDlq } from './commands/dlq.js';
import { registerHistory } from './commands/history.js';
import { registerPublish } from './commands/publish.js';
import { registerRebuild } from './commands/rebuild.js';
import { registerNotifier } from './commands/notifier.js';
import { registerSetup } from './commands/setup.js';
import { registerStatus } from './commands/status.js';
import { registerWorker } from './commands/worker.js';

/** Exit codes: 0 ok, 1 failure, 2 bad configuration or bad input (nothing was done). */
export const ExitCode = { Ok: 0, Failure: 1, Usage: 2 } as const;

export function buildProgram(env: NodeJS.ProcessEnv): Command {
  const program = new Command('order-fleet')
    .description(
      'A worker fleet on NATS JetStream: per-customer order aggregators with KV checkpoints, SIGTERM handoff and crash replay.',
    )
    .addOption(new Option('--nats-url <urls>', 'NATS servers, comma-separated (env NATS_URL)'))
    .addOption(new Option('--log-level <level>', 'log level (env LOG_LEVEL)'))
    .addOption(
      new Option(
        '--namespace <ns>',
        'prefix for every stream, bucket and subject (env ORDER_FLEET_NAMESPACE)',
      ),
    )
    .showHelpAfterError()
    .exitOverride();
  registerSetup(program, env);
  registerPublish(program, env);
  registerWorker(program, env);
  registerContents(program, env);
  registerStatus(program, env);
  registerNotifier(program, env);
  registerAuth(program, env);
  registerDlq(program, env);
  registerHistory(program, env);
  registerConsole(program, env);
  registerRebuild(program, env);
  return program;
}

/** Entry point of the `order-fleet` binary; the composition root is each command's action. */
export async function runCli(argv: readonly string[]): Promise<void> {
  const program = buildProgram(process.env);
  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    process.exitCode = exitCodeFor(err);
  }
}

/** The error's stable code, for scripts that act on a failure (messages may be reworded). */
function codeSuffix(err: unknown): string {
  return isOrderFleetError(err) ? ` [${errorCode(err)}]` : '';
}

function exitCodeFor(err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander already printed help or the usage error.
    return err.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
  }
  if (
    isOrderFleetError(err, ErrorCode.ConfigInvalid) ||
    isOrderFleetError(err, ErrorCode.ImmutableSetting) ||
    isOrderFleetError(err, ErrorCode.FilesExist) ||
    isOrderFleetError(err, ErrorCode.ConfirmationRequired) ||
    isOrderFleetError(err, ErrorCode.HistoryTruncated) ||
    isOrderFleetError(err, ErrorCode.UpgradeBlocked) ||
    isValidationError(err)
  ) {
    process.stderr.write(`order-fleet: ${err.message}${codeSuffix(err)}\n`);
    return ExitCode.Usage;
  }
  process.stderr.write(`order-fleet: ${describeError(err)}${codeSuffix(err)}\n`);
  return ExitCode.Failure;
}
