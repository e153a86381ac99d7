// Acceptance tests of the worker, through the real CLI and real worker processes on a real
// nats-server: the article scenario (`publish` then `contents`, answered by the owner or, with no
// worker, from KV marked stale) and a graceful SIGTERM handoff that leaves nothing to replay.

import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { askContents, type ContentsReply } from '../../src/fleet/queries.js';
import { orderAggregator, renderOrder } from '../../src/orders/order-aggregator.js';
import { CustomerStore } from '../../src/state/customer-store.js';
import {
  eventually,
  readStoredStates,
  runCli,
  waitReady,
  type TestDeployment,
} from '../support/fleet.js';
import { diffStates, generateLoad, modelFromPublished, publishAll } from '../support/model.js';
import { logsWith, workerFleet } from '../support/worker-scenarios.js';

const { deployment, worker } = workerFleet();

async function cli(d: TestDeployment, args: readonly string[]): Promise<string> {
  const result = await runCli(d, args);
  expect(result.code, `order-fleet ${args.join(' ')}\n${result.stderr}`).toBe(0);
  return result.stdout;
}

async function contents(d: TestDeployment, customerId: string): Promise<ContentsReply> {
  return JSON.parse(await cli(d, ['contents', customerId, '--json'])) as ContentsReply;
}

/** The article: two customers, two orders, items added in interleaved order. */
async function publishArticle(d: TestDeployment): Promise<void> {
  await cli(d, ['publish', 'John', 'order.created']);
  await cli(d, ['publish', 'Karan', 'order.created']);
  await cli(d, ['publish', 'Karan', 'items.added', '2', '3']);
  await cli(d, ['publish', 'John', 'items.added', '1', '2']);
}

describe('worker: the article scenario through the CLI', () => {
  it('answers contents from the owner while a worker runs, and from KV (stale) without one', async () => {
    const d = await deployment();
    await publishArticle(d);

    // Nobody has applied anything yet: the answer comes from (empty) KV and says so.
    const before = await contents(d, 'John');
    expect(before).toMatchObject({ customerId: 'John', items: [], lastSeq: 0, stale: true });
    expect(before.owner).toBeUndefined();

    const w = worker(d, 'article-w1');
    await waitReady(w);
    const john = await contents(d, 'John');
    const karan = await contents(d, 'Karan');
    expect(john).toMatchObject({ customerId: 'John', items: [1, 2], stale: false, owner: w.id });
    expect(karan).toMatchObject({ customerId: 'Karan', items: [2, 3], stale: false, owner: w.id });

    expect(await w.stop('SIGTERM')).toEqual({ code: 0, signal: null });

    // No worker: KV holds what the worker checkpointed on its way out.
    const johnFromKv = await contents(d, 'John');
    const karanFromKv = await contents(d, 'Karan');
    expect(johnFromKv).toMatchObject({ items: [1, 2], lastSeq: john.lastSeq, stale: true });
    expect(karanFromKv).toMatchObject({ items: [2, 3], lastSeq: karan.lastSeq, stale: true });
    expect(johnFromKv.owner).toBeUndefined();
  });
});

describe('worker: SIGTERM handoff', () => {
  it('hands over every partition cleanly: the next worker replays nothing and answers the same', async () => {
    const d = await deployment();
    // The first worker never checkpoints on its own: whatever it holds lives only in its memory
    // until the SIGTERM handoff writes it.
    const first = worker(d, 'handoff-w1', {
      CHECKPOINT_EVERY_EVENTS: '1000000',
      CHECKPOINT_INTERVAL_MS: '3600000',
      CHECKPOINT_IDLE_MS: '0',
    });
    await waitReady(first);

    await publishArticle(d);
    const load = generateLoad(200, 2000, 7, 'handoff');
    const results = await publishAll(d, load);
    const expected = new Map(modelFromPublished(load, results).expected());
    expected.set('John', [1, 2]);
    expected.set('Karan', [2, 3]);

    const store = new CustomerStore(await new Kvm(d.nc).open(d.names.stateBucket), orderAggregator);
    const ask = (id: string): Promise<ContentsReply> =>
      askContents(d.nc, id, {
        names: d.names,
        partitions: d.partitions,
        timeoutMs: 5000,
        store,
        render: renderOrder,
      });
    const askAll = async (): Promise<Map<string, ContentsReply>> =>
      new Map(
        await Promise.all([...expected.keys()].map(async (id) => [id, await ask(id)] as const)),
      );

    // The first worker holds every customer's state, answering as the owner...
    const held = await eventually(async () => {
      const replies = await askAll();
      const fresh = [...replies.values()].every((r) => !r.stale && r.owner === first.id);
      return fresh && diffStates(expected, replies).length === 0 ? replies : undefined;
    });
    expect(held.size).toBe(expected.size);
    // ...and none of it is in KV yet.
    expect((await readStoredStates(d)).size).toBe(0);

    expect(await first.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const stopped = logsWith(first, 'partition stopped');
    expect(stopped).toHaveLength(d.partitions);
    expect(stopped.every((l) => l['state'] === 'stopped')).toBe(true);
    const appliedByFirst = stopped.reduce((n, l) => n + Number(l['applied']), 0);
    expect(appliedByFirst).toBe(results.length + 4);

    // The final checkpoints put everything in KV, and `contents` without a worker reads it.
    expect(diffStates(expected, await readStoredStates(d))).toEqual([]);
    expect(await contents(d, 'John')).toMatchObject({ items: [1, 2], stale: true });

    const second = worker(d, 'handoff-w2');
    await waitReady(second);
    const starting = logsWith(second, 'partition starting');
    expect(starting.map((l) => Number(l['partition'])).sort((a, b) => a - b)).toEqual(
      Array.from({ length: d.partitions }, (_, p) => p),
    );
    expect(starting.map((l) => l['cleanHandoff'])).toEqual(
      Array.from({ length: d.partitions }, () => true),
    );
    expect(starting.map((l) => l['previousOwner'])).toEqual(
      Array.from({ length: d.partitions }, () => first.id),
    );
    const caughtUp = logsWith(second, 'partition caught up');
    expect(caughtUp).toHaveLength(d.partitions);
    expect(caughtUp.map((l) => l['replayed'])).toEqual(
      Array.from({ length: d.partitions }, () => 0),
    );

    // The second worker answers exactly what the first one held.
    expect(await contents(d, 'John')).toMatchObject({
      items: [1, 2],
      stale: false,
      owner: second.id,
    });
    expect(await contents(d, 'Karan')).toMatchObject({
      items: [2, 3],
      stale: false,
      owner: second.id,
    });
    const answered = await askAll();
    expect([...answered.values()].every((r) => !r.stale && r.owner === second.id)).toBe(true);
    expect(diffStates(expected, answered)).toEqual([]);
    for (const [id, reply] of answered) expect(reply.lastSeq).toBe(held.get(id)?.lastSeq);

    expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });
});
