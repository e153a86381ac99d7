// The consumer a clean leaver prepares for the next owner (PartitionConsumer.prepareNext): real
// nats-server, real `order-fleet worker` processes, real SIGTERM. Proves that
// - a graceful stop leaves each partition a consumer at the entry after its clean watermark,
//   named by that watermark, from which nothing has been delivered;
// - the next owner binds it (the consumer is the leaver's: created before the next owner
//   started) and applies exactly what came after, nothing lost or doubled;
// - if the prepared consumer is gone by then, the next owner still applies everything: its pulls
//   find no consumer, it is reported stalled and recreated from the watermark.

import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { partitionConsumerName } from '../../src/contract/internal-names.js';
import { partitionOf } from '../../src/contract/partition.js';
import { WatermarkSchema, type Watermark } from '../../src/state/watermark-store.js';
import { watermarkKey } from '../../src/state/keys.js';
import type { PublishResult } from '../../src/publisher/order-publisher.js';
import {
  expectModel,
  linesOf,
  numberField,
  stopGracefully,
  useTeardown,
} from '../support/fleet-scenarios.js';
import {
  eventually,
  provision,
  spawnWorker,
  waitReady,
  type TestDeployment,
} from '../support/fleet.js';
import { generateLoad, publishAll, type ModelEvent } from '../support/model.js';
import { startNatsServer } from '../support/nats-server.js';

const PARTITIONS = 2;
const teardown = useTeardown();

async function watermarks(dep: TestDeployment): Promise<Watermark[]> {
  const kv = await new Kvm(dep.nc).open(dep.names.metaBucket);
  const out: Watermark[] = [];
  for (let p = 0; p < PARTITIONS; p++) {
    const entry = await kv.get(watermarkKey(p));
    out.push(WatermarkSchema.parse(entry?.json()));
  }
  return out;
}

/** Until every partition's watermark covers its partition's last stored event. */
async function checkpointedTo(
  dep: TestDeployment,
  events: readonly ModelEvent[],
  results: readonly PublishResult[],
): Promise<void> {
  const last = new Map<number, number>();
  events.forEach((e, i) => {
    const p = partitionOf(e.customerId, PARTITIONS);
    last.set(p, Math.max(last.get(p) ?? 0, results[i]?.seq ?? 0));
  });
  await eventually(async () => {
    const marks = await watermarks(dep);
    return marks.every((w, p) => w.seq >= (last.get(p) ?? 0)) ? true : undefined;
  });
}

describe('handoff consumer', () => {
  it('is prepared by a clean leaver, bound by the next owner, and recreated when gone', async () => {
    const server = await startNatsServer();
    teardown.push(() => server.cleanup());
    const dep = await provision(server.url, { partitions: PARTITIONS });
    teardown.push(() => dep.close());
    const jsm = await jetstreamManager(dep.nc);

    const first = generateLoad(200, 2000, 7, 'hc');
    const events: ModelEvent[] = [...first];
    const results: PublishResult[] = await publishAll(dep, first);
    const a = spawnWorker(dep, 'hc-a');
    teardown.push(async () => void (await a.stop('SIGKILL')));
    await waitReady(a);
    await checkpointedTo(dep, events, results);
    await stopGracefully(a);

    // Each partition: a clean watermark naming a consumer at the next entry, nothing delivered.
    const marks = await watermarks(dep);
    const created = new Map<number, string>();
    for (const [p, w] of marks.entries()) {
      expect(w.clean).toBe(true);
      expect(w.preparedConsumer?.startSeq).toBe(w.seq + 1);
      const info = await jsm.consumers.info(dep.names.ordersStream, partitionConsumerName(p));
      expect(info.config.opt_start_seq).toBe(w.seq + 1);
      expect(info.delivered.consumer_seq).toBe(0);
      created.set(p, info.created);
    }

    // More events while nobody runs; partition 1's prepared consumer disappears meanwhile.
    const second = generateLoad(200, 1000, 8, 'hc');
    events.push(...second);
    results.push(...(await publishAll(dep, second)));
    await jsm.consumers.delete(dep.names.ordersStream, partitionConsumerName(1));

    const b = spawnWorker(dep, 'hc-b');
    teardown.push(async () => void (await b.stop('SIGKILL')));
    await waitReady(b, 60_000);
    // Partition 0 bound the leaver's consumer: the same one, made before b started.
    const info0 = await jsm.consumers.info(dep.names.ordersStream, partitionConsumerName(0));
    expect(info0.created).toBe(created.get(0));
    // Partition 1 found none (its pulls time out as missed heartbeats), was restarted and
    // recreated its consumer from the watermark.
    await eventually(async () => {
      const info = await jsm.consumers.info(dep.names.ordersStream, partitionConsumerName(1));
      return info.created !== created.get(1) && info.num_pending === 0 ? true : undefined;
    }, 60_000);
    await checkpointedTo(dep, events, results);
    await stopGracefully(b);

    // Nothing lost, nothing doubled across both owners.
    await expectModel(dep, events, results);
    const applied = [...linesOf(a, 'partition stopped'), ...linesOf(b, 'partition stopped')].reduce(
      (sum, l) => sum + numberField(l, 'applied'),
      0,
    );
    expect(applied).toBe(new Set(results.map((r) => r.seq)).size);
  });
});
