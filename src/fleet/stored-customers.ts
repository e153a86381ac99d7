/**
 * Which customers of a partition have a stored state, so that a runner can start a customer it
 * knows has none without a KV read (a new customer then costs one write, not a read and a
 * write). The set is a scan's answer (one headers-only pass over the partition's keys) plus every
 * customer loaded since the runner started; until the scan has answered, nothing is known absent.
 *
 * Why a wrong "absent" is harmless: only the partition's fenced owner creates its customers, and
 * every write is conditional, so a customer created behind its back makes the runner's `create`
 * fail (WRITE_CONFLICT: it restarts and reloads); nothing is lost or overwritten.
 *
 * Pure bookkeeping: the scan itself is the runner's I/O.
 */
export interface StoredCustomersOptions {
  /** Reads that found no stored customer before a scan is worth its cost. */
  readonly scanAfterMisses: number;
  /** Above this many customers the set is given up (it bounds the memory it takes). */
  readonly limit: () => number;
}

export class StoredCustomers {
  readonly #options: StoredCustomersOptions;
  /** `undefined` once given up (or never used, for a rebuild): every customer is read. */
  #ids: Set<string> | undefined = new Set();
  #known = false;
  #misses = 0;

  constructor(options: StoredCustomersOptions) {
    this.#options = options;
  }

  /** Still tracking (a scan may be started). */
  get tracking(): boolean {
    return this.#ids !== undefined;
  }

  /** True only when the customer certainly has no stored state. */
  absent(customerId: string): boolean {
    return this.#known && this.#ids !== undefined && !this.#ids.has(customerId);
  }

  /**
   * Customers just loaded, `misses` of them read from KV and found absent. Returns true when a
   * scan has become worth it (enough misses before anything is known).
   */
  loaded(customerIds: Iterable<string>, misses: number): boolean {
    if (this.#ids === undefined) return false;
    for (const id of customerIds) this.#ids.add(id);
    if (this.#ids.size > this.#options.limit()) {
      this.forget();
      return false;
    }
    if (this.#known) return false;
    this.#misses += misses;
    return this.#misses >= this.#options.scanAfterMisses;
  }

  /** The scan's answer (`undefined`: too many, or aborted): from now on absences are known. */
  scanned(customerIds: ReadonlySet<string> | undefined): void {
    if (this.#ids === undefined) return;
    if (customerIds === undefined) {
      this.forget();
      return;
    }
    for (const id of customerIds) this.#ids.add(id);
    this.#known = true;
  }

  /** Gives up: every customer is read from KV from now on. */
  forget(): void {
    this.#ids = undefined;
    this.#known = false;
  }
}
