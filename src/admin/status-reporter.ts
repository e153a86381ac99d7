import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import type { ResourceNames } from '../contract/names.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import type { AdminTarget } from './http-server.js';

/** What a worker reports every few seconds on `<statusPrefix>.<workerId>` (core NATS). */
export const WorkerReportSchema = z.object({
  id: z.string(),
  at: z.string(),
  ready: z.boolean(),
  partitions: z.number().int(),
  applied: z.number(),
  skipped: z.number(),
  deadLettered: z.number(),
  checkpoints: z.number(),
  replayed: z.number(),
  outputs: z.number(),
  timersFired: z.number(),
  resident: z.number(),
  openTimers: z.number(),
});
export type WorkerStatusReport = z.infer<typeof WorkerReportSchema>;

/**
 * Publishes the worker's counters (the same numbers as /metrics) on a core NATS subject, so a
 * console watches the whole fleet without asking the server anything: a fire-and-forget publish
 * of a few hundred bytes per worker every `intervalMs`, nothing stored, no JetStream API call.
 */
export function startStatusReporter(
  nc: NatsConnection,
  names: ResourceNames,
  target: AdminTarget,
  intervalMs: number,
  log: Logger,
): { close(): void } {
  const subject = `${names.statusPrefix}.${target.id}`;
  const report = (): void => {
    try {
      const report: WorkerStatusReport = {
        id: target.id,
        at: new Date().toISOString(),
        ready: target.ready,
        ...target.stats(),
      };
      nc.publish(subject, JSON.stringify(report));
    } catch (err) {
      // A closed or draining connection: the worker is going away, the next report is moot.
      log.debug({ err: describeError(err) }, 'status report not sent');
    }
  };
  const timer = setInterval(report, intervalMs);
  timer.unref();
  report();
  return {
    close: () => {
      clearInterval(timer);
    },
  };
}
