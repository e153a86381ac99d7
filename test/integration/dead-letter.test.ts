// Bad messages never wedge a partition and are never lost: a mixed stream, published with raw
// `js.publish` (bypassing every SDK check), goes through one real worker process. Each bad
// message must land in the dead-letter stream exactly once, byte for byte, with its reason and
// its origin; each good one must be applied; the worker must never restart.

import { jetstream, jetstreamManager, type StoredMsg } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { eventSubject } from '../../src/contract/subjects.js';
import { partitionOf } from '../../src/contract/partition.js';
import { DeadLetterHeader } from '../../src/fleet/dead-letter.js';
import { eventually, readStoredStates, waitReady, type TestDeployment } from '../support/fleet.js';
import { diffStates, generateLoad, OrderModel } from '../support/model.js';
import { readDeadLetters } from '../support/fleet-scenarios.js';
import { logsWith, waitCheckpointed, workerFleet } from '../support/worker-scenarios.js';

/** Small limits for the worker, so that oversized payloads are cheap to produce. */
const WORKER_LIMITS = { MAX_PAYLOAD_BYTES: '512', MAX_ITEMS_PER_EVENT: '5' };

const { deployment, worker } = workerFleet(WORKER_LIMITS);

const encoder = new TextEncoder();
const bytes = (text: string): Uint8Array => encoder.encode(text);

interface BadCase {
  readonly name: string;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly reason: string;
  readonly rule: string;
}

interface Published {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly seq: number;
}

/** Every way a message can break the contract, each on a subject some partition consumes. */
function badCases(d: TestDeployment): BadCase[] {
  const P = d.partitions;
  const on = (customerId: string, ...rest: string[]): string =>
    [d.names.ordersPrefix, String(partitionOf(customerId, P)), customerId, ...rest].join('.');
  const good = (id: string): string => JSON.stringify({ id, type: 'items.added', items: [1] });
  const wrongPartition = (partitionOf('alice', P) + 1) % P;
  const longId = 'x'.repeat(200);
  return [
    {
      name: 'truncated JSON',
      subject: on('alice'),
      data: bytes('{"id":"m1","type":"items.added","items":[1]'),
      reason: 'MALFORMED_JSON',
      rule: 'json',
    },
    {
      name: 'invalid UTF-8',
      subject: on('alice'),
      data: Uint8Array.from([0xff, 0xfe, 0x7b, 0x7d]),
      reason: 'MALFORMED_JSON',
      rule: 'json',
    },
    {
      name: 'empty body',
      subject: on('bob'),
      data: new Uint8Array(0),
      reason: 'MALFORMED_JSON',
      rule: 'json',
    },
    {
      name: 'no items',
      subject: on('bob'),
      data: bytes('{"id":"e1","type":"items.added","items":[]}'),
      reason: 'INVALID_EVENT',
      rule: 'items',
    },
    {
      name: 'fractional item',
      subject: on('carol'),
      data: bytes('{"id":"e2","type":"items.added","items":[1.5]}'),
      reason: 'INVALID_EVENT',
      rule: 'items.0',
    },
    {
      name: 'missing id',
      subject: on('carol'),
      data: bytes('{"type":"order.created"}'),
      reason: 'INVALID_EVENT',
      rule: 'id',
    },
    {
      name: 'unknown field',
      subject: on('dave'),
      data: bytes('{"id":"e4","type":"order.created","coupon":"X"}'),
      reason: 'INVALID_EVENT',
      rule: 'event',
    },
    {
      name: 'unknown type',
      subject: on('dave'),
      data: bytes('{"id":"e5","type":"order.shipped"}'),
      reason: 'INVALID_EVENT',
      rule: 'type',
    },
    {
      name: 'not an object',
      subject: on('erin'),
      data: bytes('[1,2,3]'),
      reason: 'INVALID_EVENT',
      rule: 'event',
    },
    {
      name: 'too many items',
      subject: on('erin'),
      data: bytes('{"id":"t1","type":"items.added","items":[1,2,3,4,5,6]}'),
      reason: 'TOO_MANY_ITEMS',
      rule: 'max-items-per-event',
    },
    {
      // A valid event, padded with JSON whitespace beyond MAX_PAYLOAD_BYTES.
      name: 'payload too large',
      subject: on('alice'),
      data: bytes(`{"id":"p1",${' '.repeat(600)}"type":"order.created"}`),
      reason: 'PAYLOAD_TOO_LARGE',
      rule: 'max-payload-bytes',
    },
    {
      name: 'customer id too long',
      subject: on(longId),
      data: bytes(good('c1')),
      reason: 'INVALID_CUSTOMER_ID',
      rule: 'max-bytes',
    },
    {
      name: 'customer id with a Unicode space',
      subject: on('bad\u00a0id'),
      data: bytes(good('c2')),
      reason: 'INVALID_CUSTOMER_ID',
      rule: 'no-whitespace',
    },
    {
      name: 'customer id with a control character',
      subject: on('bad\u0007id'),
      data: bytes(good('c3')),
      reason: 'INVALID_CUSTOMER_ID',
      rule: 'no-control',
    },
    {
      name: 'wrong partition',
      subject: `${d.names.ordersPrefix}.${wrongPartition}.alice`,
      data: bytes(good('w1')),
      reason: 'WRONG_PARTITION',
      rule: 'partition-hash',
    },
    {
      // A fourth token other than the fleet's own entry kinds.
      name: 'reserved 4-token subject',
      subject: on('alice', 'snapshot'),
      data: bytes(good('r1')),
      reason: 'INVALID_SUBJECT',
      rule: 'reserved-subject',
    },
    {
      // The fleet's timer-entry subject, carrying something that is not a timer entry.
      name: 'order event on a timer subject',
      subject: on('alice', 'timer'),
      data: bytes(good('r4')),
      reason: 'INVALID_EVENT',
      rule: 'timer-entry',
    },
    {
      name: 'malformed timer entry',
      subject: on('dave', 'timer'),
      data: bytes('{"type":"summary.timer",'),
      reason: 'MALFORMED_JSON',
      rule: 'json',
    },
    {
      name: 'malformed 4th token',
      subject: on('bob', 'Timer!'),
      data: bytes(good('r2')),
      reason: 'INVALID_SUBJECT',
      rule: 'entry',
    },
    {
      name: '5-token subject',
      subject: on('carol', 'a', 'b'),
      data: bytes(good('r3')),
      reason: 'INVALID_SUBJECT',
      rule: 'shape',
    },
  ];
}

