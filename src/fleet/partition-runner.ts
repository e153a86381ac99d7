import type { JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import pLimit from 'p-limit';
import type { ResourceNames } from '../contract/names.js';
import {
  describeError,
  ErrorCode,
  errorCode,
  isOrderFleetError,
  isValidationError,
  OrderFleetError,
} from '../errors.js';
import type { Logger } from '../logging/logger.js';
import type { Aggregator, PendingTimer } from '../orders/aggregator.js';
import type { DecodedEntry, EntryDecoder } from '../orders/order-log.js';
import type {
  CustomerSnapshot,
  CustomerStore,
  Quarantine,
  StoredSnapshot,
} from '../state/customer-store.js';
import type { PreparedConsumer, Watermark, WatermarkStore } from '../state/watermark-store.js';
import type { TimerIndex } from '../state/timer-index.js';
import type { TimerLayout } from '../nats/deployment.js';
import type { TimerSnapshotStore, TimerSnapshotTag } from '../state/timer-snapshot.js';
import type { DeadLetterSink } from './dead-letter.js';
import { PartitionTimers } from './partition-timers.js';
import { ResidentSet, type Resident } from './resident-set.js';
import { StoredCustomers } from './stored-customers.js';
import { decideEntry, planIntake } from './intake-plan.js';
import {
  checkpointDue,
  idleWaitMs,
  type CheckpointRules,
  type CheckpointView,
} from './checkpoint-policy.js';
import { QueryResponder } from './query-responder.js';
import { PartitionConsumer } from './partition-consumer.js';
import type { ContentsAnswer } from './queries.js';

export interface PartitionRunnerSettings {
  readonly workerId: string;
  /** Checkpoint after this many entries... */
  readonly checkpointEveryEvents: number;
  /** ...or this long after the last checkpoint, whichever comes first... */
  readonly checkpointIntervalMs: number;
  /** ...or once nothing new arrived for this long (0: off). See checkpoint-policy.ts. */
  readonly checkpointIdleMs: number;
  /** KV writes in flight at once during a checkpoint. */
  readonly checkpointConcurrency: number;
  /** Customers this partition may hold in memory right now (its share of the worker's cap). */
  readonly capacity: () => number;
  /** False once this runner's lease may have passed to someone else: it must not write again. */
  readonly canWrite: () => boolean;
}

/** Where an aggregator's outputs (e.g. summary notifications) go. */
export interface OutputSink<O> {
  /**
   * Publishes idempotently (the output carries its own id). `replay` is true while the runner
   * re-applies entries a crashed owner may already have applied, so the sink can check first.
   */
  emit(partition: number, output: O, replay: boolean, signal?: AbortSignal): Promise<void>;
}

/** Durable timers: where open timers are indexed, and how a due timer is appended to the log. */
export interface TimerHost<E> {
  readonly index: TimerIndex<E>;
  /**
   * The deployment's timer layout, read at every start (setup can switch it, index → state, on a
   * live fleet). `index`: the index above is kept and read after a crash. `state`: no index; after
   * a crash the open timers come from the partition's customer snapshots. Default `index`.
   */
  readonly layout?: () => Promise<TimerLayout>;
  /**
   * Every open timer of a partition in a few entries, written by a clean final checkpoint: the
   * next owner after a graceful handoff reads it instead of one index entry per customer. The
   * index stays complete (crash path, older versions). Optional: without it, the index only.
   */
  readonly snapshot?: TimerSnapshotStore<E>;
  /**
   * Appends the timer's entry to the log, under its deterministic id. Resolves with the sequence
   * of the entry, and whether it was already there.
   */
  append(
    partition: number,
    customerId: string,
    timer: PendingTimer<E>,
  ): Promise<{ readonly kind: 'appended' | 'duplicate'; readonly seq: number }>;
  /** How often due timers are looked for. */
  readonly tickMs: number;
}

/**
 * How long a final checkpoint's writes may be followed by waiting for the next owner's consumer
 * set-up to start (it may be queued behind other partitions' set-ups): the release of the lease
 * waits for it, so it must not wait long. A set-up already sent is always awaited.
 */
const PREPARE_WAIT_MS = 1000;
/**
 * A prepared consumer older than this is recreated instead: its `pending`, which the runner
 * reports caught up against, counts only what was waiting when the leaver made it, so after a
 * fleet stopped for long it would say caught up long before it is. A handoff binds it within
 * a second; wall clocks of two workers may differ by a few.
 */
const PREPARED_MAX_AGE_MS = 60_000;

export interface PartitionRunnerDeps<S, E, O = never> {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly names: ResourceNames;
  readonly partition: number;
  /** Runs the partition consumer's set-up (the worker's limiter; see PartitionConsumerDeps). */
  readonly consumerSetup?: <T>(create: () => Promise<T>) => Promise<T>;
  readonly aggregator: Aggregator<S, E, O>;
  readonly decode: EntryDecoder<E>;
  readonly outputs?: OutputSink<O>;
  readonly timers?: TimerHost<E>;
  readonly customers: CustomerStore<S>;
  readonly watermarks: WatermarkStore;
  readonly deadLetters: DeadLetterSink;
  /** Renders a customer's state for `contents` questions. */
  readonly render: (snapshot: CustomerSnapshot<S>) => ContentsAnswer;
  readonly settings: PartitionRunnerSettings;
  readonly log: Logger;
  /** Called once, when the runner has applied everything that was in the log when it started. */
  readonly onCaughtUp?: (report: CatchUpReport) => void;
}

export interface RunnerStats {
  readonly applied: number;
  readonly skipped: number;
  readonly deadLettered: number;
  readonly checkpoints: number;
  readonly replayed: number;
  readonly outputs: number;
  readonly timersFired: number;
  /** Customers in memory now. */
  readonly resident: number;
  /** Customers of the partition with an open timer (resident or not). */
  readonly openTimers: number;
  /** Quarantined customers known to the runner (a gauge). */
  readonly quarantined: number;
}

export interface QuarantinedCustomer extends Quarantine {
  readonly partition: number;
  readonly customerId: string;
}

export type PartitionState =
  'idle' | 'starting' | 'recovering' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface CatchUpReport {
  readonly partition: number;
  /** Entries applied to get back to where the log stood at start (0 after a graceful handoff). */
  readonly replayed: number;
  readonly durationMs: number;
}

export interface PartitionReport {
  readonly partition: number;
  readonly state: 'stopped' | 'failed';
  /** Watermark written last: everything at or below it is in KV. */
  readonly watermark: number;
  readonly applied: number;
  /** Entries skipped because they were at or below the customer's lastSeq (redeliveries). */
  readonly skipped: number;
  readonly deadLettered: number;
  readonly checkpoints: number;
  readonly replayed: number;
  /** True when the runner stopped itself because it must start over (a gap in delivery). */
  readonly restart: boolean;
  readonly error?: OrderFleetError | Error;
}

/** Entries handled per loop turn: big enough to pipeline KV loads, small enough to stay fair. */
const BATCH = 500;
/**
 * When a runner scans which customers are stored (see #stored): at its start when the backlog
 * is at least this long, or once this many reads found no stored customer. The scan costs a
 * pass over the partition's keys, and creating its consumer makes the server count matches over
 * the whole state bucket: measured, scanning as each partition caught up slowed a 100k-customer
 * handoff by half and 128 partitions catching up by more. So only a long catch-up or a runner
 * that keeps meeting new customers pays for it, once.
 */
const SCAN_STORED_AT_START_BACKLOG = 2 * BATCH;
const SCAN_STORED_AFTER_MISSES = 256;
/** The stored-customer set is given up above max(this, 4 × the partition's memory share). */
const MIN_STORED_LIMIT = 10_000;

/**
 * Runs one partition: load watermark → (re)create the partition's durable consumer at W + 1 →
 * decode, validate, apply in stream order → checkpoint. `start()` and `stop()` are the seam the
 * fleet uses to move partitions between workers.
 *
 * Ordering that makes it correct:
 * - Entries are applied strictly in delivery order; an entry at or below the customer's `lastSeq`
 *   is skipped, so replaying any suffix of the log never applies anything twice.
 * - A checkpoint writes every dirty customer (conditional on its revision), then the watermark
 *   (conditional too), and only then acknowledges. The consumer uses AckAll, so acking the last
 *   checkpointed message acks everything below it; the consumer's pending counts therefore mean
 *   "not yet checkpointed", which is what lag-based autoscaling wants.
 * - A gap in the consumer's delivery sequence (a message lost in flight) would let a later entry
 *   overtake an earlier one of the same customer, so the runner stops and restarts from its
 *   watermark rather than apply past a hole.
 */
export class PartitionRunner<S, E, O = never> {
  readonly partition: number;
  #state: PartitionState = 'idle';
  readonly #deps: PartitionRunnerDeps<S, E, O>;
  readonly #checkpointRules: CheckpointRules;
  readonly #log: Logger;

  /** Customers in memory, in recency order, and which of them have unwritten changes. */
  readonly #resident = new ResidentSet<S>();
  readonly #quarantined = new Map<string, Quarantine>();
  readonly #queue: JsMsg[] = [];
  #wake: (() => void) | undefined;

  readonly #consumer: PartitionConsumer;
  /** Aborted when a stop's deadline passes: publishes under way give up instead of retrying. */
  readonly #abort = new AbortController();
  readonly #queries: QueryResponder<S>;
  #loop: Promise<PartitionReport> | undefined;
  #intakeStopped = false;
  #restart = false;

  #watermark: Watermark | undefined;
  #watermarkRevision = 0;
  /** Highest stream sequence applied (or skipped, or dead-lettered) in order. */
  #appliedSeq = 0;
  /** Last message handled; acking it (AckAll) acks everything below. */
  #lastMsg: JsMsg | undefined;
  #expectedDelivery = 1;
  #sinceCheckpoint = 0;
  #lastCheckpointAt = Date.now();
  /** When the last batch was handled: the idle rule of the checkpoint policy counts from it. */
  #lastActivityAt = Date.now();

  #backlog = 0;
  #handledBacklog = 0;
  /** True while re-applying entries a crashed runner may already have applied. */
  #replaying = false;
  #caughtUp = false;
  #fenceError: OrderFleetError | undefined;
  #startedAt = 0;
  /**
   * Rebuild generation this runner is carrying out (`order-fleet rebuild`): it started from the
   * beginning of the log with every customer empty, and records the generation in the watermark
   * once caught up. Customers already rebuilt by this runner (they may be evicted and reloaded).
   */
  #rebuild: number | undefined;
  readonly #rebuilt = new Set<string>();
  /** Customers known to have no stored state need no KV read (see stored-customers.ts). */
  readonly #stored = new StoredCustomers({
    scanAfterMisses: SCAN_STORED_AFTER_MISSES,
    limit: () => this.#storedLimit(),
  });
  #storedScan: Promise<void> | undefined;
  /**
   * A long catch-up's one read of the partition's stored customers (see #preloadStored). Never
   * rejects: it settles with the terminal failure intake must rethrow, if any.
   */
  #preload: Promise<OrderFleetError | undefined> | undefined;
  /** The preload read (and admitted) every stored customer of the partition. */
  #preloaded = false;
  readonly #storedScanAbort = new AbortController();
  /** Entries replaced by a redriven copy (`dlq redrive`): never applied, the copy is. */
  #superseded = new Set<number>();
  #stats = {
    applied: 0,
    skipped: 0,
    deadLettered: 0,
    checkpoints: 0,
    replayed: 0,
    outputs: 0,
    timersFired: 0,
  };

  // Durable timers (what is open, due, firing, to be indexed): pure bookkeeping, see its file.
  readonly #timers = new PartitionTimers<E>();
  #indexLoaded: Promise<void> = Promise.resolve();
  #indexReady = false;
  /** `ts.<p>.*` keys seen at start: the final snapshot deletes the ones it does not rewrite. */
  #snapshotChunkKeys = 0;
  /** Where this runner's open timers came from at start (for the log and the bench). */
  #timersFrom: 'snapshot' | 'index' | 'state' | 'none' = 'none';
  /** The deployment's timer layout as read at this runner's start. */
  #layout: TimerLayout = 'index';
  #tick: NodeJS.Timeout | undefined;
  /** The next owner's consumer being made by a final checkpoint (never rejects). */
  #preparing: Promise<PreparedConsumer | undefined> | undefined;
  /** Outputs being published; a checkpoint waits for all of them before moving the watermark. */
  #pendingOutputs: Promise<void>[] = [];
  /** Last output under way per customer, to keep each customer's outputs in order. */
  readonly #emitChains = new Map<string, Promise<void>>();

  constructor(deps: PartitionRunnerDeps<S, E, O>) {
    this.#deps = deps;
    this.partition = deps.partition;
    this.#checkpointRules = {
      everyEvents: deps.settings.checkpointEveryEvents,
      intervalMs: deps.settings.checkpointIntervalMs,
      idleMs: deps.settings.checkpointIdleMs,
    };
    this.#log = deps.log.child({ partition: deps.partition });
    this.#consumer = new PartitionConsumer({
      js: deps.js,
      jsm: deps.jsm,
      names: deps.names,
      partition: deps.partition,
      checkpointEveryEvents: deps.settings.checkpointEveryEvents,
      checkpointIntervalMs: deps.settings.checkpointIntervalMs,
      ...(deps.consumerSetup === undefined ? {} : { setup: deps.consumerSetup }),
      stillOwner: () => deps.settings.canWrite(),
      log: this.#log,
    });
    this.#queries = new QueryResponder({
      nc: deps.nc,
      names: deps.names,
      partition: deps.partition,
      workerId: deps.settings.workerId,
      canWrite: deps.settings.canWrite,
      // During a replay the state is behind the log: such answers are marked stale.
      caughtUp: () => this.#caughtUp,
      // A customer not in memory is clean: KV holds everything this runner applied for it.
      lookup: async (customerId) =>
        this.#resident.get(customerId)?.snapshot ??
        (await deps.customers.load(deps.partition, customerId)).snapshot,
      render: deps.render,
      log: this.#log,
    });
  }

  get state(): PartitionState {
    return this.#state;
  }

  /** Counters since this runner started, for metrics and reports. */
  get stats(): RunnerStats {
    return {
      ...this.#stats,
      resident: this.#resident.size,
      openTimers: this.#timers.size,
      quarantined: this.#quarantined.size,
    };
  }

  /** Quarantined customers this runner has met (quarantined here, or loaded quarantined). */
  get quarantined(): QuarantinedCustomer[] {
    return [...this.#quarantined].map(([customerId, q]) => ({
      partition: this.partition,
      customerId,
      ...q,
    }));
  }

  /** True once the runner has applied everything that was in the log when it started. */
  get caughtUp(): boolean {
    return this.#caughtUp;
  }

  /** Settles when the runner has stopped or failed. */
  get done(): Promise<PartitionReport> {
    if (this.#loop === undefined) throw new Error('partition runner was never started');
    return this.#loop;
  }

  async start(): Promise<void> {
    if (this.#state !== 'idle')
      throw new Error(`partition ${this.partition} runner already ${this.#state}`);
    this.#startedAt = Date.now();
    this.#transition('starting');
    try {
      await this.#begin();
    } catch (err) {
      // A start that fails half way (NATS timing out) must not leave its consumer subscription
      // pulling: the next runner recreates the durable consumer under the same name, and a
      // leftover subscription would take messages from it.
      this.#intakeStopped = true;
      await this.#release({ flush: false }); // nothing was acked yet
      this.#transition('failed', { err: describeError(err) });
      throw err;
    }
  }

  async #begin(): Promise<void> {
    const { watermarks, settings } = this.#deps;
    const beganAt = performance.now();

    // Fence before anything else: bumping the epoch with a conditional write makes the previous
    // runner's next watermark write fail, so at most one runner can advance this partition.
    const [loaded, layout] = await Promise.all([
      watermarks.load(this.partition),
      this.#deps.timers?.layout?.() ?? Promise.resolve<TimerLayout>('index'),
    ]);
    this.#layout = layout;
    if (layout === 'state') this.#timers.stopIndexing();
    const previous = loaded.watermark;
    // A pending rebuild request: start from the beginning of the log, discarding stored state.
    const requested = await watermarks.rebuildRequested(this.partition);
    if (requested > previous.rebuild) this.#rebuild = requested;
    const from = this.#rebuild === undefined ? previous.seq : 0;
    // A consumer left for us by a clean leaver, named by the watermark we fence (a crash leaves
    // none: the watermark we write now has no such field, nor does any after it).
    const { preparedConsumer, ...kept } = previous;
    const prepared =
      previous.clean &&
      this.#rebuild === undefined &&
      preparedConsumer?.startSeq === from + 1 &&
      Date.now() - Date.parse(previous.at) < PREPARED_MAX_AGE_MS
        ? preparedConsumer
        : undefined;
    const fenced: Watermark = {
      ...kept,
      epoch: previous.epoch + 1,
      owner: settings.workerId,
      clean: false,
      at: new Date().toISOString(),
    };
    this.#watermarkRevision = await watermarks.save(this.partition, fenced, loaded.revision);
    this.#watermark = fenced;
    this.#appliedSeq = from;

    // Open windows of customers nobody holds in memory are found from the timer index, not by
    // loading every customer. It is read alongside the start, not before it: with 100k open
    // windows reading it takes about a second, which a handoff must not wait for.
    // After a graceful handoff the leaver's final checkpoint carried them all in a snapshot
    // tagged with the clean watermark we just read: a handful of reads instead of one per window.
    // After a crash on the state layout the open timers are in the customers' snapshots, which a
    // long catch-up preloads anyway (below): decided once the backlog is known, so the partition's
    // snapshots are read once, not twice.
    const timersFromPreload =
      this.#layout === 'state' && !previous.clean && this.#rebuild === undefined;
    if (!timersFromPreload) {
      this.#indexLoaded = this.#loadTimerIndex(
        previous.clean ? { epoch: previous.epoch, seq: previous.seq } : undefined,
      );
      this.#indexLoaded.catch(() => undefined); // awaited (and rethrown) by the first checkpoint
    }
    // The superseded set is read alongside the consumer's creation: nothing is handled before
    // both are done (the loop starts below), and a handoff waits for the slower one only.
    const fencedAt = performance.now();
    [this.#superseded, this.#backlog] = await Promise.all([
      watermarks.superseded(this.partition),
      this.#recreateConsumer(from + 1, prepared),
    ]);
    const consumerAt = performance.now();
    if (this.#rebuild !== undefined) this.#stored.forget();
    // A long catch-up meets many customers: worth the scan at once (a handoff's backlog is short).
    else if (this.#backlog >= SCAN_STORED_AT_START_BACKLOG) this.#preloadStored();
    if (timersFromPreload) {
      this.#indexLoaded = this.#loadTimerIndex(undefined);
      this.#indexLoaded.catch(() => undefined); // as above
    }
    // After a graceful stop the previous owner applied nothing beyond W, so whatever is pending
    // is new. After a crash, the pending entries include work that must be redone: a replay.
    // A rebuild re-applies everything: summaries it meets again must not be sent twice.
    this.#replaying = !previous.clean || this.#rebuild !== undefined;
    this.#log.info(
      {
        watermark: previous.seq,
        epoch: fenced.epoch,
        previousOwner: previous.owner,
        cleanHandoff: previous.clean,
        backlog: this.#backlog,
        ...(this.#rebuild === undefined ? {} : { rebuild: this.#rebuild }),
        // Where a slow start went: reading and fencing the watermark, then the consumer.
        fenceMs: Math.round(fencedAt - beganAt),
        consumerMs: Math.round(consumerAt - fencedAt),
        consumer: prepared === undefined ? 'created' : 'prepared by the previous owner',
      },
      'partition starting',
    );
    // Answer questions before reporting caught up: 'worker ready' must mean it can answer.
    this.#queries.start();
    this.#transition(this.#backlog > 0 ? 'recovering' : 'running');
    if (this.#backlog === 0) this.#markCaughtUp();
    this.#loop = this.#run();
    if (this.#deps.timers !== undefined) {
      this.#tick = setInterval(() => this.#fireDue(), this.#deps.timers.tickMs);
      this.#tick.unref();
    }
  }

  /**
   * Stop intake, apply what was already received, write a final clean checkpoint, release the
   * consumer. Idempotent: later calls return the same report.
   */
  async stop(signal?: AbortSignal): Promise<PartitionReport> {
    if (this.#loop === undefined) throw new Error('partition runner was never started');
    // The deadline of the stop bounds the retries of the last publishes (dead letters, summaries).
    if (signal !== undefined) {
      if (signal.aborted) this.#abort.abort();
      else signal.addEventListener('abort', () => this.#abort.abort(), { once: true });
    }
    this.#stopIntake();
    return this.#loop;
  }

  #stopIntake(): void {
    if (this.#intakeStopped) return;
    this.#intakeStopped = true;
    if (this.#state === 'recovering' || this.#state === 'running') this.#transition('stopping');
    // stop() unsubscribes at once; messages already in our queue are still applied. Anything the
    // server sent after this is unacked and will be delivered to the next runner.
    this.#consumer.stop();
    this.#wake?.();
  }

  /** Returns how many entries were waiting in the log when the consumer was created. */
  async #recreateConsumer(startSeq: number, prepared?: PreparedConsumer): Promise<number> {
    this.#expectedDelivery = 1;
    return this.#consumer.open(
      startSeq,
      (msg) => {
        this.#queue.push(msg);
        this.#wake?.();
      },
      {
        // A deleted consumer means another runner took the partition: stop at once.
        onDeleted: () => {
          if (this.#intakeStopped) return;
          this.#log.warn('partition consumer deleted by another runner');
          this.#fenceError = new OrderFleetError(
            ErrorCode.Fenced,
            `consumer of partition ${this.partition} was deleted`,
          );
          this.#stopIntake();
        },
        // Everything received is applied and checkpointed as usual; the restart recreates the
        // consumer from the watermark.
        onStalled: (why) => {
          if (this.#intakeStopped) return;
          this.#log.warn({ why }, 'partition consumer stalled, restarting partition');
          this.#restart = true;
          this.#stopIntake();
        },
      },
      prepared,
    );
  }

  async #run(): Promise<PartitionReport> {
    let failure: Error | undefined;
    try {
      while (!this.#intakeStopped || this.#queue.length > 0) {
        if (this.#fenceError !== undefined) throw this.#fenceError;
        if (this.#timers.staleSize > 0) await this.#reloadStale();
        if (this.#queue.length === 0) {
          await this.#idle();
        } else {
          await this.#process(this.#queue.splice(0, BATCH));
          this.#lastActivityAt = Date.now();
        }
        if (this.#checkpointDue()) await this.#checkpoint(false);
        await this.#passivate();
      }
      if (this.#fenceError !== undefined) throw this.#fenceError;
      // Final checkpoint, marked clean: the next owner knows nothing beyond W was applied.
      await this.#checkpoint(true);
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
      this.#stopIntake();
    }
    await this.#release();
    const state = failure === undefined ? 'stopped' : 'failed';
    this.#transition(
      state,
      failure === undefined
        ? {}
        : {
            err: describeError(failure),
            code: isOrderFleetError(failure) ? failure.code : undefined,
          },
    );
    const report: PartitionReport = {
      partition: this.partition,
      state,
      watermark: this.#watermark?.seq ?? 0,
      ...this.#stats,
      restart: this.#restart,
      ...(failure === undefined ? {} : { error: failure }),
    };
    const { partition: _partition, error: _error, ...fields } = report; // both already in the log context / state
    this.#log.info(fields, 'partition stopped');
    return report;
  }

  async #idle(): Promise<void> {
    const wait = idleWaitMs(this.#checkpointRules, this.#checkpointView());
    // A plain timer and resolver: an AbortController per wait cost a DOMException (with a stack)
    // every time work arrived, which profiles showed at up to a tenth of the busy time.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, wait);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  async #process(batch: JsMsg[]): Promise<void> {
    const plan = planIntake(
      batch.map((m) => ({ seq: m.seq, deliverySequence: m.info.deliverySequence })),
      { appliedSeq: this.#appliedSeq, expectedDelivery: this.#expectedDelivery },
      this.#superseded,
    );
    this.#expectedDelivery = plan.expectedDelivery;
    if (plan.gap !== undefined) {
      this.#log.warn(plan.gap, 'delivery gap, restarting partition');
      this.#restart = true;
      this.#queue.length = 0;
      batch = batch.slice(0, plan.kinds.length);
      this.#stopIntake();
    }
    const decoded: (DecodedEntry<E> | undefined)[] = [];
    const toLoad = new Set<string>();
    for (const [i, msg] of batch.entries()) {
      if (plan.kinds[i] !== 'handle') {
        decoded.push(undefined);
        continue;
      }
      try {
        const entry = this.#deps.decode(msg.subject, msg.data);
        decoded.push(entry);
        if (!this.#resident.has(entry.customerId)) toLoad.add(entry.customerId);
      } catch (err) {
        if (!isValidationError(err)) throw err;
        decoded.push(undefined);
        await this.#deadLetter(msg, err);
      }
    }
    await this.#loadAll(toLoad);

    const { aggregator } = this.#deps;
    for (const [i, msg] of batch.entries()) {
      const entry = decoded[i];
      if (msg.seq <= this.#appliedSeq) continue;
      this.#appliedSeq = msg.seq;
      this.#lastMsg = msg;
      this.#sinceCheckpoint++;
      this.#noteCatchUp(msg);
      if (entry === undefined) continue; // dead-lettered above
      const resident = this.#resident.touch(entry.customerId);
      const decision = decideEntry(msg.seq, resident.snapshot);
      if (decision === 'skip') {
        this.#stats.skipped++;
        continue;
      }
      const quarantine = resident.snapshot.quarantine;
      if (decision === 'quarantined' && quarantine !== undefined) {
        // Filed one by one, each with its own reason, until the quarantine is lifted.
        await this.#deadLetter(
          msg,
          new OrderFleetError(
            ErrorCode.CustomerQuarantined,
            `customer ${entry.customerId} is quarantined since entry ${quarantine.seq}`,
            { details: { customerId: entry.customerId, since: quarantine.seq } },
          ),
        );
        resident.snapshot = { ...resident.snapshot, lastSeq: msg.seq };
        this.#resident.markDirty(entry.customerId);
        continue;
      }
      // One log entry for apply and outputs alike (this loop runs for every applied entry).
      const applied = {
        seq: msg.seq,
        timeMs: Math.floor(msg.info.timestampNanos / 1e6),
        payload: entry.payload,
      };
      let state: S;
      try {
        state = aggregator.apply(resident.snapshot.state, applied);
      } catch (err) {
        // A bug in an aggregator must neither wedge the partition nor be skipped silently (the
        // state would stop being the fold of the log): file the entry, quarantine the customer.
        await this.#quarantine(resident, msg, err);
        continue;
      }
      const before = resident.snapshot.state;
      resident.snapshot = { customerId: entry.customerId, lastSeq: msg.seq, state };
      this.#resident.markDirty(entry.customerId);
      this.#stats.applied++;
      for (const output of aggregator.outputs?.(entry.customerId, before, state, applied) ?? [])
        this.#emit(entry.customerId, output);
      this.#syncTimer(entry.customerId, state);
    }
  }

  async #quarantine(resident: Resident<S>, msg: JsMsg, err: unknown): Promise<void> {
    const customerId = resident.snapshot.customerId;
    const failure = new OrderFleetError(
      ErrorCode.ApplyFailed,
      `apply failed for customer ${customerId} at entry ${msg.seq}: ${describeError(err)}`,
      { cause: err, details: { customerId, seq: msg.seq } },
    );
    await this.#deadLetter(msg, failure);
    const quarantine = { seq: msg.seq, code: failure.code, reason: describeError(err) };
    resident.snapshot = { ...resident.snapshot, lastSeq: msg.seq, quarantine };
    this.#resident.markDirty(customerId);
    this.#quarantined.set(customerId, quarantine);
    // A quarantined customer waits for nothing: its timer (and index entry) go.
    this.#timers.drop(customerId);
    this.#log.error(
      { customerId, seq: msg.seq, reason: quarantine.reason },
      'customer quarantined',
    );
  }

  async #loadTimerIndex(clean: TimerSnapshotTag | undefined): Promise<void> {
    const timers = this.#deps.timers;
    if (timers === undefined) return;
    if (this.#rebuild !== undefined) {
      // The index is rebuilt from the log too: every old entry is deleted at the next checkpoint
      // unless the replay has given (or gives) its customer a timer. (None is kept under `state`.)
      if (this.#layout === 'index')
        for (const customerId of (await timers.index.load(this.partition)).keys()) {
          this.#timers.forgetIndexed(customerId);
        }
      // The old snapshot's chunks are cleaned up by the next clean final checkpoint.
      if (timers.snapshot !== undefined)
        this.#snapshotChunkKeys = (
          await timers.snapshot.load(this.partition, { epoch: -1, seq: -1 })
        ).chunkKeys;
      this.#indexReady = true;
      return;
    }
    const startedAt = Date.now();
    let found: Map<string, PendingTimer<E>> | undefined;
    if (timers.snapshot !== undefined) {
      // Read even after a crash: the chunk count tells the final checkpoint what to clean up.
      const tag = clean ?? { epoch: -1, seq: -1 };
      const { timers: fromSnapshot, chunkKeys } = await timers.snapshot.load(this.partition, tag);
      this.#snapshotChunkKeys = chunkKeys;
      if (clean !== undefined) found = fromSnapshot;
    }
    if (found !== undefined) this.#timersFrom = 'snapshot';
    else if (this.#layout === 'index') {
      this.#timersFrom = 'index';
      found = await timers.index.load(this.partition);
    } else {
      // No index: the customers' snapshots hold their windows. One pass over the partition's
      // snapshots, keeping only the open timers; everything at or below W is in them (invariant
      // 2), and what lies beyond is replayed, so they are as complete as the index would be.
      this.#timersFrom = 'state';
      // A preload that read every stored customer admitted each with its timer: nothing to add.
      if (this.#preload !== undefined && (await this.#preload) === undefined && this.#preloaded)
        found = new Map();
      else found = await this.#openTimersFromState();
      if (found === undefined) return; // stopping
    }
    for (const [customerId, timer] of found) {
      // Entries applied meanwhile are newer than the index: a customer already touched by this
      // runner has its timer (or none) from its state.
      if (this.#resident.has(customerId) || this.#timers.has(customerId)) continue;
      this.#timers.restore(customerId, timer);
    }
    this.#indexReady = true;
    this.#log.debug(
      { from: this.#timersFrom, timers: this.#timers.size, durationMs: Date.now() - startedAt },
      'open timers loaded',
    );
  }

  async #openTimersFromState(): Promise<Map<string, PendingTimer<E>> | undefined> {
    const { aggregator } = this.#deps;
    if (aggregator.timer === undefined) return new Map();
    return this.#deps.customers.pickPartition(
      this.partition,
      (snapshot) =>
        snapshot.quarantine === undefined
          ? aggregator.timer?.(snapshot.customerId, snapshot.state)
          : undefined,
      {
        signal: this.#storedScanAbort.signal,
        unreadable: (customerId, err) =>
          this.#log.warn(
            { customerId, code: errorCode(err), err: describeError(err) },
            'unreadable customer state skipped by the timer scan (the customer fails its runner when met)',
          ),
      },
    );
  }

  #emit(customerId: string, output: O): void {
    const sink = this.#deps.outputs;
    if (sink === undefined) return;
    const replay = this.#replaying && !this.#caughtUp;
    // One customer's outputs are stored in the order they were made (a later summary must never
    // be stored while an earlier one is still being retried: the replay check relies on it).
    const previous = this.#emitChains.get(customerId) ?? Promise.resolve();
    const pending = previous.then(() =>
      sink.emit(this.partition, output, replay, this.#abort.signal),
    );
    this.#emitChains.set(customerId, pending);
    this.#stats.outputs++;
    // Awaited (and any failure rethrown) by the next checkpoint; this only keeps an early
    // rejection from being reported as unhandled in the meantime.
    pending.catch(() => undefined);
    this.#pendingOutputs.push(pending);
  }

  /** Recomputes a customer's timer after its state changed. */
  #syncTimer(customerId: string, state: S): void {
    if (this.#deps.timers === undefined) return;
    this.#timers.sync(customerId, this.#deps.aggregator.timer?.(customerId, state));
  }

  /**
   * Appends an entry to the log for every timer now due. The timer takes effect when that entry
   * is applied, in log order; until then it stays in place (an append that fails is retried).
   */
  #fireDue(): void {
    const timers = this.#deps.timers;
    // Not before catching up: during a replay the timers from the index may be stale, and the
    // log itself will close the windows that were already closed.
    if (
      timers === undefined ||
      !this.#caughtUp ||
      !this.#indexReady ||
      this.#intakeStopped ||
      !this.#deps.settings.canWrite()
    )
      return;
    for (const { customerId, timer } of this.#timers.due(Date.now())) {
      this.#stats.timersFired++;
      timers.append(this.partition, customerId, timer).then(
        (outcome) => {
          // An entry still ahead of us closes the window when it is applied, as usual.
          if (outcome.kind === 'appended' || outcome.seq > this.#appliedSeq) return;
          this.#timers.appendedBehind(customerId, timer.id);
          this.#wake?.();
        },
        (err: unknown) => {
          this.#log.warn(
            { customerId, timer: timer.id, err: describeError(err) },
            'timer append failed, retrying',
          );
          this.#timers.appendFailed(customerId, timer.id, Date.now() + 1000);
        },
      );
    }
  }

  /** A due timer found behind the runner: each customer's state decides it instead. */
  async #reloadStale(): Promise<void> {
    const stale = this.#timers.takeStale();
    const toLoad = new Set<string>();
    for (const id of stale.keys()) {
      const resident = this.#resident.get(id);
      if (resident === undefined) toLoad.add(id);
      else if (resident.snapshot.quarantine === undefined)
        this.#syncTimer(id, resident.snapshot.state);
    }
    await this.#loadAll(toLoad); // syncs the timer of each customer it loads
    for (const [customerId, timerId] of stale) {
      if (this.#timers.get(customerId)?.id !== timerId) continue;
      // The state still holds a timer whose entry is behind us: it can only come back
      // through a replay. Look again later rather than spin.
      this.#log.warn({ customerId, timer: timerId }, 'due timer already in the log; rechecking');
      this.#timers.recheck(customerId, Date.now() + 5000);
    }
  }

  async #deadLetter(msg: JsMsg, err: unknown): Promise<void> {
    await this.#deps.deadLetters.file(this.partition, msg, err, this.#abort.signal);
    this.#stats.deadLettered++;
  }

  #noteCatchUp(msg: JsMsg): void {
    if (this.#caughtUp) return;
    if (this.#replaying) this.#stats.replayed++;
    this.#handledBacklog++;
    // Caught up when nothing is pending, or when everything that was in the log at start has
    // been handled (under steady load `pending` may never reach zero).
    if (msg.info.pending === 0 || this.#handledBacklog >= this.#backlog) this.#markCaughtUp();
  }

  #markCaughtUp(): void {
    this.#caughtUp = true;
    if (this.#state === 'recovering') this.#transition('running');
    const report = {
      partition: this.partition,
      replayed: this.#stats.replayed,
      durationMs: Date.now() - this.#startedAt,
    };
    this.#log.info(
      { replayed: report.replayed, durationMs: report.durationMs },
      'partition caught up',
    );
    this.#deps.onCaughtUp?.(report);
  }

  /** Loads customers not in memory, with bounded concurrency. */
  async #loadAll(wanted: Set<string>): Promise<void> {
    if (wanted.size === 0) return;
    let ids = wanted;
    if (this.#preload !== undefined) {
      // One pass over the partition is under way: it brings these too, or tells they are absent.
      const failure = await this.#preload;
      if (failure !== undefined) throw failure;
      // Done and fine: later loads need neither the wait nor the filtering below.
      this.#preload = undefined;
      ids = new Set([...wanted].filter((id) => !this.#resident.has(id)));
      if (ids.size === 0) return;
    }
    const limit = pLimit(this.#deps.settings.checkpointConcurrency);
    const { customers } = this.#deps;
    const loaded = await Promise.all(
      [...ids].map((id) =>
        limit(async () => ({
          id,
          // Rebuilding: what is stored is discarded (only its revision, for the conditional
          // write), unless this runner wrote it.
          stored:
            this.#rebuild !== undefined && !this.#rebuilt.has(id)
              ? {
                  snapshot: customers.empty(id),
                  revision: await customers.revision(this.partition, id),
                }
              : this.#stored.absent(id)
                ? { snapshot: customers.empty(id), revision: 0 }
                : await customers.load(this.partition, id),
        })),
      ),
    );
    const misses = loaded.filter(({ stored }) => stored.revision === 0).length;
    if (this.#stored.loaded(ids, misses)) this.#scanStored();
    for (const { id, stored } of loaded) {
      if (this.#resident.has(id)) continue;
      if (this.#rebuild !== undefined) this.#rebuilt.add(id);
      this.#admit(id, stored);
    }
  }

  /** A customer read from KV joins the resident set (it is clean: KV holds what it holds). */
  #admit(id: string, stored: StoredSnapshot<S>): void {
    this.#resident.add(id, { snapshot: stored.snapshot, revision: stored.revision });
    if (stored.snapshot.quarantine !== undefined) {
      this.#quarantined.set(id, stored.snapshot.quarantine);
      this.#timers.drop(id);
      return;
    }
    // Repairs the index if a crash came between a state write and its index write.
    this.#syncTimer(id, stored.snapshot.state);
  }

  /**
   * A long catch-up (a replay after a crash) meets most of the partition's customers: read them
   * all in one pass instead of one request each as they come up. Only when they fit in the
   * partition's share of memory; otherwise (or if the pass fails) the keys-only scan, and a
   * read per customer met, as before. Intake waits for the pass before its first load, so
   * nothing is read twice; a customer already in memory keeps what it has (it is newer).
   */
  #preloadStored(): void {
    const { customers } = this.#deps;
    const startedAt = Date.now();
    this.#preload = (async (): Promise<OrderFleetError | undefined> => {
      const all = await customers.loadPartition(this.partition, {
        limit: this.#deps.settings.capacity(),
        signal: this.#storedScanAbort.signal,
      });
      if (all === undefined) {
        this.#scanStored();
        return undefined;
      }
      for (const [id, stored] of all) if (!this.#resident.has(id)) this.#admit(id, stored);
      this.#stored.scanned(new Set(all.keys()));
      this.#preloaded = true;
      this.#log.debug(
        { customers: all.size, durationMs: Date.now() - startedAt },
        'stored customers preloaded',
      );
      return undefined;
    })().catch((err: unknown) => {
      // A snapshot that cannot be read is the same terminal failure the per-customer load
      // reports: handed to intake, which parks the partition. Anything else only cost the
      // optimisation: customers are read as they are met.
      if (isOrderFleetError(err) && err.code === ErrorCode.StateCorrupt) return err;
      this.#log.warn({ err: describeError(err) }, 'preload of stored customers failed');
      this.#scanStored();
      return undefined;
    });
  }

  #storedLimit(): number {
    return Math.max(MIN_STORED_LIMIT, 4 * this.#deps.settings.capacity());
  }

  /** Starts the one scan of stored customers (idempotent); owned: awaited by #release. */
  #scanStored(): void {
    if (this.#storedScan !== undefined || !this.#stored.tracking) return;
    const { customers } = this.#deps;
    this.#storedScan = (async () => {
      const scanned = await customers.storedIds(this.partition, {
        limit: this.#storedLimit(),
        signal: this.#storedScanAbort.signal,
      });
      if (scanned === undefined && this.#stored.tracking && !this.#storedScanAbort.signal.aborted)
        this.#log.info({ limit: this.#storedLimit() }, 'too many stored customers to track');
      this.#stored.scanned(scanned);
    })().catch((err: unknown) => {
      // Only an optimisation: without it every first touch reads KV, as before.
      this.#stored.forget();
      this.#log.warn({ err: describeError(err) }, 'scan of stored customers failed');
    });
  }

  #checkpointDue(): boolean {
    return checkpointDue(this.#checkpointRules, this.#checkpointView());
  }

  #checkpointView(): CheckpointView {
    return {
      now: Date.now(),
      lastCheckpointAt: this.#lastCheckpointAt,
      lastActivityAt: this.#lastActivityAt,
      sinceCheckpoint: this.#sinceCheckpoint,
      unacked: this.#lastMsg !== undefined,
      timersDirty: this.#timers.dirtySize > 0,
      queued: this.#queue.length > 0,
      rebuildPending: this.#rebuildPending(),
    };
  }

  /** A rebuild is complete once caught up; until the watermark records it, it is pending. */
  #rebuildPending(): boolean {
    return (
      this.#rebuild !== undefined &&
      this.#caughtUp &&
      (this.#watermark?.rebuild ?? 0) < this.#rebuild
    );
  }

  /**
   * Write dirty customers, then the watermark, then ack. If we crash between the two, the
   * watermark is behind the customers; replay re-reads those entries and skips them by lastSeq.
   * The reverse order could lose entries, so it is never used.
   */
  async #checkpoint(final: boolean): Promise<void> {
    const { customers, watermarks, settings } = this.#deps;
    const watermark = this.#watermark;
    if (watermark === undefined) return;
    if (!settings.canWrite()) {
      // Our lease may already belong to someone else: writing now could only be rejected or,
      // worse, race the new owner. The new owner replays from the last watermark instead.
      throw new OrderFleetError(
        ErrorCode.Fenced,
        `partition ${this.partition}: lease lost, not writing`,
      );
    }
    // A rebuild is complete once caught up: that is recorded in the watermark, even when nothing
    // else changed.
    const rebuildDone = this.#rebuildPending();
    const nothingNew =
      this.#resident.dirtySize === 0 &&
      this.#timers.dirtySize === 0 &&
      this.#appliedSeq === watermark.seq &&
      !rebuildDone;
    if (nothingNew && !final) {
      this.#lastCheckpointAt = Date.now();
      return;
    }
    await this.#indexLoaded;
    // A clean stop hands the next owner a consumer made alongside the writes below (see
    // PartitionConsumer.prepareNext). Delivery has ended and everything received is applied, so
    // the entry after #appliedSeq is the first the next owner needs. Only an advantage: if it
    // fails, the watermark does not name it and the next owner creates its own.
    let writesDoneAt: number | undefined = undefined;
    const preparing = final
      ? this.#prepareNextConsumer(
          this.#appliedSeq + 1,
          () => writesDoneAt !== undefined && performance.now() - writesDoneAt > PREPARE_WAIT_MS,
        )
      : undefined;
    // Owned by the runner: a checkpoint that fails below leaves it to #release to await.
    this.#preparing = preparing;
    // Outputs first: a summary must be stored before the watermark passes the entry that made it.
    const outputs = this.#pendingOutputs;
    this.#pendingOutputs = [];
    const failed = (await Promise.allSettled(outputs)).find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    this.#emitChains.clear();
    const limit = pLimit(settings.checkpointConcurrency);
    const dirty = this.#resident.dirtyIds();
    await Promise.all(
      dirty.map((id) =>
        limit(async () => {
          // Checked before every write, not once per checkpoint: a process paused in the middle
          // of a checkpoint must not go on writing after its lease may have moved.
          if (!settings.canWrite()) {
            throw new OrderFleetError(
              ErrorCode.Fenced,
              `partition ${this.partition}: lease lost, not writing`,
            );
          }
          const resident = this.#resident.get(id);
          if (resident === undefined) return;
          resident.revision = await customers.save(
            this.partition,
            resident.snapshot,
            resident.revision,
          );
          this.#resident.markClean(id);
        }),
      ),
    );
    // Timer index after the customers: their writes are conditional, so a runner that lost the
    // partition has usually failed by now. The index writes are not, hence the second check.
    const timers = this.#deps.timers;
    if (timers !== undefined && this.#timers.dirtySize > 0) {
      if (!settings.canWrite()) {
        throw new OrderFleetError(
          ErrorCode.Fenced,
          `partition ${this.partition}: lease lost, not writing`,
        );
      }
      const changes = this.#timers.takeDirty();
      await Promise.all(
        changes.map(([id, timer]) => limit(() => timers.index.save(this.partition, id, timer))),
      );
    }
    // A clean stop also writes every open timer in a few entries tagged with the watermark that
    // follows: the next owner uses them only if that very watermark is what it reads (clean, same
    // epoch and seq), so a crash or a failed write below leaves it on the index, never wrong.
    if (final && timers?.snapshot !== undefined) {
      if (!settings.canWrite()) {
        throw new OrderFleetError(
          ErrorCode.Fenced,
          `partition ${this.partition}: lease lost, not writing`,
        );
      }
      this.#snapshotChunkKeys = await timers.snapshot.save(
        this.partition,
        { epoch: watermark.epoch, seq: this.#appliedSeq },
        this.#timers.all(),
        this.#snapshotChunkKeys,
      );
    }
    writesDoneAt = performance.now();
    const preparedConsumer = await preparing;
    const next: Watermark = {
      ...watermark,
      seq: this.#appliedSeq,
      clean: final,
      at: new Date().toISOString(),
      rebuild: rebuildDone ? (this.#rebuild ?? watermark.rebuild) : watermark.rebuild,
      ...(preparedConsumer === undefined ? {} : { preparedConsumer }),
    };
    this.#watermarkRevision = await watermarks.save(this.partition, next, this.#watermarkRevision);
    this.#watermark = next;
    // Not after a prepared consumer: ours is gone, and the ack's subject names the new one.
    if (preparing === undefined) this.#lastMsg?.ack();
    this.#lastMsg = undefined;
    this.#sinceCheckpoint = 0;
    this.#lastCheckpointAt = Date.now();
    this.#stats.checkpoints++;
    this.#log.debug({ watermark: next.seq, customers: dirty.length, final }, 'checkpoint');
    if (rebuildDone)
      this.#log.info({ rebuild: next.rebuild, watermark: next.seq }, 'partition rebuilt');
  }

  /** Never rejects: a failure only means the next owner creates its own consumer. */
  async #prepareNextConsumer(
    startSeq: number,
    abandoned: () => boolean,
  ): Promise<PreparedConsumer | undefined> {
    try {
      const pending = await this.#consumer.prepareNext(startSeq, abandoned);
      return { startSeq, pending };
    } catch (err) {
      // Not waited for (queued behind other partitions' set-ups): expected at a large shutdown.
      const level = isOrderFleetError(err) && err.code === ErrorCode.Aborted ? 'debug' : 'warn';
      this.#log[level](
        { code: errorCode(err), err: describeError(err) },
        "next owner's consumer not prepared",
      );
      return undefined;
    }
  }

  /**
   * Bounded memory: when over this partition's share of the cap, checkpoint (so every resident
   * customer is clean) and drop the least recently used. A dirty customer is never dropped: its
   * state would be lost until replay, which is why this is not a plain LRU cache with eviction.
   */
  async #passivate(): Promise<void> {
    // A share of 0 is honoured (a cap below the partition count): everything is evicted after
    // each batch, once checkpointed.
    const capacity = Math.max(0, this.#deps.settings.capacity());
    if (this.#resident.size <= capacity) return;
    if (this.#resident.dirtySize > 0) await this.#checkpoint(false);
    this.#resident.evict(capacity);
  }

  /** Each cleanup step on its own, so one failure does not skip the others. */
  async #release(opts: { readonly flush: boolean } = { flush: true }): Promise<void> {
    clearInterval(this.#tick);
    this.#storedScanAbort.abort();
    await this.#preload; // never rejects: a failure is intake's to report
    await this.#preparing; // never rejects either
    // Never rejects (it logs its own failure); awaited so no read outlives the runner.
    await this.#storedScan;
    try {
      this.#queries.stop();
    } catch (err) {
      this.#log.warn({ err: describeError(err) }, 'query unsubscribe failed');
    }
    try {
      await this.#consumer.close();
    } catch (err) {
      this.#log.warn({ err: describeError(err) }, 'consumer close failed');
    }
    if (!opts.flush) return;
    try {
      // Acks are fire-and-forget; make sure the last one reached the server.
      await this.#deps.nc.flush();
    } catch (err) {
      this.#log.warn({ err: describeError(err) }, 'flush failed');
    }
  }

  #transition(to: PartitionState, fields: Record<string, unknown> = {}): void {
    const from = this.#state;
    this.#state = to;
    this.#log.debug({ from, to, ...fields }, 'partition state');
  }
}
