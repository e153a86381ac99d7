import type { CustomerSnapshot } from '../state/customer-store.js';

/** A customer held in memory. */
export interface Resident<S> {
  snapshot: CustomerSnapshot<S>;
  /** KV revision of the snapshot last read or written (0: no entry). */
  revision: number;
}

/**
 * The customers of one partition held in memory, in recency order, and which of them have
 * changes not yet checkpointed. Pure bookkeeping: loading and saving are the runner's.
 *
 * Not a plain LRU cache with eviction on insert: a dirty customer must never be dropped (its
 * state would be lost until a replay), so eviction is a separate step that the runner takes
 * after a checkpoint, and it skips dirty customers.
 */
export class ResidentSet<S> {
  // Map iteration order is insertion order, and a touch re-inserts, so the first key is the least
  // recently used.
  readonly #residents = new Map<string, Resident<S>>();
  readonly #dirty = new Set<string>();

  get size(): number {
    return this.#residents.size;
  }

  get dirtySize(): number {
    return this.#dirty.size;
  }

  has(customerId: string): boolean {
    return this.#residents.has(customerId);
  }

  /** Without changing recency (queries, checkpoints). */
  get(customerId: string): Resident<S> | undefined {
    return this.#residents.get(customerId);
  }

  /** Adds a customer just loaded; one already resident is kept (it may be newer). */
  add(customerId: string, resident: Resident<S>): boolean {
    if (this.#residents.has(customerId)) return false;
    this.#residents.set(customerId, resident);
    return true;
  }

  /** The customer is being used: it becomes the most recently used. Must be resident. */
  touch(customerId: string): Resident<S> {
    const resident = this.#residents.get(customerId);
    if (resident === undefined) throw new Error(`customer ${customerId} was not loaded`);
    this.#residents.delete(customerId);
    this.#residents.set(customerId, resident);
    return resident;
  }

  markDirty(customerId: string): void {
    this.#dirty.add(customerId);
  }

  /** Customers with changes to write, in no particular order. */
  dirtyIds(): string[] {
    return [...this.#dirty];
  }

  /** The customer's state was written. */
  markClean(customerId: string): void {
    this.#dirty.delete(customerId);
  }

  /**
   * Drops least recently used clean customers until at most `capacity` are resident; returns
   * how many were dropped. Dirty ones stay, so the set may remain above capacity.
   */
  evict(capacity: number): number {
    let dropped = 0;
    for (const id of this.#residents.keys()) {
      if (this.#residents.size <= capacity) break;
      if (this.#dirty.has(id)) continue;
      this.#residents.delete(id);
      dropped++;
    }
    return dropped;
  }
}