/** Header values cannot carry control characters; the sink replaces them with spaces. */
function headerForm(value: string): string {
  // eslint-disable-next-line no-control-regex -- the control characters are the point
  return value.replace(/[\u0000-\u001f\u007f]/gu, ' ');
}

/** Publishes good events (and the bad cases, interleaved) one by one, in a known order. */
async function publishMixed(
  d: TestDeployment,
  bad: readonly BadCase[],
  goodEvents: number,
): Promise<{ model: OrderModel; good: Published[]; bad: (Published & BadCase)[] }> {
  const js = jetstream(d.nc);
  const model = new OrderModel();
  const good: Published[] = [];
  const filed: (Published & BadCase)[] = [];
  const load = generateLoad(12, goodEvents, 3, 'dl');
  const every = Math.max(1, Math.floor(goodEvents / (bad.length + 1)));
  let nextBad = 0;
  for (const [i, e] of load.entries()) {
    if (i % every === every - 1 && nextBad < bad.length) {
      const b = bad[nextBad++];
      if (b !== undefined) {
        const ack = await js.publish(b.subject, b.data);
        filed.push({ ...b, seq: ack.seq });
      }
    }
    const subject = eventSubject(d.names, d.partitions, e.customerId);
    const data = bytes(JSON.stringify(e.event));
    const ack = await js.publish(subject, data, { msgID: e.event.id });
    good.push({ subject, data, seq: ack.seq });
    model.apply(e);
  }
  for (const b of bad.slice(nextBad)) {
    const ack = await js.publish(b.subject, b.data);
    filed.push({ ...b, seq: ack.seq });
  }
  return { model, good, bad: filed };
}

