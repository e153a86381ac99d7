import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { ResourceNames } from '../contract/names.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { NOTIFIER_CONSUMER } from '../notifications/notifier.js';
import { isConsumerNotFound } from '../nats/errors.js';
import { consumerCounts } from './status.js';

/** Fleet-wide numbers, the same whichever worker measures them. */
export interface FleetGauges {
  /** Entries not yet checkpointed, summed over every partition (what an autoscaler wants). */
  readonly lag: number;
  /** Partitions with no lease holder. */
  readonly unowned: number;
  /** Messages held in the dead-letter stream, by source. */
  readonly deadLetters: { readonly orders: number; readonly notifications: number };
  /** Summaries not yet accepted by a sink (pending + unacknowledged on the notifier's consumer). */
  readonly notifierLag: number;
}

export interface FleetGaugeSources {
  readonly jsm: JetStreamManager;
  readonly names: ResourceNames;
  readonly partitions: number;
  /** Lease holder per partition (absent = unowned). */
  holders(): Promise<ReadonlyMap<number, string>>;
}

/** Reads {@link FleetGauges} from NATS: one consumer info per partition plus three stream reads. */
export async function readFleetGauges(src: FleetGaugeSources): Promise<FleetGauges> {
  const holders = await src.holders();
  const counts = await Promise.all(
    Array.from({ length: src.partitions }, (_, p) => consumerCounts(src.jsm, src.names, p)),
  );
  const dlq = await src.jsm.streams.info(src.names.deadLetterStream, {
    subjects_filter: '>',
  });
  let orders = 0;
  let notifications = 0;
  for (const [subject, n] of Object.entries(dlq.state.subjects ?? {})) {
    if (subject === src.names.deadLetterNotifications) notifications += n;
    else orders += n;
  }
  let notifierLag = 0;
  try {
    const info = await src.jsm.consumers.info(src.names.notificationsStream, NOTIFIER_CONSUMER);
    notifierLag = info.num_pending + info.num_ack_pending;
  } catch (err) {
    // No notifier has run yet: everything in the stream waits for one.
    if (!isConsumerNotFound(err)) throw err;
    notifierLag = (await src.jsm.streams.info(src.names.notificationsStream)).state.messages;
  }
  return {
    lag: counts.reduce((sum, c) => sum + c.pending + c.unacked, 0),
    unowned: src.partitions - [...holders.keys()].filter((p) => p < src.partitions).length,
    deadLetters: { orders, notifications },
    notifierLag,
  };
}

/**
 * Measures {@link FleetGauges} every `intervalMs`, but only while this worker holds partition 0's
 * lease: exactly one worker of the fleet (the elected reporter, no extra coordination) reads the
 * fleet-wide numbers, so NATS answers one set of consumer-info requests per interval however many
 * workers run (consumer info is not free on 2.9: the server computes each filtered consumer's
 * pending count). Its metrics carry the value; every other worker exports nothing, so a query
 * like `max(order_fleet_fleet_lag)` sees one series (two, briefly, while partition 0 moves).
 */
export class FleetGaugeReporter {
  readonly #sources: FleetGaugeSources;
  readonly #options: {
    readonly workerId: string;
    readonly intervalMs: number;
    readonly log: Logger;
  };
  readonly #abort = new AbortController();
  #latest: FleetGauges | undefined;
  #loop: Promise<void> | undefined;

  constructor(
    sources: FleetGaugeSources,
    options: { readonly workerId: string; readonly intervalMs: number; readonly log: Logger },
  ) {
    this.#sources = sources;
    this.#options = options;
  }

  /** The last measurement, or undefined when this worker is not the reporter. */
  get latest(): FleetGauges | undefined {
    return this.#latest;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      await this.#sample();
      await sleep(this.#options.intervalMs, undefined, { signal }).catch(() => undefined);
    }
  }

  async #sample(): Promise<void> {
    try {
      const holders = await this.#sources.holders();
      if (holders.get(0) !== this.#options.workerId) {
        this.#latest = undefined;
        return;
      }
      this.#latest = await readFleetGauges({
        ...this.#sources,
        holders: () => Promise.resolve(holders),
      });
    } catch (err) {
      // A failed read (NATS restarting, a leader election) keeps no stale value; the next
      // interval tries again. Never fatal: these numbers are for dashboards and the autoscaler.
      this.#latest = undefined;
      if (!this.#abort.signal.aborted)
        this.#options.log.warn({ err: describeError(err) }, 'fleet gauges: read failed');
    }
  }

  /** Stops the loop; idempotent. */
  async close(): Promise<void> {
    this.#abort.abort();
    this.#latest = undefined;
    await this.#loop;
  }
}
