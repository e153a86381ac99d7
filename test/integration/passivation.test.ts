// Bounded memory: with MAX_CUSTOMERS_IN_MEMORY=100 and 1,000 active customers, a real worker
// process must still compute exactly the model, while keeping at most 100 customers in memory.
//
// Two independent readings of how many customers the worker holds, taken once it is idle:
// - its own report, the `order_fleet_resident_customers` gauge on the admin server's /metrics;
// - its observable behaviour: a customer that is not in memory is loaded from the state bucket
//   (a `$JS.API.STREAM.MSG.GET.KV_<bucket>` request, which any client of the account can see),
//   and a `contents` question about such a customer is answered from KV without bringing it into
//   memory, so asking about all N customers causes exactly N − resident loads.
// Both must agree and stay within the cap.

import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import pLimit from 'p-limit';
import { afterEach, describe, expect, it, type TestContext } from 'vitest';
import { partitionOf } from '../../src/contract/partition.js';
import type { ContentsReply } from '../../src/fleet/queries.js';
import {
  provision,
  readStoredStates,
  spawnWorker,
  waitReady,
  type TestDeployment,
  type WorkerProcess,
} from '../support/fleet.js';
import {
  diffStates,
  generateLoad,
  modelFromPublished,
  publishAll,
  type ModelEvent,
} from '../support/model.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';
import { freePort } from '../support/ports.js';
import {
  lastSeqOfPartitions,
  logsWith,
  NO_SUMMARY_TIMERS,
  printWorkerOutputOnFailure,
  storedEventCounts,
  waitCheckpointed,
} from '../support/worker-scenarios.js';

const CAP = 100;
const CUSTOMERS = 1_000;

let server: NatsServerHandle | undefined;
let dep: TestDeployment | undefined;
const workers: WorkerProcess[] = [];
const subscriptions: Subscription[] = [];

afterEach(async (ctx: TestContext) => {
  printWorkerOutputOnFailure(ctx, workers);
  for (const s of subscriptions.splice(0)) s.unsubscribe();
  for (const w of workers.splice(0)) await w.stop('SIGKILL');
  await dep?.close();
  dep = undefined;
  await server?.cleanup();
  server = undefined;
});

/** Counts loads of customer snapshots: KV gets on the state bucket for `c.*` keys. */
class LoadCounter {
  count = 0;
  readonly errors: Error[] = [];

  constructor(nc: NatsConnection, bucket: string) {
    const stream = `KV_${bucket}`;
    const customerPrefix = `$KV.${bucket}.c.`;
    const onGet = (subject: string, body: string): void => {
      // Classic and direct gets carry the key in the body; newer direct gets in the subject.
      const key =
        body === '' ? subject.slice(subject.indexOf(stream) + stream.length + 1) : lastBySubj(body);
      if (key.startsWith(customerPrefix)) this.count++;
    };
    for (const subject of [
      `$JS.API.STREAM.MSG.GET.${stream}`,
      `$JS.API.DIRECT.GET.${stream}`,
      `$JS.API.DIRECT.GET.${stream}.>`,
    ]) {
      subscriptions.push(
        nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err !== null) this.errors.push(err);
            else onGet(msg.subject, msg.string());
          },
        }),
      );
    }
  }
}

function lastBySubj(body: string): string {
  const parsed = JSON.parse(body) as { last_by_subj?: unknown };
  return typeof parsed.last_by_subj === 'string' ? parsed.last_by_subj : '';
}

/**
 * Asks the owner about every customer; returns how many it held in memory (= asked − loads the
 * questions caused). Every answer must come from the owner and match the model.
 */
async function residentCustomers(
  d: TestDeployment,
  owner: string,
  loads: LoadCounter,
  expected: ReadonlyMap<string, readonly number[]>,
): Promise<number> {
  const before = loads.count;
  const limit = pLimit(64);
  const replies = await Promise.all(
    [...expected.keys()].map((customerId) =>
      limit(async () => {
        const p = partitionOf(customerId, d.partitions);
        const msg = await d.nc.request(
          `${d.names.queryPrefix}.${p}`,
          JSON.stringify({ customerId }),
          { timeout: 10_000 },
        );
        return msg.json<ContentsReply>();
      }),
    ),
  );
  // Each load was requested before its answer was sent; a round trip on the same connection
  // delivers every copy of those requests that the server routed to us before the answers.
  await d.nc.flush();
  expect(loads.errors).toEqual([]);
  expect(replies.every((r) => !r.stale && r.owner === owner)).toBe(true);
  expect(diffStates(expected, new Map(replies.map((r) => [r.customerId, r])))).toEqual([]);
  const loaded = loads.count - before;
  expect(loaded).toBeLessThanOrEqual(expected.size);
  return expected.size - loaded;
}

function eventsPerCustomer(events: readonly ModelEvent[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of events) out.set(e.customerId, (out.get(e.customerId) ?? 0) + 1);
  return out;
}