/** The partition whose consumer (filter `<prefix>.<p>.>`) receives `subject`, if any. */
function consumingPartition(d: TestDeployment, subject: string): number | undefined {
  const prefix = `${d.names.ordersPrefix}.`;
  if (!subject.startsWith(prefix)) return undefined;
  const tokens = subject.slice(prefix.length).split('.');
  const p = tokens[0] ?? '';
  return tokens.length >= 2 && /^(0|[1-9]\d*)$/u.test(p) && Number(p) < d.partitions
    ? Number(p)
    : undefined;
}

/** Per partition, the sequence of the last message its consumer can receive. */
function lastSeqOfPartitions(
  d: TestDeployment,
  messages: readonly Published[],
): Map<number, number> {
  const last = new Map<number, number>();
  for (const m of messages) {
    const p = consumingPartition(d, m.subject);
    if (p !== undefined) last.set(p, Math.max(last.get(p) ?? 0, m.seq));
  }
  return last;
}

/** Checks every dead letter against what was published: once each, reason, origin, bytes. */
function checkDeadLetters(
  d: TestDeployment,
  letters: readonly StoredMsg[],
  bad: readonly (Published & BadCase)[],
): void {
  const bySourceSeq = new Map<number, StoredMsg[]>();
  for (const letter of letters) {
    const seq = Number(letter.header.get(DeadLetterHeader.SourceSeq));
    bySourceSeq.set(seq, [...(bySourceSeq.get(seq) ?? []), letter]);
  }
  expect([...bySourceSeq.keys()].sort((a, b) => a - b)).toEqual(bad.map((b) => b.seq));
  for (const b of bad) {
    const found = bySourceSeq.get(b.seq) ?? [];
    expect(found, `${b.name}: filed exactly once`).toHaveLength(1);
    const letter = found[0];
    if (letter === undefined) continue;
    const h = letter.header;
    expect(
      {
        reason: h.get(DeadLetterHeader.Reason),
        rule: h.get(DeadLetterHeader.Rule),
        sourceStream: h.get(DeadLetterHeader.SourceStream),
        sourceSubject: h.get(DeadLetterHeader.SourceSubject),
        partition: h.get(DeadLetterHeader.Partition),
      },
      b.name,
    ).toEqual({
      reason: b.reason,
      rule: b.rule,
      sourceStream: d.names.ordersStream,
      sourceSubject: headerForm(b.subject),
      partition: String(consumingPartition(d, b.subject)),
    });
    expect(h.get(DeadLetterHeader.Detail), b.name).not.toBe('');
    expect(letter.subject).toBe(`${d.names.deadLetterPrefix}.${consumingPartition(d, b.subject)}`);
    expect(Buffer.from(letter.data).equals(Buffer.from(b.data)), `${b.name}: body`).toBe(true);
  }
}

