import { setTimeout as sleep } from 'node:timers/promises';
import { KvWatchInclude, type KV } from '@nats-io/kv';
import { z } from 'zod';
import { describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { isWrongLastSequence } from '../nats/errors.js';

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

export function leaseKey(partition: number): string {
  return `p.${partition}`;
}

export interface LeaseManagerOptions {
  readonly workerId: string;
  /** The bucket's TTL in ms. */
  readonly ttlMs: number;
  readonly log: Logger;
}

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
    return !this.#lost && !this.#released && performance.now() < this.#validUntil;
  }

  /** Called once if the lease is lost (renew rejected, or not renewed in time). */
  onLost(handler: () => void): void {
    if (this.#lost) handler();
    else this.#lostHandlers.push(handler);
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#timer);
    // A renew in flight would move the revision under our conditional delete: wait for it.
    await this.#renewing;
    if (this.#lost) return;
    await this.manager.releaseEntry(this.partition, this.#revision);
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#renewing = this.#renew();
    }, this.manager.renewEveryMs);
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    if (this.#released) return;
    const sentAt = performance.now();
    try {
      this.#revision = await this.manager.renewEntry(this.partition, this.#revision);
      this.#validUntil = sentAt + this.manager.validityMs;
    } catch (err) {
      if (this.#released) return; // released meanwhile: nothing to keep
      if (isWrongLastSequence(err)) {
        this.#markLost('renew rejected: another worker holds the lease');
        return;
      }
      // A transient failure (timeout, reconnect): keep trying until validity runs out.
      this.manager.log.warn(
        { partition: this.partition, err: describeError(err) },
        'lease renew failed',
      );
    }
    if (this.#released) return;
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
  readonly #kv: KV;
  readonly #options: LeaseManagerOptions;
  readonly #waiters = new Map<number, Set<() => void>>();
  #watching: Promise<void> | undefined;
  #stopWatch: (() => void) | undefined;

  constructor(kv: KV, options: LeaseManagerOptions) {
    this.#kv = kv;
    this.#options = options;
    this.log = options.log;
    this.renewEveryMs = Math.max(50, Math.floor(options.ttlMs / 4));
    this.validityMs = Math.floor(options.ttlMs * 0.6);
  }

  /** Watches lease deletions so a waiting worker takes a released partition at once. */
  async start(): Promise<void> {
    const watch = await this.#kv.watch({ key: 'p.>', include: KvWatchInclude.UpdatesOnly });
    this.#stopWatch = () => watch.stop();
    this.#watching = (async () => {
      for await (const entry of watch) {
        if (entry.operation !== 'PUT') this.#wake(Number(entry.key.slice(2)));
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopWatch?.();
    await this.#watching;
    for (const partition of this.#waiters.keys()) this.#wake(partition);
  }

  /**
   * Waits until this worker holds the partition's lease, or `cancelled()` turns true (then
   * resolves undefined). Retries on lease deletion events and, because an expired entry makes no
   * event on NATS 2.9, on a short poll.
   */
  async acquire(
    partition: number,
    cancelled: () => boolean,
    pollMs = 250,
  ): Promise<Lease | undefined> {
    while (!cancelled()) {
      const sentAt = performance.now();
      const revision = await this.#tryAcquire(partition);
      if (revision !== undefined) return new Lease(partition, revision, sentAt, this);
      await this.#waitForChange(partition, pollMs);
    }
    return undefined;
  }

  async #tryAcquire(partition: number): Promise<number | undefined> {
    const key = leaseKey(partition);
    const value = this.#value(partition);
    try {
      return await this.#kv.create(key, value);
    } catch (err) {
      if (!isWrongLastSequence(err)) throw err;
    }
    const current = await this.#kv.get(key);
    if (current === null) return undefined;
    const holder =
      current.operation === 'PUT' ? LeaseValueSchema.safeParse(current.json()) : undefined;
    // Our own entry (a restarted runner in this process): take it back conditionally.
    if (holder?.success === true && holder.data.owner === this.#options.workerId) {
      try {
        return await this.#kv.update(key, value, current.revision);
      } catch (err) {
        if (!isWrongLastSequence(err)) throw err;
      }
    }
    return undefined;
  }

  async renewEntry(partition: number, revision: number): Promise<number> {
    return this.#kv.update(leaseKey(partition), this.#value(partition), revision);
  }

  async releaseEntry(partition: number, revision: number): Promise<void> {
    try {
      await this.#kv.delete(leaseKey(partition), { previousSeq: revision });
    } catch (err) {
      // Someone else already holds it (we were fenced): nothing of ours to release.
      if (!isWrongLastSequence(err)) throw err;
    }
  }

  /** Current holders, for status and tests. */
  async holders(partitions: number): Promise<Map<number, string>> {
    // One get per partition rather than kv.keys(): a listing of a TTL bucket can miss its end
    // when entries expire while it runs, and then waits for its idle timeout.
    const out = new Map<number, string>();
    await Promise.all(
      Array.from({ length: partitions }, async (_, p) => {
        const entry = await this.#kv.get(leaseKey(p));
        if (entry === null || entry.operation !== 'PUT') return;
        const parsed = LeaseValueSchema.safeParse(entry.json());
        if (parsed.success) out.set(p, parsed.data.owner);
      }),
    );
    return out;
  }

  #value(partition: number): string {
    return JSON.stringify({
      owner: this.#options.workerId,
      partition,
      at: new Date().toISOString(),
    });
  }

  async #waitForChange(partition: number, pollMs: number): Promise<void> {
    let wake: (() => void) | undefined;
    const woken = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const set = this.#waiters.get(partition) ?? new Set();
    this.#waiters.set(partition, set);
    if (wake !== undefined) set.add(wake);
    const ac = new AbortController();
    await Promise.race([woken, sleep(pollMs, undefined, { signal: ac.signal }).catch(ignoreAbort)]);
    ac.abort();
    if (wake !== undefined) set.delete(wake);
  }

  #wake(partition: number): void {
    for (const wake of this.#waiters.get(partition) ?? []) wake();
  }
}

function ignoreAbort(err: unknown): void {
  if (!(err instanceof Error && err.name === 'AbortError')) throw err;
}
