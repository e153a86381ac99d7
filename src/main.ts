import type { NatsConnection } from '@nats-io/transport-node';
import type { Config } from './config/config.js';
import { resourceNames } from './contract/names.js';
import { describeError } from './errors.js';
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
  const nc = await connectNats(config.nats, `order-fleet-worker-${config.worker.id}`, log.child({ component: 'nats' }));
  let deployment;
  try {
    deployment = await loadDeployment(nc, names);
  } catch (err) {
    // Without this the open connection would keep a failed process alive.
    await nc.close();
    throw err;
  }
  const worker = new Worker<OrderState, OrderEvent>({
    nc,
    names,
    partitions: deployment.partitions,
    worker: config.worker,
    domain: {
      aggregator: orderAggregator,
      decoder: orderEntryDecoder(names, deployment.partitions, config.limits),
      render: renderOrder,
    },
    log,
  });
  try {
    await worker.start();
  } catch (err) {
    await nc.close();
    throw err;
  }
  let closing: Promise<WorkerReport> | undefined;
  const close = async (): Promise<WorkerReport> => {
    const report = await worker.close();
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