describe('dead letters', () => {
  it('files every bad message once, with its reason and origin, and applies every good one', async () => {
    const d = await deployment();
    const w = worker(d, 'dlq-w1');
    await waitReady(w);
    const pid = w.child.pid;

    const published = await publishMixed(d, badCases(d), 240);
    expect(published.bad).toHaveLength(badCases(d).length);
    // Precondition: every case is one some partition consumes (the stray ones are tested below).
    expect(published.bad.every((b) => consumingPartition(d, b.subject) !== undefined)).toBe(true);
    await waitCheckpointed(d, w.id, lastSeqOfPartitions(d, [...published.good, ...published.bad]));

    checkDeadLetters(d, await readDeadLetters(d), published.bad);
    // Every good event applied, in order, and no bad one touched any state.
    expect(diffStates(published.model.expected(), await readStoredStates(d))).toEqual([]);

    // The same process did all of it: it never restarted, nor did any of its partitions.
    expect(w.child.exitCode).toBeNull();
    expect(w.child.signalCode).toBeNull();
    expect(w.child.pid).toBe(pid);
    expect(
      logsWith(w, 'worker state')
        .filter((l) => l['to'] === 'starting')
        .map((l) => l['from']),
    ).toEqual(['created']);
    expect(logsWith(w, 'partition starting')).toHaveLength(d.partitions);
    expect(logsWith(w, 'partition failed, restarting')).toEqual([]);
    expect(logsWith(w, 'partition start failed')).toEqual([]);
    expect(logsWith(w, 'dead-letter publish retry')).toEqual([]);

    expect(await w.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const stopped = logsWith(w, 'partition stopped');
    expect(stopped).toHaveLength(d.partitions);
    const sum = (field: string): number => stopped.reduce((n, l) => n + Number(l[field]), 0);
    expect({ applied: sum('applied'), deadLettered: sum('deadLettered') }).toEqual({
      applied: published.good.length,
      deadLettered: published.bad.length,
    });
  });

  it('files each bad message once even when a crash makes the next worker replay it', async () => {
    const d = await deployment();
    // The first worker never checkpoints: after its crash, the next one replays everything.
    const first = worker(d, 'dlq-crash-w1', {
      CHECKPOINT_EVERY_EVENTS: '1000000',
      CHECKPOINT_INTERVAL_MS: '3600000',
      CHECKPOINT_IDLE_MS: '0',
    });
    await waitReady(first);
    const published = await publishMixed(d, badCases(d), 120);
    const jsm = await jetstreamManager(d.nc);
    await eventually(async () => {
      const info = await jsm.streams.info(d.names.deadLetterStream);
      return info.state.messages === published.bad.length ? true : undefined;
    });
    expect(await first.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });

    const second = worker(d, 'dlq-crash-w2');
    await waitCheckpointed(
      d,
      second.id,
      lastSeqOfPartitions(d, [...published.good, ...published.bad]),
    );
    const replayed = logsWith(second, 'partition caught up').reduce(
      (n, l) => n + Number(l['replayed']),
      0,
    );
    expect(replayed).toBe(published.good.length + published.bad.length);

    checkDeadLetters(d, await readDeadLetters(d), published.bad);
    expect(diffStates(published.model.expected(), await readStoredStates(d))).toEqual([]);
  });

  // The ORDERS stream captures exactly `<prefix>.<p>.>` for p < P, so a message whose partition
  // token no runner consumes (`orders.99.alice` with P = 8, `orders.01.alice`, `orders.x.alice`,
  // `orders.alice`) is refused at publish time: the publisher gets an error, and nothing is
  // stored that no runner would ever apply or dead-letter.
  it('refuses messages on subjects no partition consumes', async () => {
    const d = await deployment();
    const w = worker(d, 'dlq-stray-w1');
    await waitReady(w);
    const js = jetstream(d.nc);
    const good = bytes(JSON.stringify({ id: 's1', type: 'items.added', items: [1] }));
    for (const subject of [
      `${d.names.ordersPrefix}.${d.partitions + 91}.alice`,
      `${d.names.ordersPrefix}.0${partitionOf('alice', d.partitions)}.alice`,
      `${d.names.ordersPrefix}.x.alice`,
      `${d.names.ordersPrefix}.alice`,
    ]) {
      await expect(js.publish(subject, good, { timeout: 2000 })).rejects.toThrow();
    }
    // A good event is stored and applied as usual.
    const subject = eventSubject(d.names, d.partitions, 'alice');
    const ack = await js.publish(subject, good, { msgID: 's2' });
    await waitCheckpointed(
      d,
      w.id,
      lastSeqOfPartitions(d, [{ subject, data: good, seq: ack.seq }]),
    );
    const stored = await jetstreamManager(d.nc).then((jsm) =>
      jsm.streams.info(d.names.ordersStream),
    );
    expect(stored.state.messages).toBe(1);
    expect(await readStoredStates(d)).toEqual(
      new Map([['alice', { items: [1], lastSeq: ack.seq }]]),
    );
    expect(await readDeadLetters(d)).toEqual([]);
  });
});
