import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Config } from './config/config.js';
import { FleetGaugeReporter } from './admin/fleet-gauges.js';
import { startAdminServer } from './admin/http-server.js';
import { startStatusReporter } from './admin/status-reporter.js';
import { resourceNames } from './contract/names.js';
import { closeStep } from './lifecycle/close-step.js';
import { FleetMember } from './fleet/fleet-member.js';
import { kvLeaseStore } from './fleet/lease-store.js';
import { LeaseManager } from './fleet/leases.js';
import { MAX_LISTED, Membership, type MemberHealth } from './fleet/membership.js';
import { Worker, type WorkerReport } from './fleet/worker.js';
import type { Logger } from './logging/logger.js';
import { connectNats } from './nats/connection.js';
import { JetStreamWriter, PipelinedKvWrites } from './nats/js-writer.js';
import {
  loadDeployment,
  readDeployment,
  timerLayoutOf,
  type Deployment,
} from './nats/deployment.js';
import { SummarySink } from './notifications/summary-sink.js';
import {
  createOrderAggregator,
  orderTimerCodec,
  renderOrder,
  type OrderEntry,
  type OrderState,
} from './orders/order-aggregator.js';
import { decodeTimerEntry, orderEntryDecoder } from './orders/order-log.js';
import { timerAppender } from './orders/timer-log.js';
import type { SummaryNotification } from './orders/summary.js';
import type { Aggregator } from './orders/aggregator.js';
import { TimerIndex } from './state/timer-index.js';
import { TimerSnapshotStore } from './state/timer-snapshot.js';

/** What nats.js waits for a JetStream ack by default: the same for the pipelined writes. */
const JS_WRITE_TIMEOUT_MS = 5000;

export type OrderWorker = Worker<OrderState, OrderEntry, SummaryNotification>;

export interface RunningWorker {
  readonly worker: OrderWorker;
  readonly nc: NatsConnection;
  /**
   * Graceful: leave the fleet, stop partitions with a final checkpoint, drain. Idempotent.
   * `signal` is the deadline: publishes still retrying when it fires give up.
   */
  close(signal?: AbortSignal): Promise<WorkerReport>;
  /**
   * Forced exit: release every lease now (conditional deletes; watermarks not marked clean), so
   * successors start at once and replay, instead of waiting out the lease TTL.
   */
  releaseLeasesNow(): Promise<void>;
}

export type OrderAggregator = Aggregator<OrderState, OrderEntry, SummaryNotification>;

export interface StartOrderWorkerOptions {
  /**
   * Wraps (or replaces) the order aggregator the worker folds entries with: a decorator that adds
   * metrics or tracing, or, in tests, one whose apply() fails for chosen entries.
   */
  readonly aggregator?: (standard: OrderAggregator) => OrderAggregator;
}

/**
 * Composition root of the worker process: config in, a running fleet member out. Every module
 * gets what it needs from here; nothing below reads the environment.
 */
export async function startOrderWorker(
  config: Config,
  log: Logger,
  options: StartOrderWorkerOptions = {},
): Promise<RunningWorker> {
  const names = resourceNames(config.namespace);
  const workerId = config.worker.id;
  const connections: NatsConnection[] = [];
  try {
    const open = async (role: string): Promise<NatsConnection> => {
      const suffix = role === 'data' ? '' : `-${role}`;
      const nc = await connectNats(
        config.nats,
        `order-fleet-worker-${workerId}${suffix}`,
        log.child({ component: 'nats', connection: role, workerId }),
      );
      connections.push(nc);
      return nc;
    };
    const wired: WorkerConnections = {
      data: await open('data'),
      coordination: await open('coordination'),
      management: await open('management'),
    };
    const deployment = await loadDeployment(wired.data, names);
    return await assemble(wired, config, deployment, log, options);
  } catch (err) {
    // Without this the open connections would keep a failed process alive.
    await Promise.all(connections.map((nc) => nc.close()));
    throw err;
  }
}

