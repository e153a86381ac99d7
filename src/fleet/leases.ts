import { z } from 'zod';
import { LEASE_KEYS, leaseKey, partitionOfLeaseKey } from '../contract/internal-names.js';
import { describeError, errorCode } from '../errors.js';
import { backoffDelay, delay, type BackoffPolicy } from '../lifecycle/retry.js';
import { LOOP_RESTART, TaskGroup } from '../lifecycle/task-group.js';
import type { Logger } from '../logging/logger.js';
import type { LeaseStore } from './lease-store.js';

export { leaseKey };

/**
 * Partition leases in a KV bucket whose bucket-level TTL is the lease TTL (set by `setup`; NATS
 * 2.9 has no per-key TTL). A lease is taken with `create` (or a conditional update of our own
 * entry), renewed with a conditional update well inside the TTL, and released with a conditional
 * delete. An entry that is not renewed vanishes after the TTL, which is how a crashed worker's
 * partitions become free.
 *
 * A holder only treats its lease as valid until `sentAt(last successful renew) + TTL - margin`,
 * measured on its own monotonic clock from when the renew was *sent*: the server stamped the
 * entry later than that, so the entry outlives our notion of validity. A worker that cannot renew
 * therefore stops writing before anyone else can acquire the partition.
 */
export const LeaseValueSchema = z.object({
  owner: z.string(),
  partition: z.number().int(),
  at: z.string(),
});

export interface LeaseManagerOptions {
  readonly workerId: string;
  /** The bucket's TTL in ms. */
  readonly ttlMs: number;
  readonly log: Logger;
  /** Monotonic clock in ms (default `performance.now`); injectable for tests. */
  readonly now?: () => number;
  /** How often a waiter retries when no removal event comes (an expiry makes none on 2.9). */
  readonly pollMs?: number;
}

/** Backoff of a waiter whose attempts fail (NATS unreachable): never gives up, never spins. */
const ACQUIRE_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 5000 };

export class Lease {
  #revision: number;
  #validUntil: number;
  #timer: NodeJS.Timeout | undefined;
  #released = false;
  #lostHandlers: (() => void)[] = [];
  #lost = false;
  #renewing: Promise<void> = Promise.resolve();

  constructor(
    readonly partition: number,
    revision: number,
    sentAt: number,
    private readonly manager: LeaseManager,
  ) {
    this.#revision = revision;
    this.#validUntil = sentAt + manager.validityMs;
    this.#schedule();
  }

  /** True while this holder may still write for the partition. */
  valid(): boolean {
    return !this.#lost && !this.#released && this.manager.now() < this.#validUntil;
  }

  /** Called once if the lease is lost (renew rejected, or not renewed in time). */
  onLost(handler: () => void): void {
    if (this.#lost) handler();
    else this.#lostHandlers.push(handler);
  }

  /**
   * Gives the lease up with a conditional delete, so the next owner can take it at once. From the
   * call on, {@link valid} is false: this holder writes nothing more. Idempotent.
   */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#timer);
    // A renew in flight would move the revision under our conditional delete: wait for it.
    await this.#renewing;
    if (this.#lost) return;
    // false: someone else already holds it (we were fenced): nothing of ours to release.
    await this.manager.store.remove(leaseKey(this.partition), this.#revision);
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#renewing = this.#renew();
    }, this.manager.renewEveryMs);
    this.#timer.unref();
  }

