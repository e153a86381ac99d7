import type { NatsConnection } from '@nats-io/transport-node';
import type { Config } from './config/config.js';
import { resourceNames } from './contract/names.js';
import { describeError } from './errors.js';
import { Kvm } from '@nats-io/kv';
import { FleetMember } from './fleet/fleet-member.js';
import { LeaseManager } from './fleet/leases.js';
import { Membership } from './fleet/membership.js';
import { Worker, type WorkerReport } from './fleet/worker.js';
import type { Logger } from './logging/logger.js';
import { connectNats } from './nats/connection.js';
import { loadDeployment } from './nats/deployment.js';
import { orderAggregator, renderOrder, type OrderState } from './orders/order-aggregator.js';
import { orderEntryDecoder } from './orders/order-log.js';
import type { OrderEvent } from './contract/event.js';

export interface RunningWorker {
  readonly worker: Worker<OrderState, OrderEvent>;
  readonly nc: NatsConnection;
  /** Graceful: stop partitions with a final checkpoint, then drain the connection. Idempotent. */
  close(): Promise<WorkerReport>;
}

/**
 * Composition root of the worker process: config in, a running worker out. Every module gets
 * what it needs from here; nothing below reads the environment.
 */
export async function startOrderWorker(config: Config, log: Logger): Promise<RunningWorker> {
  const names = resourceNames(config.namespace);
  const nc = await connectNats(
    config.nats,
    `order-fleet-worker-${config.worker.id}`,
    log.child({ component: 'nats' }),
  );
  let deployment;
  try {
    deployment = await loadDeployment(nc, names);
  } catch (err) {
    // Without this the open connection would keep a failed process alive.
    await nc.close();
    throw err;
  }
  const kvm = new Kvm(nc);
  const leasesKv = await kvm.open(names.leaseBucket);
  const membersKv = await kvm.open(names.memberBucket);
  // The lease TTL is a property of the bucket, fixed by `setup`, so every worker agrees on it.
  const leaseTtlMs = (await leasesKv.status()).ttl;
  const memberTtlMs = (await membersKv.status()).ttl;
  const leases = new LeaseManager(leasesKv, {
    workerId: config.worker.id,
    ttlMs: leaseTtlMs,
    log: log.child({ component: 'leases', workerId: config.worker.id }),
  });
  const worker = new Worker<OrderState, OrderEvent>({
    nc,
    names,
    partitions: deployment.partitions,
    worker: config.worker,
    leases,
    domain: {
      aggregator: orderAggregator,
      decoder: orderEntryDecoder(names, deployment.partitions, config.limits),
      render: renderOrder,
    },
    log,
  });
  let fleet: FleetMember<OrderState, OrderEvent> | undefined;
  const membership = new Membership(membersKv, {
    workerId: config.worker.id,
    heartbeatMs: config.worker.heartbeatMs,
    ttlMs: memberTtlMs,
    log: log.child({ component: 'membership', workerId: config.worker.id }),
    onChange: (members) => fleet?.onMembersChanged(members),
  });
  fleet = new FleetMember({
    workerId: config.worker.id,
    partitions: deployment.partitions,
    worker,
    membership,
    leases,
    log: log.child({ component: 'fleet', workerId: config.worker.id }),
  });
  try {
    await worker.start([]);
    await leases.start();
    await membership.join();
  } catch (err) {
    await nc.close();
    throw err;
  }
  let closing: Promise<WorkerReport> | undefined;
  const close = async (): Promise<WorkerReport> => {
    const report = await fleet.close();
    try {
      await nc.drain();
    } catch (err) {
      log.warn({ err: describeError(err) }, 'nats drain failed');
    }
    return report;
  };
  return {
    worker,
    nc,
    close: () => (closing ??= close()),
  };
}
