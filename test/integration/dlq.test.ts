// `order-fleet dlq`: dead letters of several reasons are listed with the right counts, shown byte
// for byte, and good-but-rejected events (too many items for the worker's limit) are redriven
// after the limit is raised: applied once, and a second redrive — even one that finds an
// interrupted record long after the duplicate window — changes nothing. Real server, real worker
// processes, the real CLI.

import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { eventSubject } from '../../src/contract/subjects.js';
import {
  readStoredStates,
  runCli,
  waitReady,
  type CliResult,
  type TestDeployment,
} from '../support/fleet.js';
import { diffStates, OrderModel, type ModelEvent } from '../support/model.js';
import { lastSeqOfPartitions, waitCheckpointed, workerFleet } from '../support/worker-scenarios.js';
import { eventually } from '../support/fleet.js';

const { deployment, worker } = workerFleet({ MAX_ITEMS_PER_EVENT: '5' });

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

function json<T>(result: CliResult): T {
  if (result.code !== 0)
    throw new Error(`cli exited ${result.code}: ${result.stderr}\n${result.stdout}`);
  const lines = result.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] ?? '') as T;
}

interface ListJson {
  total: number;
  redriven: number;
  reasons: { reason: string; count: number; redriven: number; customerCount: number }[];
}
interface RedriveJson {
  selected: number;
  redriven: number;
  wouldRedrive: number;
  alreadyRedriven: number;
  refused: number;
}

async function streamCount(d: TestDeployment, stream: string): Promise<number> {
  const jsm = await jetstreamManager(d.nc);
  return (await jsm.streams.info(stream)).state.messages;
}