  /** Never rejects: every failure either keeps the lease (transient) or loses it. */
  async #renew(): Promise<void> {
    if (this.#released) return;
    const sentAt = this.manager.now();
    try {
      const revision = await this.manager.store.update(
        leaseKey(this.partition),
        this.manager.value(this.partition),
        this.#revision,
      );
      if (revision === undefined) {
        if (this.#released) return; // released meanwhile: nothing to keep
        this.#markLost('renew rejected: another worker holds the lease');
        return;
      }
      // Recorded even when released meanwhile: release() waits for this renew and then deletes
      // conditionally on the revision it wrote.
      this.#revision = revision;
      this.#validUntil = sentAt + this.manager.validityMs;
      if (this.#released) return;
    } catch (err) {
      if (this.#released) return;
      // A transient failure (timeout, reconnect): keep trying until validity runs out.
      this.manager.log.warn(
        { partition: this.partition, code: errorCode(err), err: describeError(err) },
        'lease renew failed',
      );
    }
    if (!this.valid()) {
      this.#markLost('lease not renewed in time');
      return;
    }
    this.#schedule();
  }

  #markLost(reason: string): void {
    if (this.#lost) return;
    this.#lost = true;
    clearTimeout(this.#timer);
    this.manager.log.warn({ partition: this.partition, reason }, 'lease lost');
    for (const handler of this.#lostHandlers.splice(0)) handler();
  }
}

export class LeaseManager {
  readonly renewEveryMs: number;
  /** How long after a renew was sent the holder still trusts it (well under the TTL). */
  readonly validityMs: number;
  readonly log: Logger;
  readonly store: LeaseStore;
  readonly now: () => number;
  readonly #options: LeaseManagerOptions;
  readonly #waiters = new Map<number, Set<() => void>>();
  readonly #tasks: TaskGroup;

  constructor(store: LeaseStore, options: LeaseManagerOptions) {
    this.store = store;
    this.#options = options;
    this.log = options.log;
    this.now = options.now ?? (() => performance.now());
    this.renewEveryMs = Math.max(50, Math.floor(options.ttlMs / 4));
    this.validityMs = Math.floor(options.ttlMs * 0.6);
    this.#tasks = new TaskGroup(options.log);
  }

  /**
   * Watches lease deletions so a waiting worker takes a released partition at once. The watch is
   * an owned task, restarted with backoff if NATS cuts it; the waiters' poll covers the gap.
   */
  start(): void {
    this.#tasks.spawn(
      'lease watch',
      (signal) =>
        this.store.watchRemovals(
          LEASE_KEYS,
          (key) => {
            const partition = partitionOfLeaseKey(key);
            if (partition !== undefined) this.#wake(partition);
          },
          signal,
        ),
      { restart: LOOP_RESTART },
    );
  }

  async stop(): Promise<void> {
    await this.#tasks.close();
    for (const partition of this.#waiters.keys()) this.#wake(partition);
  }

  /**
   * Waits until this worker holds the partition's lease, or `cancelled()` turns true or `signal`
   * fires (then resolves undefined). Retries on lease deletion events and, because an expired
   * entry makes no event on NATS 2.9, on a short poll. Never rejects: a failing attempt (NATS
   * stalled, restarting, unreachable) is logged and retried with backoff.
   */
  async acquire(
    partition: number,
    cancelled: () => boolean,
    signal?: AbortSignal,
  ): Promise<Lease | undefined> {
    const pollMs = this.#options.pollMs ?? 250;
    let failures = 0;
    while (!cancelled() && signal?.aborted !== true) {
      const sentAt = this.now();
      let revision: number | undefined;
      try {
        revision = await this.#tryAcquire(partition);
        failures = 0;
      } catch (err) {
        failures++;
        const delayMs = backoffDelay(failures, ACQUIRE_BACKOFF);
        this.log.warn(
          { partition, code: errorCode(err), err: describeError(err), attempt: failures, delayMs },
          'lease acquire failed, retrying',
        );
        await delay(delayMs, signal);
        continue;
      }
      if (revision !== undefined) return new Lease(partition, revision, sentAt, this);
      await this.#waitForChange(partition, pollMs, signal);
    }
    return undefined;
  }

  async #tryAcquire(partition: number): Promise<number | undefined> {
    const key = leaseKey(partition);
    const value = this.value(partition);
    const created = await this.store.create(key, value);
    if (created !== undefined) return created;
    const current = await this.store.get(key);
    if (current === undefined) return undefined;
    if (current.value === undefined) {
      // A deleted entry (released): take it conditionally on the delete marker.
      return this.store.update(key, value, current.revision);
    }
    const holder = parseLease(current.value);
    // Our own entry (a restarted runner in this process): take it back conditionally.
    if (holder?.owner === this.#options.workerId)
      return this.store.update(key, value, current.revision);
    return undefined;
  }

  /** Current holders, for status and tests. */
  async holders(partitions: number): Promise<Map<number, string>> {
    // One get per partition rather than kv.keys(): a listing of a TTL bucket can miss its end
    // when entries expire while it runs, and then waits for its idle timeout.
    const out = new Map<number, string>();
    await Promise.all(
      Array.from({ length: partitions }, async (_, p) => {
        const entry = await this.store.get(leaseKey(p));
        const holder = entry?.value === undefined ? undefined : parseLease(entry.value);
        if (holder !== undefined) out.set(p, holder.owner);
      }),
    );
    return out;
  }

  value(partition: number): string {
    return JSON.stringify({
      owner: this.#options.workerId,
      partition,
      at: new Date().toISOString(),
    });
  }

  async #waitForChange(partition: number, pollMs: number, signal?: AbortSignal): Promise<void> {
    let wake: (() => void) | undefined;
    const woken = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const set = this.#waiters.get(partition) ?? new Set();
    this.#waiters.set(partition, set);
    if (wake !== undefined) set.add(wake);
    const ac = new AbortController();
    const onAbort = (): void => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    await Promise.race([woken, delay(pollMs, ac.signal)]);
    ac.abort();
    signal?.removeEventListener('abort', onAbort);
    if (wake !== undefined) set.delete(wake);
  }

  #wake(partition: number): void {
    for (const wake of this.#waiters.get(partition) ?? []) wake();
  }
}

function parseLease(value: string): z.infer<typeof LeaseValueSchema> | undefined {
  try {
    const parsed = LeaseValueSchema.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : undefined;
  } catch (err) {
    // Not JSON: not a lease we wrote, treated as held by someone unknown.
    if (err instanceof SyntaxError) return undefined;
    throw err;
  }
}
