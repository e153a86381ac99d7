// Acceptance (issue 8): a throwing apply() quarantines its customer. The entry goes to the
// dead-letter stream as APPLY_FAILED, the customer's state records the quarantine and stays the
// exact fold of what was applied before it, the customer's later entries are dead-lettered one by
// one as CUSTOMER_QUARANTINED (never applied out of order), `status --json` and the metrics show
// it, and every other customer of the partition and of the fleet goes on. A real nats-server; the
// worker runs in this process only so that its aggregator can be given a bug.

import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConfig } from '../../src/config/config.js';
import { partitionOf } from '../../src/contract/partition.js';
import { DeadLetterHeader } from '../../src/fleet/dead-letter.js';
import { startOrderWorker, type OrderAggregator } from '../../src/main.js';
import { customerKey } from '../../src/state/keys.js';
import { freePort, startNatsServer } from '../support/index.js';
import { eventually, provision, readStoredStates, silentLogger } from '../support/fleet.js';
import {
  fleetStatusJson,
  readDeadLetters,
  settled,
  useTeardown,
} from '../support/fleet-scenarios.js';
import {
  diffStates,
  generateLoad,
  modelFromPublished,
  publishAll,
  type ModelEvent,
} from '../support/model.js';
import { NO_SUMMARY_TIMERS } from '../support/worker-scenarios.js';

const teardown = useTeardown();

/** The bug: apply() throws on any entry that adds item 666 (generateLoad never does). */
const POISON = 666;
function withBug(standard: OrderAggregator): OrderAggregator {
  return {
    ...standard,
    apply: (state, entry) => {
      const p = entry.payload;
      if (p.type === 'items.added' && p.items.includes(POISON))
        throw new Error(`aggregator bug on item ${POISON}`);
      return standard.apply(state, entry);
    },
  };
}

const StoredSnapshot = z.object({
  lastSeq: z.number(),
  quarantine: z.object({ seq: z.number(), code: z.string(), reason: z.string() }).optional(),
});

describe('a throwing apply()', () => {
  it('quarantines that customer only: dead letters with reasons, an exact fold, visible in status and metrics', async () => {
    const server = await startNatsServer();
    teardown.push(() => server.cleanup());
    const dep = await provision(server.url, { partitions: 4, env: NO_SUMMARY_TIMERS });
    teardown.push(() => dep.close());
    const adminPort = await freePort();
    const running = await startOrderWorker(
      loadConfig({ ...dep.env, WORKER_ID: 'w-q', ADMIN_PORT: String(adminPort) }),
      silentLogger,
      { aggregator: withBug },
    );
    teardown.push(() => running.close().then(() => undefined));
    await settled(dep, ['w-q']);

    // 20 customers; the victim's poison sits in the middle of its own events, and a neighbour in
    // the same partition keeps going.
    const load = generateLoad(20, 600, 7, 'q');
    const victim = 'q-3';
    const neighbour = load.find(
      (e) =>
        e.customerId !== victim &&
        partitionOf(e.customerId, dep.partitions) === partitionOf(victim, dep.partitions),
    )?.customerId;
    const poison: ModelEvent = {
      customerId: victim,
      event: { id: 'poison-1', type: 'items.added', items: [POISON] },
    };
    const before = await publishAll(dep, load.slice(0, 300));
    const [poisonResult] = await publishAll(dep, [poison]);
    const after = await publishAll(dep, load.slice(300));
    if (poisonResult === undefined) throw new Error('poison not published');
    const events = [...load.slice(0, 300), ...load.slice(300)];
    const results = [...before, ...after];
    await settled(dep, ['w-q']);

    // Everyone else equals the model; the victim equals the fold of its entries before the poison.
    const stored = await readStoredStates(dep);
    const others = modelFromPublished(
      events.filter((e) => e.customerId !== victim),
      results.filter((_, i) => events[i]?.customerId !== victim),
    ).expected();
    expect(diffStates(others, new Map([...stored].filter(([id]) => id !== victim)))).toEqual([]);
    const victimBefore = modelFromPublished(
      load.slice(0, 300).filter((e) => e.customerId === victim),
      before.filter((_, i) => load[i]?.customerId === victim),
    ).expected();
    expect(stored.get(victim)?.items).toEqual(victimBefore.get(victim) ?? []);
    expect(neighbour, 'a neighbour in the same partition').toBeDefined();

    // The quarantine is part of the stored state.
    const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
    const entry = await kv.get(customerKey(partitionOf(victim, dep.partitions), victim));
    const snapshot = StoredSnapshot.parse(entry?.json());
    expect(snapshot.quarantine).toMatchObject({ seq: poisonResult.seq, code: 'APPLY_FAILED' });
    const laterSeqs = after
      .filter((_, i) => load[300 + i]?.customerId === victim)
      .map((r) => r.seq)
      .sort((a, b) => a - b);
    expect(laterSeqs.length).toBeGreaterThan(0);
    expect(snapshot.lastSeq).toBe(laterSeqs.at(-1));

    // Dead letters: the poison as APPLY_FAILED, each later entry once as CUSTOMER_QUARANTINED.
    const letters = (await readDeadLetters(dep)).map((m) => ({
      seq: Number(m.header.get(DeadLetterHeader.SourceSeq)),
      reason: m.header.get(DeadLetterHeader.Reason),
    }));
    expect(letters.sort((a, b) => a.seq - b.seq)).toEqual([
      { seq: poisonResult.seq, reason: 'APPLY_FAILED' },
      ...laterSeqs.map((seq) => ({ seq, reason: 'CUSTOMER_QUARANTINED' })),
    ]);

    // Visible: status --json (from the workers' heartbeats) and the metric.
    const status = await eventually(async () => {
      const s = await fleetStatusJson(dep);
      return s.quarantinedCount === 1 ? s : undefined;
    });
    expect(status.quarantined.map((q) => [q.customerId, q.seq, q.code])).toEqual([
      [victim, poisonResult.seq, 'APPLY_FAILED'],
    ]);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metrics).toMatch(/^order_fleet_quarantined_customers\{worker="w-q"\} 1$/mu);
    await running.close();
  });
});