describe('dlq list, show, redrive, purge', () => {
  // About 20 CLI processes in a row: generous on a loaded machine (a bound, not a measurement).
  it(
    'counts dead letters by reason and redrives good-but-rejected events exactly once',
    { timeout: 400_000 },
    async () => {
      const d = await deployment();
      const w1 = worker(d, 'dlq-w1');
      await waitReady(w1);
      const js = jetstream(d.nc);
      const model = new OrderModel();
      const published: { customerId: string; seq: number }[] = [];
      const oversized: ModelEvent[] = [];
      const bodies = new Map<string, string>();
      const publish = async (customerId: string, body: string, id: string): Promise<number> => {
        bodies.set(id, body);
        const ack = await js.publish(eventSubject(d.names, d.partitions, customerId), bytes(body), {
          msgID: id,
        });
        published.push({ customerId, seq: ack.seq });
        return ack.seq;
      };
      // Good events, oversized ones (valid, but more items than the worker's limit of 5),
      // malformed JSON and unknown types, interleaved across four customers.
      const customers = ['ann', 'ben', 'cat', 'dan'];
      let n = 0;
      for (let round = 0; round < 3; round++) {
        for (const c of customers) {
          const good: ModelEvent = {
            customerId: c,
            event: { id: `g-${n}`, type: 'items.added', items: [n, n + 1] },
          };
          await publish(c, JSON.stringify(good.event), good.event.id);
          model.apply(good);
          n++;
          if (round < 2 && c !== 'dan') {
            const big: ModelEvent = {
              customerId: c,
              event: { id: `big-${n}`, type: 'items.added', items: [1, 2, 3, 4, 5, 6, n] },
            };
            await publish(c, JSON.stringify(big.event), big.event.id);
            oversized.push(big);
          }
        }
        await publish('dan', '{"id":"m', `bad-json-${round}`);
        if (round < 2)
          await publish(
            'cat',
            JSON.stringify({ id: `u-${round}`, type: 'order.shipped' }),
            `u-${round}`,
          );
      }
      expect(oversized).toHaveLength(6);
      await waitCheckpointed(d, w1.id, lastSeqOfPartitions(d, published));
      await eventually(async () =>
        (await streamCount(d, d.names.deadLetterStream)) === 11 ? true : undefined,
      );

      const list = json<ListJson>(await runCli(d, ['dlq', 'list', '--json']));
      expect(list.total).toBe(11);
      expect(
        Object.fromEntries(
          list.reasons.map((r) => [r.reason, [r.count, r.redriven, r.customerCount]]),
        ),
      ).toEqual({ TOO_MANY_ITEMS: [6, 0, 3], MALFORMED_JSON: [3, 0, 1], INVALID_EVENT: [2, 0, 1] });
      const byCustomer = json<ListJson>(
        await runCli(d, ['dlq', 'list', '--json', '--customer', 'cat']),
      );
      expect(byCustomer.total).toBe(4);

      // show: the original bytes and where they came from.
      const first = json<{ seq: number; base64: string; reason: string; sourceMsgId: string }>(
        await runCli(d, ['dlq', 'show', '1', '--json']),
      );
      expect(Buffer.from(first.base64, 'base64').toString('utf8')).toBe(
        bodies.get(first.sourceMsgId),
      );
      const text = await runCli(d, ['dlq', 'show', '1']);
      expect(text.code).toBe(0);
      expect((await runCli(d, ['dlq', 'show', '999'])).code).not.toBe(0);

      // The fix: a worker with a higher limit replaces the first one.
      expect(await w1.stop('SIGTERM')).toEqual({ code: 0, signal: null });
      const w2 = worker(d, 'dlq-w2', { MAX_ITEMS_PER_EVENT: '100' });
      await waitReady(w2);

      const ordersBefore = await streamCount(d, d.names.ordersStream);
      const dry = json<RedriveJson>(
        await runCli(d, ['dlq', 'redrive', '--reason', 'TOO_MANY_ITEMS', '--dry-run', '--json']),
      );
      expect(dry).toMatchObject({ selected: 6, wouldRedrive: 6, redriven: 0 });
      expect(await streamCount(d, d.names.ordersStream)).toBe(ordersBefore);
      // Without a selection, redrive refuses (exit 2) and does nothing.
      expect((await runCli(d, ['dlq', 'redrive'])).code).toBe(2);

      const redrive = await runCli(d, ['dlq', 'redrive', '--reason', 'TOO_MANY_ITEMS', '--json']);
      expect(json<RedriveJson>(redrive)).toMatchObject({ selected: 6, redriven: 6 });
      const outcomes = redrive.stdout
        .trim()
        .split('\n')
        .slice(0, -1)
        .map((l) => JSON.parse(l) as { seq: number; subject: string; newSeq: number });
      // Redriven events are appended: per customer they follow everything else, in their order.
      for (const big of oversized) model.apply(big);
      for (const o of outcomes)
        published.push({ customerId: o.subject.split('.').pop() ?? '', seq: o.newSeq });
      await waitCheckpointed(d, w2.id, lastSeqOfPartitions(d, published));
      expect(diffStates(model.expected(), await readStoredStates(d))).toEqual([]);
      expect(await streamCount(d, d.names.deadLetterStream)).toBe(11);

      // Again: nothing changes.
      const ordersAfter = await streamCount(d, d.names.ordersStream);
      expect(
        json<RedriveJson>(
          await runCli(d, ['dlq', 'redrive', '--reason', 'TOO_MANY_ITEMS', '--json']),
        ),
      ).toMatchObject({ selected: 6, redriven: 0, alreadyRedriven: 6 });
      // A redrive that stopped between its record and its publish, found long after the duplicate
      // window: the copy is found on the source subject and not published again.
      const meta = await new Kvm(d.nc).open(d.names.metaBucket);
      const seq = outcomes[0]?.seq ?? 0;
      const record = await meta.get(`dlq-redrive.${seq}`);
      const stale = { ...record?.json<{ subject: string }>(), state: 'publishing', seq: undefined };
      await meta.put(
        `dlq-redrive.${seq}`,
        JSON.stringify({ ...stale, at: new Date(Date.now() - 3_600_000).toISOString() }),
      );
      expect(
        json<RedriveJson>(await runCli(d, ['dlq', 'redrive', '--seq', String(seq), '--json'])),
      ).toMatchObject({ selected: 1, redriven: 0, alreadyRedriven: 1 });
      expect(await streamCount(d, d.names.ordersStream)).toBe(ordersAfter);
      expect(diffStates(model.expected(), await readStoredStates(d))).toEqual([]);

      // A rebuild under the raised limit finds the originals valid now: they are superseded by
      // their redriven copies and not applied a second time.
      const rebuilt = await runCli(d, ['rebuild', '--yes', '--json'], {
        MAX_ITEMS_PER_EVENT: '100',
      });
      expect(rebuilt.code, rebuilt.stderr).toBe(0);
      await eventually(async () =>
        diffStates(model.expected(), await readStoredStates(d)).length === 0 ? true : undefined,
      );
      const history = json<{ steps: { kind: string }[] }>(
        await runCli(d, ['history', 'ann', '--json'], { MAX_ITEMS_PER_EVENT: '100' }),
      );
      expect(history.steps.filter((s) => s.kind === 'superseded')).toHaveLength(2);

      const listed = json<ListJson>(await runCli(d, ['dlq', 'list', '--json']));
      expect(listed.redriven).toBe(6);

      // purge: confirmation first, then only the selection goes.
      expect((await runCli(d, ['dlq', 'purge', '--reason', 'MALFORMED_JSON'])).code).toBe(2);
      expect(
        json<{ purged: number }>(
          await runCli(d, ['dlq', 'purge', '--reason', 'MALFORMED_JSON', '--yes', '--json']),
        ).purged,
      ).toBe(3);
      const afterPurge = json<ListJson>(await runCli(d, ['dlq', 'list', '--json']));
      expect(afterPurge.total).toBe(8);
      expect(afterPurge.reasons.map((r) => r.reason).sort()).toEqual([
        'INVALID_EVENT',
        'TOO_MANY_ITEMS',
      ]);
    },
  );
});
