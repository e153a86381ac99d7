import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TimeoutError } from '@nats-io/transport-node';
import type { LeaseEntry, LeaseStore } from '../../src/fleet/lease-store.js';
import { LeaseManager } from '../../src/fleet/leases.js';

const log = pino({ level: 'silent' });

/** An in-memory lease store with a switch to make every call fail like a stalled NATS. */
class MemoryLeaseStore implements LeaseStore {
  readonly entries = new Map<string, { revision: number; value: string | undefined }>();
  #seq = 0;
  failing = false;
  readonly #listeners = new Set<(key: string) => void>();

  #check(): void {
    if (this.failing) throw new TimeoutError();
  }
  create(key: string, value: string): Promise<number | undefined> {
    this.#check();
    const current = this.entries.get(key);
    if (current?.value !== undefined) return Promise.resolve(undefined);
    const revision = ++this.#seq;
    this.entries.set(key, { revision, value });
    return Promise.resolve(revision);
  }
  update(key: string, value: string, revision: number): Promise<number | undefined> {
    this.#check();
    if (this.entries.get(key)?.revision !== revision) return Promise.resolve(undefined);
    const next = ++this.#seq;
    this.entries.set(key, { revision: next, value });
    return Promise.resolve(next);
  }
  remove(key: string, revision: number): Promise<boolean> {
    this.#check();
    if (this.entries.get(key)?.revision !== revision) return Promise.resolve(false);
    this.entries.set(key, { revision: ++this.#seq, value: undefined });
    for (const l of this.#listeners) l(key);
    return Promise.resolve(true);
  }
  get(key: string): Promise<LeaseEntry | undefined> {
    this.#check();
    return Promise.resolve(this.entries.get(key));
  }
  /** Another worker writes the key (steals, or renews its own). */
  put(key: string, value: string): void {
    this.entries.set(key, { revision: ++this.#seq, value });
  }
  watchRemovals(
    _filter: string,
    onRemoved: (key: string) => void,
    signal: AbortSignal,
  ): Promise<void> {
    this.#listeners.add(onRemoved);
    return new Promise((resolve) => {
      signal.addEventListener('abort', () => {
        this.#listeners.delete(onRemoved);
        resolve();
      });
    });
  }
}

const TTL = 4000; // renew every 1000 ms, trusted for 2400 ms after a renew was sent

function manager(store: LeaseStore, workerId = 'w1'): LeaseManager {
  return new LeaseManager(store, { workerId, ttlMs: TTL, log, now: () => Date.now(), pollMs: 100 });
}

describe('LeaseManager', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('derives renew interval and validity from the TTL', () => {
    const m = manager(new MemoryLeaseStore());
    expect(m.renewEveryMs).toBe(1000);
    expect(m.validityMs).toBe(2400);
  });

  it('renews every TTL/4 and stays valid while renews succeed', async () => {
    const store = new MemoryLeaseStore();
    const lease = await manager(store).acquire(0, () => false);
    if (lease === undefined) throw new Error('not acquired');
    const first = store.entries.get('p.0')?.revision;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(lease.valid()).toBe(true);
    expect(store.entries.get('p.0')?.revision).toBeGreaterThan(first ?? 0);
    await lease.release();
  });

  it('stays valid through transient renew failures, then is lost when validity runs out', async () => {
    const store = new MemoryLeaseStore();
    const lease = await manager(store).acquire(0, () => false);
    if (lease === undefined) throw new Error('not acquired');
    const lost = vi.fn();
    lease.onLost(lost);
    store.failing = true; // NATS stalls right after the acquire
    await vi.advanceTimersByTimeAsync(2000);
    expect(lease.valid()).toBe(true); // 2000 < 2400
    expect(lost).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(500);
    expect(lease.valid()).toBe(false); // 2500 > 2400: stop writing, well before the TTL (4000)
    await vi.advanceTimersByTimeAsync(1000);
    expect(lost).toHaveBeenCalledTimes(1);
  });

  it('is lost at once when a renew is rejected (someone else holds the key)', async () => {
    const store = new MemoryLeaseStore();
    const lease = await manager(store).acquire(0, () => false);
    if (lease === undefined) throw new Error('not acquired');
    const lost = vi.fn();
    lease.onLost(lost);
    store.put('p.0', JSON.stringify({ owner: 'w2', partition: 0, at: '' }));
    await vi.advanceTimersByTimeAsync(1000);
    expect(lost).toHaveBeenCalledTimes(1);
    expect(lease.valid()).toBe(false);
  });

  it('release deletes by CAS and invalidates at once; a lost lease releases nothing', async () => {
    const store = new MemoryLeaseStore();
    const m = manager(store);
    const lease = await m.acquire(0, () => false);
    if (lease === undefined) throw new Error('not acquired');
    const releasing = lease.release();
    expect(lease.valid()).toBe(false);
    await releasing;
    expect(store.entries.get('p.0')?.value).toBeUndefined();

    const again = await m.acquire(1, () => false);
    if (again === undefined) throw new Error('not acquired');
    store.put('p.1', JSON.stringify({ owner: 'w2', partition: 1, at: '' }));
    await vi.advanceTimersByTimeAsync(1000); // renew rejected: lost
    await again.release();
    expect(store.entries.get('p.1')?.value).toContain('w2'); // the new holder's entry is untouched
  });

  it('a waiter takes the lease as soon as the holder releases it', async () => {
    const store = new MemoryLeaseStore();
    const holder = manager(store, 'w1');
    const waiter = manager(store, 'w2');
    waiter.start();
    const held = await holder.acquire(0, () => false);
    if (held === undefined) throw new Error('not acquired');
    let got: unknown;
    const waiting = waiter.acquire(0, () => false).then((l) => (got = l));
    await vi.advanceTimersByTimeAsync(1000);
    expect(got).toBeUndefined();
    await held.release();
    await vi.advanceTimersByTimeAsync(0);
    await waiting;
    expect(got).toBeDefined();
    await waiter.stop();
  });

  it('acquire never rejects while the store fails; it takes the lease once the store is back', async () => {
    const store = new MemoryLeaseStore();
    store.failing = true;
    let got: unknown;
    let failed: unknown;
    const waiting = manager(store)
      .acquire(0, () => false)
      .then(
        (l) => (got = l),
        (err: unknown) => (failed = err),
      );
    await vi.advanceTimersByTimeAsync(30_000);
    expect(failed).toBeUndefined();
    expect(got).toBeUndefined();
    store.failing = false;
    await vi.advanceTimersByTimeAsync(6000);
    await waiting;
    expect(failed).toBeUndefined();
    expect(got).toBeDefined();
  });

  it('acquire resolves undefined when its signal fires', async () => {
    const store = new MemoryLeaseStore();
    store.put('p.0', JSON.stringify({ owner: 'w2', partition: 0, at: '' }));
    const ac = new AbortController();
    const waiting = manager(store).acquire(0, () => false, ac.signal);
    await vi.advanceTimersByTimeAsync(500);
    ac.abort();
    await vi.advanceTimersByTimeAsync(0);
    await expect(waiting).resolves.toBeUndefined();
  });

  it('takes back its own entry (a restarted runner in the same process)', async () => {
    const store = new MemoryLeaseStore();
    store.put('p.0', JSON.stringify({ owner: 'w1', partition: 0, at: '' }));
    const lease = await manager(store, 'w1').acquire(0, () => false);
    expect(lease).toBeDefined();
    await lease?.release();
  });
});