/**
 * The worker's three connections. A 2.9 server handles a client's JetStream API requests inline,
 * in the read loop of the connection that sent them, and creating (or reading the info of) a
 * filtered consumer counts its matches over every subject of the stream: about 40 ms over 300k
 * customers' subjects, 220 ms over a million. Everything the connection sent after such a request
 * waits behind it (measured: a KV put on the same connection 1.4 s behind 32 consumer creations,
 * 9 ms on another). So the lease clock and heartbeats get a connection of their own, where a late
 * renewal can no longer fence a healthy runner, and the consumer management another, so acks,
 * pulls and writes of running partitions do not stall while other partitions start.
 */
interface WorkerConnections {
  /** Pulls, acks, KV reads and writes, summaries, queries, status. */
  readonly data: NatsConnection;
  /** Leases and membership: small, frequent and deadline-bound. */
  readonly coordination: NatsConnection;
  /** Partition consumers' creation, deletion and info (delivery audits). */
  readonly management: NatsConnection;
}

async function assemble(
  connections: WorkerConnections,
  config: Config,
  deployment: Deployment,
  log: Logger,
  options: StartOrderWorkerOptions,
): Promise<RunningWorker> {
  const { data: nc, coordination, management } = connections;
  const names = resourceNames(config.namespace);
  const workerId = config.worker.id;
  const jsm = await jetstreamManager(nc);
  const kvm = new Kvm(nc);
  const coordinationKvm = new Kvm(coordination);
  // Buckets are bound without the direct-get API: direct gets may be served by a lagging
  // replica, and a stale read of a watermark or snapshot could make a new owner skip entries.
  const [stateKv, leasesKv, membersKv, metaKv] = await Promise.all([
    kvm.open(names.stateBucket),
    coordinationKvm.open(names.leaseBucket),
    coordinationKvm.open(names.memberBucket),
    kvm.open(names.metaBucket),
  ]);
  // The lease TTL is a property of the bucket, fixed by `setup`, so every worker agrees on it.
  const [leaseTtlMs, memberTtlMs] = await Promise.all([
    leasesKv.status().then((s) => s.ttl),
    membersKv.status().then((s) => s.ttl),
  ]);
  // Snapshots and timer-index entries, the writes made per customer, go through one pipelined
  // writer instead of one nats.js request each (see js-writer.ts for why).
  // (The writer replies below the connection's own inbox prefix, which it reads from nc.)
  const writer = new JetStreamWriter(nc, { timeoutMs: JS_WRITE_TIMEOUT_MS });
  const stateWrites = new PipelinedKvWrites(writer, names.stateBucket, stateKv);
  const leases = new LeaseManager(kvLeaseStore(leasesKv), {
    workerId,
    ttlMs: leaseTtlMs,
    log: log.child({ component: 'leases', workerId }),
  });

  const worker: OrderWorker = new Worker({
    nc,
    managementNc: management,
    names,
    partitions: deployment.partitions,
    worker: config.worker,
    leases,
    stateWrites,
    domain: {
      aggregator: (options.aggregator ?? ((a) => a))(createOrderAggregator(config.worker.summary)),
      decoder: orderEntryDecoder(names, deployment.partitions, config.limits),
      render: renderOrder,
      outputs: new SummarySink(writer, jsm, names, log.child({ component: 'summaries', workerId })),
      timers: {
        index: new TimerIndex(
          stateKv,
          decodeTimerEntry,
          log.child({ component: 'timer-index', workerId }),
          stateWrites,
        ),
        snapshot: new TimerSnapshotStore(
          stateKv,
          orderTimerCodec,
          log.child({ component: 'timer-snapshot', workerId }),
        ),
        // Read from the bucket (not a replica's direct get) at each partition start: a switch
        // must be seen by the next runner that could need the index it no longer keeps.
        layout: async () => {
          const current = await readDeployment(metaKv);
          return current === undefined ? timerLayoutOf(deployment) : timerLayoutOf(current);
        },
        tickMs: config.worker.timerTickMs,
        append: timerAppender(writer, jsm, names),
      },
    },
    log,
  });

  const membership = new Membership(membersKv, {
    workerId,
    heartbeatMs: config.worker.heartbeatMs,
    ttlMs: memberTtlMs,
    log: log.child({ component: 'membership', workerId }),
    health: () => memberHealth(worker),
  });
  const fleet = new FleetMember({
    workerId,
    partitions: deployment.partitions,
    worker,
    membership,
    leases,
    log: log.child({ component: 'fleet', workerId }),
  });
  await worker.start([]);
  leases.start();
  await membership.join();
  // Fleet-wide gauges (lag for the autoscaler, unowned partitions, dead letters), measured by the
  // holder of partition 0's lease only; they exist to be scraped, so only with the admin server.
  const gauges =
    config.worker.admin.port === undefined
      ? undefined
      : new FleetGaugeReporter(
          {
            // One consumer info per partition: the kind of request that stalls its connection.
            jsm: await jetstreamManager(management),
            names,
            partitions: deployment.partitions,
            holders: () => leases.holders(deployment.partitions),
          },
          {
            workerId,
            intervalMs: config.worker.admin.fleetGaugesIntervalMs,
            log: log.child({ component: 'fleet-gauges', workerId }),
          },
        );
  gauges?.start();
  const admin =
    config.worker.admin.port === undefined
      ? undefined
      : await startAdminServer({
          port: config.worker.admin.port,
          host: config.worker.admin.host,
          target: worker,
          nc,
          log: log.child({ component: 'admin', workerId }),
          fleet: () => gauges?.latest,
        });

  // Counters for the console, every 2 s (or the heartbeat, if slower): cheap, core NATS only.
  const reporter = startStatusReporter(
    nc,
    names,
    worker,
    Math.max(2000, config.worker.heartbeatMs),
    log.child({ component: 'status-reporter', workerId }),
  );

  let closing: Promise<WorkerReport> | undefined;
  const close = async (signal: AbortSignal | undefined): Promise<WorkerReport> => {
    await closeStep(log, 'stop fleet gauges', async () => gauges?.close());
    reporter.close();
    const report = await fleet.close(signal);
    // Kept up during the drain so probes see "not ready" rather than a refused connection.
    await closeStep(log, 'close admin server', () =>
      admin === undefined
        ? Promise.resolve()
        : new Promise<void>((resolve) => admin.close(() => resolve())),
    );
    await closeStep(log, 'close writer', () => Promise.resolve(writer.close()));
    await closeStep(log, 'drain nats', () => nc.drain());
    await closeStep(log, 'drain nats (management)', () => management.drain());
    // Last: leaving and releasing went through it, and nothing after needs it.
    await closeStep(log, 'drain nats (coordination)', () => coordination.drain());
    return report;
  };
  return {
    worker,
    nc,
    close: (signal) => (closing ??= close(signal)),
    // Both at once: leaving tells the others to recompute the assignment (else they would wait
    // for our membership to expire), releasing lets them take the partitions immediately.
    releaseLeasesNow: async () => {
      await Promise.all([
        closeStep(log, 'leave membership', () => membership.leave()),
        closeStep(log, 'release leases', () => worker.releaseLeasesNow()),
      ]);
    },
  };
}

/** What a worker publishes with its heartbeat, for `status`. */
function memberHealth(worker: OrderWorker): MemberHealth {
  const health = worker.health();
  const quarantined = worker.quarantined();
  return {
    parked: health.flatMap((h) =>
      h.parked === undefined ? [] : [{ partition: h.partition, ...h.parked }],
    ),
    quarantined: quarantined.slice(0, MAX_LISTED),
    quarantinedCount: quarantined.length,
    restarts: worker.stats().restarts,
  };
}
