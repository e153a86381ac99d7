import { KvWatchInclude, type KV } from '@nats-io/kv';
import { z } from 'zod';
import type { JetStreamManager } from '@nats-io/jetstream';
import {
  kvStreamName,
  kvSubjectPrefix,
  MEMBER_KEYS,
  memberKey,
  workerIdOfMemberKey,
} from '../contract/internal-names.js';
import { describeError, errorCode } from '../errors.js';
import { delay } from '../lifecycle/retry.js';
import { LOOP_RESTART, TaskGroup } from '../lifecycle/task-group.js';
import type { Logger } from '../logging/logger.js';
import { TimerLayoutSchema } from '../nats/deployment.js';

/** Every timer layout this version runs. */
const TIMER_LAYOUTS = TimerLayoutSchema.options;

/**
 * Fleet membership in a KV bucket with a bucket-level TTL. Each worker writes `m.<id>` on a
 * heartbeat and deletes it on graceful shutdown. Every worker watches the bucket, so all see a
 * join or a graceful leave at once. A crashed worker's entry simply stops being renewed; NATS 2.9
 * removes it after the TTL without telling watchers, so each watcher also expires members it has
 * not heard from for a TTL, by its own clock.
 *
 * The heartbeat also carries the worker's health (parked partitions, quarantined customers,
 * restarts), which is how `order-fleet status` sees it without asking workers.
 */
export const ParkedPartitionSchema = z.object({
  partition: z.number().int(),
  code: z.string(),
  reason: z.string(),
  since: z.string(),
});

export const QuarantinedCustomerSchema = z.object({
  partition: z.number().int(),
  customerId: z.string(),
  seq: z.number().int(),
  code: z.string(),
  reason: z.string(),
});

export const MemberHealthSchema = z.object({
  parked: z.array(ParkedPartitionSchema),
  /** Quarantined customers of this worker's partitions (the first {@link MAX_LISTED} of them). */
  quarantined: z.array(QuarantinedCustomerSchema),
  quarantinedCount: z.number().int(),
  restarts: z.number().int(),
});
export type MemberHealth = z.infer<typeof MemberHealthSchema>;

/** Longest list of quarantined customers carried in a heartbeat (it must stay a small entry). */
export const MAX_LISTED = 50;

export const MemberSchema = z.object({
  id: z.string(),
  since: z.string(),
  heartbeatAt: z.string(),
  health: MemberHealthSchema.optional(),
  // Timer layouts this worker can run (src/nats/deployment.ts); setup switches the deployment's
  // layout only when every live member lists the new one. Strings, not the enum: a newer
  // version's layouts must not make this version's parse fail.
  timerLayouts: z.array(z.string()).optional(),
});
export type Member = z.infer<typeof MemberSchema>;

export interface MembershipOptions {
  readonly workerId: string;
  readonly heartbeatMs: number;
  /** The bucket's TTL in ms. */
  readonly ttlMs: number;
  readonly log: Logger;
  /** Health to publish with each heartbeat. */
  readonly health?: () => MemberHealth;
}

export class Membership {
  readonly #kv: KV;
  readonly #options: MembershipOptions;
  readonly #since = new Date().toISOString();
  /** Live members: id → (record, local time last heard). */
  readonly #members = new Map<string, { member: Member; heardAt: number }>();
  readonly #tasks: TaskGroup;
  #lastPublished = '';
  #listeners: ((members: readonly string[]) => void)[] = [];
  #joined = false;
  /** Stops the current watch (so its owned task starts a new one); set while a watch runs. */
  #stopWatch: (() => void) | undefined;
  /** Local time the watch last delivered our own entry (every heartbeat is one). */
  #selfSeenAt = performance.now();

  constructor(kv: KV, options: MembershipOptions) {
    this.#kv = kv;
    this.#options = options;
    this.#tasks = new TaskGroup(options.log);
  }

