import { describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';

/**
 * Runs one step of a `close()`; a failure is logged and does not keep the next steps from
 * running (as BullMQ's close does). Steps are awaited in the order the caller gives.
 */
export async function closeStep(log: Logger, name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    log.error({ step: name, err: describeError(err) }, 'shutdown step failed');
  }
}
