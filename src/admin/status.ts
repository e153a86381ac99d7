import type { JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { ResourceNames } from '../contract/names.js';
import { LeaseManager } from '../fleet/leases.js';
import { MemberSchema } from '../fleet/membership.js';
import type { Logger } from '../logging/logger.js';
import { loadDeployment } from '../nats/deployment.js';
import { isConsumerNotFound } from '../nats/errors.js';
import { WatermarkStore } from '../state/watermark-store.js';

export interface PartitionStatus {
  readonly partition: number;
  readonly owner: string | null;
  readonly watermark: number;
  readonly epoch: number;
  /** Entries in the log not yet delivered to the owner. */
  readonly pending: number;
  /** Delivered but not yet checkpointed. */
  readonly unacked: number;
  /** Entries after the watermark: not yet reflected in KV (0 when fully caught up and saved). */
  readonly lag: number;
}

export interface FleetStatus {
  readonly partitions: number;
  readonly members: readonly {
    readonly id: string;
    readonly since: string;
    readonly partitions: readonly number[];
  }[];
  readonly table: readonly PartitionStatus[];
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
  const leases = new LeaseManager(await kvm.open(names.leaseBucket), {
    workerId: 'status',
    ttlMs: 1000,
    log,
  });
  const watermarks = new WatermarkStore(await kvm.open(names.metaBucket));
  const holders = await leases.holders(deployment.partitions);

  const members: { id: string; since: string }[] = [];
  // The member keys come from the stream's per-subject counts, not kv.keys(): a listing of a TTL
  // bucket can miss its end when an entry expires while it runs.
  const prefix = `$KV.${names.memberBucket}.`;
  const info = await jsm.streams.info(`KV_${names.memberBucket}`, {
    subjects_filter: `${prefix}m.>`,
  });
  for (const subject of Object.keys(info.state.subjects ?? {})) {
    const entry = await membersKv.get(subject.slice(prefix.length));
    if (entry === null || entry.operation !== 'PUT') continue;
    const parsed = MemberSchema.safeParse(entry.json());
    if (parsed.success) members.push({ id: parsed.data.id, since: parsed.data.since });
  }
  members.sort((a, b) => (a.id < b.id ? -1 : 1));

  const table = await Promise.all(
    Array.from({ length: deployment.partitions }, async (_, p): Promise<PartitionStatus> => {
      const { watermark } = await watermarks.load(p);
      const counts = await consumerCounts(jsm, names, p);
      return {
        partition: p,
        owner: holders.get(p) ?? null,
        watermark: watermark.seq,
        epoch: watermark.epoch,
        pending: counts.pending,
        unacked: counts.unacked,
        lag: counts.pending + counts.unacked,
      };
    }),
  );
  return {
    partitions: deployment.partitions,
    members: members.map((m) => ({
      ...m,
      partitions: table.filter((t) => t.owner === m.id).map((t) => t.partition),
    })),
    table,
  };
}

/** Pending and unacknowledged counts of partition `partition`'s durable consumer. */
export async function consumerCounts(
  jsm: JetStreamManager,
  names: ResourceNames,
  partition: number,
): Promise<{ pending: number; unacked: number }> {
  try {
    const info = await jsm.consumers.info(names.ordersStream, `partition-${partition}`);
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

export function renderStatus(status: FleetStatus): string {
  const lines: string[] = [];
  lines.push(`MEMBERS (${status.members.length})`);
  lines.push(`  ${'ID'.padEnd(32)} ${'SINCE'.padEnd(25)} PARTITIONS`);
  for (const m of status.members)
    lines.push(
      `  ${m.id.padEnd(32)} ${m.since.padEnd(25)} ${m.partitions.length} [${m.partitions.join(',')}]`,
    );
  lines.push('');
  lines.push(`PARTITIONS (${status.partitions})`);
  lines.push(
    `  ${'P'.padStart(4)} ${'OWNER'.padEnd(32)} ${'WATERMARK'.padStart(10)} ${'EPOCH'.padStart(6)} ${'PENDING'.padStart(8)} ${'UNACKED'.padStart(8)} ${'LAG'.padStart(8)}`,
  );
  for (const t of status.table) {
    lines.push(
      `  ${String(t.partition).padStart(4)} ${(t.owner ?? '-').padEnd(32)} ${String(t.watermark).padStart(10)} ${String(t.epoch).padStart(6)} ${String(t.pending).padStart(8)} ${String(t.unacked).padStart(8)} ${String(t.lag).padStart(8)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
