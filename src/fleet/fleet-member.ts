import type { Logger } from '../logging/logger.js';
import { describeError } from '../errors.js';
import { closeStep } from '../lifecycle/close-step.js';
import { assignPartitions, partitionsOf } from './assignment.js';
import type { LeaseManager } from './leases.js';
import type { Membership } from './membership.js';
import type { WorkerReport } from './worker.js';

/** What the fleet needs of a worker: run exactly these partitions, and close. */
export interface PartitionHost {
  readonly ownedPartitions: number[];
  setPartitions(partitions: Iterable<number>): Promise<void>;
  close(signal?: AbortSignal): Promise<WorkerReport>;
}

/** Settle time before acting on a membership change, so a burst of changes moves partitions once. */
const REBALANCE_DEBOUNCE_MS = 50;

/**
 * Ties membership to ownership. Each worker computes the same assignment from the member list it
 * sees (no leader) and asks its {@link Worker} to run exactly its share. Only partitions whose
 * owner changes pause: the old owner stops them (final checkpoint, lease release) and the new
 * owner, already waiting on the lease, takes them at once. Partitions that do not move are never
 * touched.
 */
export class FleetMember {
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<void> = Promise.resolve();
  #members: readonly string[] = [];
  #closing: Promise<WorkerReport> | undefined;

  constructor(
    private readonly deps: {
      readonly workerId: string;
      readonly partitions: number;
      readonly worker: PartitionHost;
      readonly membership: Membership;
      readonly leases: LeaseManager;
      readonly log: Logger;
    },
  ) {
    deps.membership.onChange((members) => this.onMembersChanged(members));
  }

  /** Called by {@link Membership} with the live member list. */
  onMembersChanged(members: readonly string[]): void {
    this.#members = members;
    if (this.#closing !== undefined) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      // The chain is owned here (awaited by close) and never rejects: a failed rebalance is
      // logged, and the next membership change computes the assignment afresh.
      this.#chain = this.#chain
        .then(() => this.#rebalance())
        .catch((err: unknown) => {
          this.deps.log.error({ err: describeError(err) }, 'rebalance failed');
        });
    }, REBALANCE_DEBOUNCE_MS);
  }

  async #rebalance(): Promise<void> {
    if (this.#closing !== undefined) return;
    const { workerId, partitions, worker, log } = this.deps;
    // We always count ourselves: our own heartbeat may not have come back through the watch yet.
    const members = this.#members.includes(workerId) ? this.#members : [...this.#members, workerId];
    const mine = partitionsOf(assignPartitions(members, partitions), workerId);
    const before = worker.ownedPartitions;
    const gained = mine.filter((p) => !before.includes(p));
    const lost = before.filter((p) => !mine.includes(p));
    if (gained.length === 0 && lost.length === 0) return;
    log.info({ members, owned: mine.length, gained, lost }, 'rebalance');
    try {
      await worker.setPartitions(mine);
    } catch (err) {
      log.error({ err: describeError(err) }, 'rebalance failed');
    }
  }

  /**
   * Graceful leave: drop out of membership first, so the others start waiting on our leases while
   * we run the final checkpoints; each lease is released the moment its partition is saved.
   * Every step runs on its own: one failing is logged and the others still run. `signal` is the
   * shutdown deadline, passed down to the worker's final checkpoints.
   */
  close(signal?: AbortSignal): Promise<WorkerReport> {
    this.#closing ??= (async () => {
      clearTimeout(this.#timer);
      const { log } = this.deps;
      await closeStep(log, 'leave membership', () => this.deps.membership.leave());
      await closeStep(log, 'finish rebalance', () => this.#chain);
      let report: WorkerReport = { partitions: [], durationMs: 0 };
      await closeStep(log, 'close worker', async () => {
        report = await this.deps.worker.close(signal);
      });
      await closeStep(log, 'stop leases', () => this.deps.leases.stop());
      return report;
    })();
    return this.#closing;
  }
}
