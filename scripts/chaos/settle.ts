// After the faults: wait, on state only, until the fleet has nothing left to do. Polled rarely
// (consumer info is not free on 2.9: the server counts each filtered consumer's pending), and
// "settled" must hold on two polls in a row with nothing new appended to the log in between.

import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { fleetStatus } from '../../src/admin/status.js';
import type { ResourceNames } from '../../src/contract/names.js';
import { describeError } from '../../src/errors.js';
import { NOTIFIER_CONSUMER } from '../../src/notifications/notifier.js';
import type { NatsCluster } from '../../test/support/nats-cluster.js';
import { httpGet } from './processes.js';
import type { WorkerFleet } from './worker-fleet.js';

export interface SettleOptions {
  readonly nc: NatsConnection;
  readonly names: ResourceNames;
  readonly cluster: NatsCluster;
  readonly fleet: WorkerFleet;
  /** Distinct idempotency keys the webhook accepted so far. */
  readonly deliveredKeys: () => number;
  readonly timeoutMs: number;
  readonly pollMs: number;
  readonly progress: (text: string) => void;
}

export interface SettleResult {
  readonly settled: boolean;
  readonly tookMs: number;
  /** What was still missing at the last poll (empty when settled). */
  readonly waitingFor: readonly string[];
  readonly polls: number;
}

const silent = pino({ level: 'silent' });

export async function waitForSettle(o: SettleOptions): Promise<SettleResult> {
  const started = Date.now();
  let polls = 0;
  let previousLastSeq = -1;
  let goodInARow = 0;
  let waitingFor: string[] = ['first poll'];
  let lastReported = '';
  while (Date.now() - started < o.timeoutMs) {
    polls++;
    const { missing, ordersLastSeq } = await whatIsMissing(o);
    if (ordersLastSeq !== previousLastSeq) missing.push('the log is still growing');
    previousLastSeq = ordersLastSeq;
    waitingFor = missing;
    goodInARow = missing.length === 0 ? goodInARow + 1 : 0;
    if (goodInARow >= 2) return { settled: true, tookMs: Date.now() - started, waitingFor, polls };
    const summary = missing.slice(0, 3).join('; ');
    if (summary !== lastReported && missing.length > 0) {
      o.progress(`settling: waiting for ${summary}${missing.length > 3 ? '; …' : ''}`);
      lastReported = summary;
    }
    await sleep(o.pollMs);
  }
  return { settled: false, tookMs: Date.now() - started, waitingFor, polls };
}

async function whatIsMissing(
  o: SettleOptions,
): Promise<{ missing: string[]; ordersLastSeq: number }> {
  const missing: string[] = [];
  let ordersLastSeq = -1;
  for (const [i, s] of o.cluster.servers.entries()) {
    const url = s.monitorUrl();
    const port = url === undefined ? undefined : Number(new URL(url).port);
    // The node's JetStream is up and current with the meta layer. Not the full /healthz: that
    // also wants every consumer replica current, and a 2.10 replica of a consumer deleted and
    // recreated while its node was down can stay "not current: monitor goroutine not running"
    // until the server restarts, which says nothing about the fleet.
    const res =
      port === undefined ? undefined : await httpGet(port, '/healthz?js-server-only=true');
    if (res?.status !== 200) missing.push(`NATS node n${i + 1} healthy`);
  }
  const members = o.fleet.members;
  const ids = new Set(members.map((w) => w.id));
  try {
    const status = await fleetStatus(o.nc, o.names, silent);
    const listed = new Set(status.members.map((m) => m.id));
    for (const id of ids) if (!listed.has(id)) missing.push(`${id} in the membership`);
    for (const id of listed) if (!ids.has(id)) missing.push(`${id} gone from the membership`);
    const unowned = status.table.filter((t) => t.owner === null || !ids.has(t.owner));
    if (unowned.length > 0)
      missing.push(`owners for partitions ${unowned.map((t) => t.partition).join(',')}`);
    // An unreadable consumer (lag null) is not settled either.
    const lagging = status.table.filter((t) => t.lag === null || t.lag > 0);
    if (lagging.length > 0)
      missing.push(
        `checkpoints of partitions ${lagging.map((t) => `${t.partition}(lag ${t.lag ?? '?'})`).join(',')}`,
      );
    const jsm = await jetstreamManager(o.nc);
    const orders = await jsm.streams.info(o.names.ordersStream);
    ordersLastSeq = orders.state.last_seq;
    const notifications = await jsm.streams.info(o.names.notificationsStream);
    const consumer = await jsm.consumers.info(o.names.notificationsStream, NOTIFIER_CONSUMER);
    const outstanding = consumer.num_pending + consumer.num_ack_pending;
    if (outstanding > 0) missing.push(`the notifier (${outstanding} not yet delivered)`);
    const stored = notifications.state.messages;
    const delivered = o.deliveredKeys();
    if (delivered < stored)
      missing.push(`webhook deliveries (${delivered} of ${stored} summaries)`);
  } catch (err) {
    missing.push(`fleet status (${describeError(err).slice(0, 120)})`);
  }
  for (const w of members) {
    if (!(await w.ready())) missing.push(`${w.id} ready`);
    const open = await w.metric('order_fleet_open_timers');
    if (open !== undefined && open > 0) missing.push(`${w.id}'s ${open} open summary windows`);
  }
  return { missing, ordersLastSeq };
}
