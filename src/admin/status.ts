import type { JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { ResourceNames } from '../contract/names.js';
import { kvLeaseStore } from '../fleet/lease-store.js';
import { LeaseManager } from '../fleet/leases.js';
import { readLiveMembers } from '../fleet/membership.js';
import type { Logger } from '../logging/logger.js';
import { loadDeployment, timerLayoutOf, type TimerLayout } from '../nats/deployment.js';
import { describeError } from '../errors.js';
import { isConsumerNotFound } from '../nats/errors.js';
import { WatermarkStore } from '../state/watermark-store.js';
import { partitionConsumerName } from '../contract/internal-names.js';

export interface ParkedStatus {
  readonly code: string;
  readonly reason: string;
  readonly since: string;
}

export interface PartitionStatus {
  readonly partition: number;
  readonly owner: string | null;
  /**
   * `owned` (a worker holds the lease and runs it), `parked` (its owner stopped it after a
   * terminal failure, see `parked`), or `unowned` (nobody holds the lease right now).
   */
  readonly state: 'owned' | 'parked' | 'unowned';
  readonly parked?: ParkedStatus;
  readonly watermark: number;
  readonly epoch: number;
  /** Entries in the log not yet delivered to the owner; null when the consumer cannot be read. */
  readonly pending: number | null;
  /** Delivered but not yet checkpointed; null when the consumer cannot be read. */
  readonly unacked: number | null;
  /**
   * Entries after the watermark: not yet reflected in KV (0 when fully caught up and saved);
   * null when the consumer cannot be read.
   */
  readonly lag: number | null;
  /**
   * Why the partition consumer's counts are missing: a clustered server can leave one consumer
   * unreadable for a while (its owner recreates it within about a minute). One such partition
   * does not keep `status` from reporting the others.
   */
  readonly consumerError?: string;
}

export interface FleetStatus {
  readonly partitions: number;
  /** How open timers are found after a crash (see src/nats/deployment.ts). */
  readonly timerLayout: TimerLayout;
  readonly members: readonly {
    readonly id: string;
    readonly since: string;
    /** Timer layouts the member can run (empty: a version from before layouts, index only). */
    readonly timerLayouts: readonly string[];
    readonly partitions: readonly number[];
    /** Partition runs this worker restarted after failures. */
    readonly restarts: number;
  }[];
  readonly table: readonly PartitionStatus[];
  /** Partitions parked by their owner (terminal failure). */
  readonly parked: readonly number[];
  /** Quarantined customers reported by the workers (at most 50 per worker are listed). */
  readonly quarantined: readonly {
    readonly partition: number;
    readonly customerId: string;
    readonly seq: number;
    readonly code: string;
    readonly reason: string;
  }[];
  /** How many customers are quarantined in all (may exceed the list). */
  readonly quarantinedCount: number;
}

/** Reads the whole fleet's state from NATS: members, lease holders, watermarks, consumer counts. */
export async function fleetStatus(
  nc: NatsConnection,
  names: ResourceNames,
  log: Logger,
): Promise<FleetStatus> {
  const deployment = await loadDeployment(nc, names);
  const kvm = new Kvm(nc);
  const jsm = await jetstreamManager(nc);
  const membersKv = await kvm.open(names.memberBucket);
  const leases = new LeaseManager(kvLeaseStore(await kvm.open(names.leaseBucket)), {
    workerId: 'status',
    ttlMs: 1000,
    log,
  });
  const watermarks = new WatermarkStore(await kvm.open(names.metaBucket));
  const holders = await leases.holders(deployment.partitions);

  const { members } = await readLiveMembers(jsm, membersKv, names.memberBucket);

  const healthOf = new Map(members.map((m) => [m.id, m.health]));
  const table = await Promise.all(
    Array.from({ length: deployment.partitions }, async (_, p): Promise<PartitionStatus> => {
      const { watermark } = await watermarks.load(p);
      const counts = await consumerCounts(jsm, names, p).then(
        (c) => ({ ...c, error: undefined }),
        (err: unknown) => ({ pending: null, unacked: null, error: describeError(err) }),
      );
      const owner = holders.get(p) ?? null;
      const parked =
        owner === null ? undefined : healthOf.get(owner)?.parked.find((x) => x.partition === p);
      return {
        partition: p,
        owner,
        state: parked !== undefined ? 'parked' : owner === null ? 'unowned' : 'owned',
        ...(parked === undefined
          ? {}
          : { parked: { code: parked.code, reason: parked.reason, since: parked.since } }),
        watermark: watermark.seq,
        epoch: watermark.epoch,
        pending: counts.pending,
        unacked: counts.unacked,
        lag: counts.pending === null ? null : counts.pending + counts.unacked,
        ...(counts.error === undefined ? {} : { consumerError: counts.error }),
      };
    }),
  );
  return {
    partitions: deployment.partitions,
    timerLayout: timerLayoutOf(deployment),
    members: members.map((m) => ({
      id: m.id,
      since: m.since,
      timerLayouts: m.timerLayouts ?? [],
      partitions: table.filter((t) => t.owner === m.id).map((t) => t.partition),
      restarts: m.health?.restarts ?? 0,
    })),
    table,
    parked: table.filter((t) => t.state === 'parked').map((t) => t.partition),
    quarantined: members.flatMap((m) => m.health?.quarantined ?? []),
    quarantinedCount: members.reduce((n, m) => n + (m.health?.quarantinedCount ?? 0), 0),
  };
}

/** Pending and unacknowledged counts of partition `partition`'s durable consumer. */
export async function consumerCounts(
  jsm: JetStreamManager,
  names: ResourceNames,
  partition: number,
): Promise<{ pending: number; unacked: number }> {
  try {
    const info = await jsm.consumers.info(names.ordersStream, partitionConsumerName(partition));
    return { pending: info.num_pending, unacked: info.num_ack_pending };
  } catch (err) {
    // Never run yet: everything in the partition is pending.
    if (!isConsumerNotFound(err)) throw err;
    const info = await jsm.streams.info(names.ordersStream, {
      subjects_filter: `${names.ordersPrefix}.${partition}.>`,
    });
    const perSubject = info.state.subjects ?? {};
    return { pending: Object.values(perSubject).reduce((a, b) => a + b, 0), unacked: 0 };
  }
}

/** A consumer count, right-aligned; `?` where the consumer could not be read. */
function count(n: number | null): string {
  return (n === null ? '?' : String(n)).padStart(8);
}

export function renderStatus(status: FleetStatus): string {
  const lines: string[] = [];
  lines.push(`MEMBERS (${status.members.length})`);
  lines.push(`  ${'ID'.padEnd(32)} ${'SINCE'.padEnd(25)} PARTITIONS`);
  for (const m of status.members)
    lines.push(
      `  ${m.id.padEnd(32)} ${m.since.padEnd(25)} ${m.partitions.length} [${m.partitions.join(',')}]`,
    );
  lines.push('');
  const behind = status.members.filter((m) => !m.timerLayouts.includes('state')).length;
  lines.push(
    `TIMER LAYOUT ${status.timerLayout}` +
      (status.timerLayout === 'index'
        ? behind === 0
          ? ' (every member supports state: `order-fleet setup --timer-layout state` switches)'
          : ` (${behind} member(s) support index only)`
        : ''),
  );
  lines.push('');
  lines.push(`PARTITIONS (${status.partitions})`);
  lines.push(
    `  ${'P'.padStart(4)} ${'OWNER'.padEnd(32)} ${'STATE'.padEnd(8)} ${'WATERMARK'.padStart(10)} ${'EPOCH'.padStart(6)} ${'PENDING'.padStart(8)} ${'UNACKED'.padStart(8)} ${'LAG'.padStart(8)}`,
  );
  for (const t of status.table) {
    lines.push(
      `  ${String(t.partition).padStart(4)} ${(t.owner ?? '-').padEnd(32)} ${t.state.padEnd(8)} ${String(t.watermark).padStart(10)} ${String(t.epoch).padStart(6)} ${count(t.pending)} ${count(t.unacked)} ${count(t.lag)}`,
    );
  }
  const unreadable = status.table.filter((t) => t.consumerError !== undefined);
  if (unreadable.length > 0) {
    lines.push('');
    lines.push(`CONSUMERS NOT READABLE (${unreadable.length}; counts shown as ?)`);
    for (const t of unreadable)
      lines.push(`  ${String(t.partition).padStart(4)} ${t.consumerError ?? ''}`);
  }
  const parked = status.table.filter((t) => t.parked !== undefined);
  if (parked.length > 0) {
    lines.push('');
    lines.push(`PARKED (${parked.length})`);
    for (const t of parked)
      lines.push(
        `  ${String(t.partition).padStart(4)} ${t.parked?.code ?? ''}: ${t.parked?.reason ?? ''}`,
      );
  }
  if (status.quarantinedCount > 0) {
    lines.push('');
    lines.push(`QUARANTINED CUSTOMERS (${status.quarantinedCount})`);
    for (const q of status.quarantined)
      lines.push(
        `  ${String(q.partition).padStart(4)} ${q.customerId} since entry ${q.seq}: ${q.reason}`,
      );
  }
  return `${lines.join('\n')}\n`;
}