/** The worker's own report: the `order_fleet_resident_customers` gauge on its admin server. */
async function reportedResident(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  expect(res.status, text).toBe(200);
  const match = /^order_fleet_resident_customers\{[^}]*\} (\d+)$/mu.exec(text);
  if (match?.[1] === undefined) throw new Error(`no resident gauge in /metrics:\n${text}`);
  return Number(match[1]);
}

async function setUp(
  env: Record<string, string>,
  id: string,
): Promise<{
  d: TestDeployment;
  w: WorkerProcess;
  loads: LoadCounter;
  metrics: () => Promise<number>;
}> {
  server = await startNatsServer();
  const d = await provision(server.url, {
    isolate: false,
    leaseTtlMs: 8000,
    env: NO_SUMMARY_TIMERS,
  });
  dep = d;
  const loads = new LoadCounter(d.nc, d.names.stateBucket);
  await d.nc.flush();
  const port = await freePort();
  const w = spawnWorker(d, id, { ...env, ADMIN_PORT: String(port), ADMIN_HOST: '127.0.0.1' });
  workers.push(w);
  await waitReady(w);
  return { d, w, loads, metrics: () => reportedResident(port) };
}

describe('passivation', () => {
  it(`keeps at most ${CAP} of ${CUSTOMERS} active customers in memory and still computes the model`, async () => {
    const { d, w, loads, metrics } = await setUp(
      { MAX_CUSTOMERS_IN_MEMORY: String(CAP) },
      'passivation-w1',
    );

    // Phase 1, published while the worker runs.
    const load1 = generateLoad(CUSTOMERS, 4_000, 11, 'pas');
    const results1 = await publishAll(d, load1);
    await waitCheckpointed(d, w.id, lastSeqOfPartitions(d, results1));
    const distinct1 = new Set(load1.map((e) => e.customerId)).size;
    // Customers were dropped and loaded again: more loads than customers.
    expect(loads.count).toBeGreaterThan(distinct1);
    const expected1 = modelFromPublished(load1, results1).expected();
    const reported1 = await metrics();
    expect(reported1).toBeLessThanOrEqual(CAP);
    expect(await residentCustomers(d, w.id, loads, expected1)).toBe(reported1);

    // Phase 2: the same customers again.
    const load2 = generateLoad(CUSTOMERS, 4_000, 12, 'pas');
    const results2 = await publishAll(d, load2);
    await waitCheckpointed(d, w.id, lastSeqOfPartitions(d, results2));
    const all = [...load1, ...load2];
    const expected = modelFromPublished(all, [...results1, ...results2]).expected();
    const reported2 = await metrics();
    expect(reported2).toBeLessThanOrEqual(CAP);
    expect(await residentCustomers(d, w.id, loads, expected)).toBe(reported2);

    // Exactly the model: every customer's items, and each event applied exactly once.
    expect(diffStates(expected, await readStoredStates(d))).toEqual([]);
    const counts = await storedEventCounts(d);
    const wrongCounts = [...eventsPerCustomer(all)].filter(([id, n]) => counts.get(id) !== n);
    expect(wrongCounts).toEqual([]);

    expect(await w.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const stopped = logsWith(w, 'partition stopped');
    const applied = stopped.reduce((n, l) => n + Number(l['applied']), 0);
    expect(applied).toBe(all.length);
  });

  // Regression test for a fixed bug: each partition's share of the cap is
  // `Math.floor(MAX_CUSTOMERS_IN_MEMORY / partitions)`, and #passivate used to keep at least one
  // customer per partition (`Math.max(1, capacity())`), so a cap below the number of owned
  // partitions was not honoured: with a cap of 4 and 8 partitions the worker settled at 8.
  it('honours a cap below the number of partitions', async () => {
    const cap = 4;
    const { d, w, loads, metrics } = await setUp(
      { MAX_CUSTOMERS_IN_MEMORY: String(cap) },
      'passivation-small-cap-w1',
    );
    expect(d.partitions).toBeGreaterThan(cap);
    const load = generateLoad(100, 400, 14, 'small');
    const results = await publishAll(d, load);
    await waitCheckpointed(d, w.id, lastSeqOfPartitions(d, results));
    const expected = modelFromPublished(load, results).expected();
    const reported = await metrics();
    expect(await residentCustomers(d, w.id, loads, expected)).toBe(reported);
    expect(reported).toBeLessThanOrEqual(cap);
  });

  it('control: without a tight cap every customer stays in memory and is loaded at most once', async () => {
    const { d, w, loads, metrics } = await setUp({}, 'passivation-control-w1');
    const load = generateLoad(CUSTOMERS, 3_000, 13, 'ctl');
    const results = await publishAll(d, load);
    await waitCheckpointed(d, w.id, lastSeqOfPartitions(d, results));
    // At most once each: a customer new to the bucket is not read at all once the runner has
    // scanned which customers are stored (it starts here with none).
    expect(loads.count).toBeLessThanOrEqual(new Set(load.map((e) => e.customerId)).size);
    const expected = modelFromPublished(load, results).expected();
    expect(await metrics()).toBe(expected.size);
    expect(await residentCustomers(d, w.id, loads, expected)).toBe(expected.size);
    expect(diffStates(expected, await readStoredStates(d))).toEqual([]);
  });
});