  get key(): string {
    return memberKey(this.#options.workerId);
  }

  /**
   * Joins: writes our entry, starts watching and heartbeating. The watch and the heartbeat are
   * owned tasks: a failure (NATS restarting, a stall) is logged and retried, never fatal.
   */
  async join(): Promise<void> {
    await this.#beat();
    this.#joined = true;
    this.#tasks.spawn('membership watch', (signal) => this.#watch(signal), {
      restart: LOOP_RESTART,
    });
    this.#tasks.spawn('membership heartbeat', (signal) => this.#heartbeatLoop(signal), {
      restart: LOOP_RESTART,
    });
  }

  async #watch(signal: AbortSignal): Promise<void> {
    const watch = await this.#kv.watch({ key: MEMBER_KEYS, include: KvWatchInclude.LastValue });
    const stop = (): void => watch.stop();
    signal.addEventListener('abort', stop, { once: true });
    this.#selfSeenAt = performance.now();
    this.#stopWatch = stop;
    try {
      for await (const entry of watch) {
        const id = workerIdOfMemberKey(entry.key);
        if (id === this.#options.workerId) this.#selfSeenAt = performance.now();
        if (entry.operation === 'PUT') {
          const parsed = MemberSchema.safeParse(entry.json());
          if (parsed.success)
            this.#members.set(id, { member: parsed.data, heardAt: performance.now() });
        } else {
          this.#members.delete(id);
        }
        this.#publish();
      }
    } finally {
      this.#stopWatch = undefined;
      signal.removeEventListener('abort', stop);
    }
  }

  /**
   * A watch can stall without failing: after kill -9 of NATS nodes its ordered consumer was seen
   * delivering nothing while writes succeeded, which froze this worker's view of the fleet (a
   * member that came back was never seen again, so its partitions were never handed back). Our
   * own heartbeats are writes the watch must deliver: when a beat succeeds and none has come
   * back for a member TTL, the watch is stopped and its task starts a new one, which replays
   * every current entry.
   */
  #checkWatch(): void {
    if (this.#stopWatch === undefined) return;
    const silentMs = performance.now() - this.#selfSeenAt;
    if (silentMs <= this.#options.ttlMs) return;
    this.#options.log.warn(
      { silentMs: Math.round(silentMs) },
      'membership watch stalled (our own heartbeats are not coming back), restarting it',
    );
    this.#selfSeenAt = performance.now();
    this.#stopWatch();
  }

  async #heartbeatLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await delay(this.#options.heartbeatMs, signal);
      if (signal.aborted) return;
      try {
        await this.#beat();
        this.#checkWatch();
      } catch (err) {
        // Transient (NATS restarting, a stall): the next beat tries again. Our entry may expire
        // meanwhile; the others then rebalance, and we rejoin with the next successful beat.
        this.#options.log.warn(
          { code: errorCode(err), err: describeError(err) },
          'membership heartbeat failed',
        );
      }
      this.#expire();
    }
  }

  /** Leaves at once (graceful shutdown): the others rebalance without waiting for the TTL. */
  async leave(): Promise<void> {
    await this.#tasks.close();
    if (this.#joined) {
      this.#joined = false;
      try {
        await this.#kv.delete(this.key);
      } catch (err) {
        this.#options.log.warn(
          { err: describeError(err) },
          'membership delete failed; it will expire',
        );
      }
    }
  }

  /** Calls `listener` with the sorted live member ids whenever the set changes. */
  onChange(listener: (members: readonly string[]) => void): void {
    this.#listeners.push(listener);
  }

  /** Live members, sorted by id. */
  members(): string[] {
    return [...this.#members.keys()].sort();
  }

  snapshot(): Member[] {
    return [...this.#members.values()].map((m) => m.member).sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async #beat(): Promise<void> {
    const member: Member = {
      id: this.#options.workerId,
      since: this.#since,
      heartbeatAt: new Date().toISOString(),
      timerLayouts: [...TIMER_LAYOUTS],
      ...(this.#options.health === undefined ? {} : { health: this.#options.health() }),
    };
    await this.#kv.put(this.key, JSON.stringify(member));
  }

  #expire(): void {
    const now = performance.now();
    for (const [id, { heardAt }] of this.#members) {
      if (id !== this.#options.workerId && now - heardAt > this.#options.ttlMs) {
        this.#options.log.info({ member: id }, 'member expired');
        this.#members.delete(id);
      }
    }
    this.#publish();
  }

  #publish(): void {
    const members = this.members();
    const key = members.join(',');
    if (key === this.#lastPublished) return;
    this.#lastPublished = key;
    this.#options.log.info({ members }, 'membership changed');
    for (const listener of this.#listeners) {
      try {
        listener(members);
      } catch (err) {
        this.#options.log.error({ err: describeError(err) }, 'membership listener failed');
      }
    }
  }
}

/**
 * Every live member's entry, read once (status, the timer-layout switch). The keys come from the
 * stream's per-subject counts, not kv.keys(): a listing of a TTL bucket can miss its end when an
 * entry expires while it runs. An entry this version cannot parse is returned as `unreadable`
 * with its key, so a caller that needs every member to agree can refuse rather than skip it.
 */
export async function readLiveMembers(
  jsm: JetStreamManager,
  membersKv: KV,
  memberBucket: string,
): Promise<{ readonly members: Member[]; readonly unreadable: string[] }> {
  const prefix = kvSubjectPrefix(memberBucket);
  const info = await jsm.streams.info(kvStreamName(memberBucket), {
    subjects_filter: `${prefix}${MEMBER_KEYS}`,
  });
  const members: Member[] = [];
  const unreadable: string[] = [];
  for (const subject of Object.keys(info.state.subjects ?? {})) {
    const key = subject.slice(prefix.length);
    const entry = await membersKv.get(key);
    if (entry === null || entry.operation !== 'PUT') continue;
    const parsed = MemberSchema.safeParse(entry.json());
    if (parsed.success) members.push(parsed.data);
    else unreadable.push(key);
  }
  members.sort((a, b) => (a.id < b.id ? -1 : 1));
  return { members, unreadable };
}
