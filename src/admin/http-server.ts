import { createServer, type Server } from 'node:http';
import type { NatsConnection } from '@nats-io/transport-node';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { describeError } from '../errors.js';
import type { WorkerStats } from '../fleet/worker.js';
import type { Logger } from '../logging/logger.js';
import type { FleetGauges } from './fleet-gauges.js';

/** What the admin endpoints read from a worker. */
export interface AdminTarget {
  readonly id: string;
  readonly ready: boolean;
  stats(): WorkerStats;
}

const COUNTERS = {
  applied: 'entries applied to customer state',
  skipped: 'entries skipped because they were already applied (redeliveries, replays)',
  deadLettered: 'messages sent to the dead-letter stream',
  checkpoints: 'checkpoints written',
  replayed: 'entries re-applied while recovering from a crash',
  outputs: 'summaries published',
  timersFired: 'timer entries appended to the log',
} as const;

/** Counters named differently from their stats key. */
const RENAMED_COUNTERS = {
  order_fleet_partition_restarts_total: {
    key: 'restarts',
    help: 'partition runs restarted after a failure (with backoff)',
  },
} as const;

/** Prometheus metrics read from the worker at scrape time (no work on the hot path). */
export function workerMetrics(
  target: AdminTarget,
  fleet: () => FleetGauges | undefined = () => undefined,
): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ worker: target.id });
  collectDefaultMetrics({ register: registry });
  const seen: Partial<Record<keyof typeof COUNTERS, number>> = {};
  for (const [key, help] of Object.entries(COUNTERS) as [keyof typeof COUNTERS, string][]) {
    new Counter({
      name: `order_fleet_${key.replace(/[A-Z]/gu, (c) => `_${c.toLowerCase()}`)}_total`,
      help,
      registers: [registry],
      collect() {
        // Worker totals only grow; publish the growth since the last scrape.
        const now = target.stats()[key];
        this.inc(Math.max(0, now - (seen[key] ?? 0)));
        seen[key] = now;
      },
    });
  }
  const seenRenamed: Partial<Record<string, number>> = {};
  for (const [name, { key, help }] of Object.entries(RENAMED_COUNTERS)) {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const now = target.stats()[key];
        this.inc(Math.max(0, now - (seenRenamed[name] ?? 0)));
        seenRenamed[name] = now;
      },
    });
  }
  const gauges: [string, string, (s: WorkerStats) => number][] = [
    ['order_fleet_partitions_owned', 'partitions this worker runs', (s) => s.partitions],
    [
      'order_fleet_partitions_parked',
      'partitions parked after a terminal failure (corrupt state); see order-fleet status',
      (s) => s.parked,
    ],
    [
      'order_fleet_quarantined_customers',
      'customers quarantined because apply() threw; their entries go to the dead-letter stream',
      (s) => s.quarantined,
    ],
    ['order_fleet_resident_customers', 'customers held in memory', (s) => s.resident],
    ['order_fleet_open_timers', 'customers with an open summary window', (s) => s.openTimers],
  ];
  for (const [name, help, read] of gauges) {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(target.stats()));
      },
    });
  }
  new Gauge({
    name: 'order_fleet_ready',
    help: '1 when every partition given to this worker runs, has caught up and holds its lease now',
    registers: [registry],
    collect() {
      this.set(target.ready ? 1 : 0);
    },
  });
  fleetGaugeMetrics(registry, fleet);
  return registry;
}

/**
 * Fleet-wide gauges, exported only by the worker that measures them (see FleetGaugeReporter):
 * labelled, so that an empty gauge exports no sample rather than a misleading 0.
 */
function fleetGaugeMetrics(registry: Registry, fleet: () => FleetGauges | undefined): void {
  const one: [string, string, (g: FleetGauges) => number][] = [
    [
      'order_fleet_fleet_lag',
      'entries not yet checkpointed, summed over all partitions (the autoscaling signal)',
      (g) => g.lag,
    ],
    ['order_fleet_partitions_unowned', 'partitions no worker holds a lease on', (g) => g.unowned],
    [
      'order_fleet_notifier_lag',
      'summaries not yet accepted by a notifier sink (pending + unacknowledged)',
      (g) => g.notifierLag,
    ],
  ];
  for (const [name, help, read] of one) {
    new Gauge({
      name,
      help,
      labelNames: ['scope'],
      registers: [registry],
      collect() {
        this.reset();
        const g = fleet();
        if (g !== undefined) this.set({ scope: 'fleet' }, read(g));
      },
    });
  }
  new Gauge({
    name: 'order_fleet_dead_letters',
    help: 'messages held in the dead-letter stream, by source (orders, notifications)',
    labelNames: ['scope', 'source'],
    registers: [registry],
    collect() {
      this.reset();
      const g = fleet();
      if (g === undefined) return;
      this.set({ scope: 'fleet', source: 'orders' }, g.deadLetters.orders);
      this.set({ scope: 'fleet', source: 'notifications' }, g.deadLetters.notifications);
    },
  });
}

/**
 * `/healthz` (liveness: the process and its NATS connection are up), `/readyz` (readiness: every
 * partition this worker was given runs and has caught up) and `/metrics` (Prometheus).
 */
export async function startAdminServer(options: {
  readonly port: number;
  readonly host: string;
  readonly target: AdminTarget;
  readonly nc: NatsConnection;
  readonly log: Logger;
  /** Fleet-wide gauges when this worker is the elected reporter. */
  readonly fleet?: () => FleetGauges | undefined;
}): Promise<Server> {
  const registry = workerMetrics(options.target, options.fleet);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (path === '/healthz') {
      const ok = !options.nc.isClosed();
      reply(ok ? 200 : 503, ok ? 'ok\n' : 'nats connection closed\n');
    } else if (path === '/readyz') {
      const ready = options.target.ready;
      const parked = options.target.stats().parked;
      reply(
        ready ? 200 : 503,
        ready
          ? 'ready\n'
          : parked > 0
            ? `not ready: ${parked} partition(s) parked\n`
            : 'not ready\n',
      );
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => reply(200, text, registry.contentType),
        (err: unknown) => {
          options.log.warn({ err: describeError(err) }, 'metrics failed');
          reply(500, 'metrics failed\n');
        },
      );
    } else {
      reply(404, 'not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  options.log.info({ address }, 'admin server listening');
  return server;
}
