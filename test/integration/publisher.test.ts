// Acceptance: the OrderPublisher SDK against a real nats-server. Events are stored exactly once
// (deduplicated by id, even across a SIGKILL of the server mid-stream), bad input is rejected
// before anything reaches the stream, and the partition count comes from the deployment.

import { connect as netConnect, createServer, type Socket } from 'node:net';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_CUSTOMER_ID_BYTES } from '../../src/contract/customer-id.js';
import { DEFAULT_EVENT_LIMITS } from '../../src/contract/event.js';
import { resourceNames } from '../../src/contract/names.js';
import { partitionOf } from '../../src/contract/partition.js';
import { ErrorCode, ValidationError } from '../../src/errors.js';
import {
  OrderPublisher,
  type OrderEventInput,
  type OrderPublisherOptions,
  type PublishResult,
} from '../../src/publisher/order-publisher.js';
import { eventually, provision, silentLogger, type TestDeployment } from '../support/fleet.js';
import { generateLoad, type ModelEvent } from '../support/model.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';

const teardown: (() => Promise<void>)[] = [];

afterEach(async () => {
  // Reverse order: close clients before killing the servers they talk to.
  for (const task of teardown.splice(0).reverse()) await task();
});

async function startServer(): Promise<NatsServerHandle> {
  const server = await startNatsServer();
  teardown.push(() => server.cleanup());
  return server;
}

/** A deployment on its own server (so the public default names are used: no namespace). */
async function deploy(
  server: NatsServerHandle,
  opts: { partitions?: number; isolate?: boolean } = {},
): Promise<TestDeployment> {
  const dep = await provision(server.url, {
    partitions: opts.partitions ?? 8,
    isolate: false,
    ...opts,
  });
  teardown.push(() => dep.close());
  return dep;
}

function publisherOptions(
  dep: TestDeployment,
  overrides: Partial<OrderPublisherOptions> = {},
): OrderPublisherOptions {
  return {
    names: dep.names,
    partitions: dep.partitions,
    limits: DEFAULT_EVENT_LIMITS,
    maxInFlight: 256,
    maxAttempts: 5,
    timeoutMs: 5000,
    log: silentLogger,
    ...overrides,
  };
}

function newPublisher(
  dep: TestDeployment,
  overrides: Partial<OrderPublisherOptions> = {},
): OrderPublisher {
  const publisher = new OrderPublisher(dep.nc, publisherOptions(dep, overrides));
  teardown.push(() => publisher.close());
  return publisher;
}

async function messageCount(nc: NatsConnection, stream: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(stream)).state.messages;
}

interface StoredEvent {
  readonly seq: number;
  readonly subject: string;
  readonly msgId: string;
}

/** Reads the whole stream back with an ordered consumer. */
async function readStream(nc: NatsConnection, stream: string): Promise<StoredEvent[]> {
  const jsm = await jetstreamManager(nc);
  const { state } = await jsm.streams.info(stream);
  if (state.messages === 0) return [];
  const consumer = await jetstream(nc).consumers.get(stream);
  const messages = await consumer.consume();
  const out: StoredEvent[] = [];
  try {
    for await (const m of messages) {
      out.push({ seq: m.seq, subject: m.subject, msgId: m.headers?.get('Nats-Msg-Id') ?? '' });
      if (m.seq >= state.last_seq) break;
    }
  } finally {
    await messages.close();
  }
  return out;
}

/** Awaits the promise, expects a ValidationError and returns it, typed. */
async function rejection(promise: Promise<unknown>): Promise<ValidationError> {
  const err: unknown = await promise.then(
    () => new Error('expected a rejection, the publish succeeded'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ValidationError);
  return err as ValidationError;
}

describe('OrderPublisher: duplicates', () => {
  it('stores an event published twice with the same id once, answering duplicate: true', async () => {
    const dep = await deploy(await startServer());
    const publisher = newPublisher(dep);
    const event: OrderEventInput = { id: 'evt-1', type: 'items.added', items: [1, 2] };

    const first = await publisher.publish('cust-1', event);
    const second = await publisher.publish('cust-1', event);

    expect(first).toMatchObject({ id: 'evt-1', seq: 1, duplicate: false, attempts: 1 });
    expect(second).toMatchObject({ id: 'evt-1', seq: 1, duplicate: true, attempts: 1 });
    expect(second.subject).toBe(first.subject);
    expect(first.subject).toBe(`orders.${partitionOf('cust-1', 8)}.cust-1`);
    expect(await readStream(dep.nc, dep.names.ordersStream)).toEqual([
      { seq: 1, subject: first.subject, msgId: 'evt-1' },
    ]);
  });

  it('stores one message when the same id is published many times concurrently', async () => {
    const dep = await deploy(await startServer());
    const publisher = newPublisher(dep);
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        publisher.publish('cust-2', { id: 'evt-same', type: 'order.created' }),
      ),
    );
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(new Set(results.map((r) => r.seq))).toEqual(new Set([1]));
    expect(await messageCount(dep.nc, dep.names.ordersStream)).toBe(1);
  });
});

/**
 * A TCP relay between the publisher and the server. With `dropReplies` set it still forwards
 * everything the client sends but discards what the server answers: the server stores the
 * publishes, the client never sees their acks (the "stored, ack lost" case of a crash).
 */
interface Relay {
  readonly url: string;
  dropReplies: boolean;
  close(): Promise<void>;
}

async function startRelay(targetPort: number): Promise<Relay> {
  const sockets = new Set<Socket>();
  const relay = { url: '', dropReplies: false, close: () => Promise.resolve() };
  const server = createServer((client) => {
    const upstream = netConnect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    // Resets and refused connections are expected while the server is down: the client sees a
    // closed connection and reconnects, exactly as it would without the relay.
    client.on('error', closeBoth).on('close', closeBoth);
    upstream.on('error', closeBoth).on('close', closeBoth);
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => {
      if (!relay.dropReplies) client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('relay has no port');
  relay.url = `nats://127.0.0.1:${address.port}`;
  relay.close = () =>
    new Promise<void>((resolve, reject) => {
      for (const socket of sockets) socket.destroy();
      server.close((err) => (err === undefined ? resolve() : reject(err)));
    });
  teardown.push(() => relay.close());
  return relay;
}

const TOTAL = 3000;

/**
 * Publishes TOTAL events (unique ids) in three pipelined batches: the first is acknowledged, the
 * server is SIGKILLed while the second is in flight (after 300 of it were acked), the third is
 * published while the server is down, then the server restarts on the same store.
 */
async function publishThroughCrash(loseAcks: boolean): Promise<{
  dep: TestDeployment;
  events: ModelEvent[];
  results: PublishResult[];
}> {
  const server = await startServer();
  // Only the lost-acks case goes through the relay; otherwise the publisher talks to the server.
  const relay = loseAcks ? await startRelay(server.port) : undefined;
  const dep = await provision(relay?.url ?? server.url, { partitions: 8, isolate: false });
  teardown.push(() => dep.close());
  // A connection straight to the server, to watch what it stored.
  const direct = await connect({ servers: server.url, maxReconnectAttempts: -1 });
  teardown.push(() => direct.close());
  const directJsm = await jetstreamManager(direct);

  // Short ack timeout and many attempts: publishes whose ack never came time out and are retried
  // (same id) until the restarted server answers.
  const publisher = newPublisher(dep, { maxInFlight: 256, maxAttempts: 100, timeoutMs: 1000 });
  const events = generateLoad(100, TOTAL, 7, 'crash');
  expect(new Set(events.map((e) => e.event.id)).size).toBe(TOTAL);

  let resolved = 0;
  let reached: () => void = () => undefined;
  const killPoint = new Promise<void>((resolve) => (reached = resolve));
  const send = (from: number, to: number): Promise<PublishResult>[] =>
    events.slice(from, to).map(async ({ customerId, event }) => {
      const result = await publisher.publish(customerId, event);
      if (++resolved === 1300) reached();
      return result;
    });

  const batch1 = send(0, 1000);
  await Promise.all(batch1);
  const batch2 = send(1000, 2000);
  await killPoint;
  if (relay !== undefined) {
    // From now on the server's answers are lost. Wait until it has stored at least 200 events
    // more than the publisher saw acknowledged (it has 256 in flight), then crash it.
    relay.dropReplies = true;
    await eventually(async () => {
      const { state } = await directJsm.streams.info(dep.names.ordersStream);
      return state.last_seq >= resolved + 200 ? true : undefined;
    });
  }
  await server.kill();
  if (relay !== undefined) relay.dropReplies = false;
  const batch3 = send(2000, TOTAL);
  await server.restart();

  const settled = await Promise.allSettled([...batch1, ...batch2, ...batch3]);
  const failures = settled.flatMap((s) => (s.status === 'rejected' ? [String(s.reason)] : []));
  expect(failures.slice(0, 5)).toEqual([]);
  const results = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  expect(results).toHaveLength(TOTAL);
  return { dep, events, results };
}

/** The stream holds each event exactly once and every result points at its stored copy. */
async function expectStoredExactlyOnce(
  dep: TestDeployment,
  events: readonly ModelEvent[],
  results: readonly PublishResult[],
): Promise<void> {
  const jsm = await jetstreamManager(dep.nc);
  const { state } = await jsm.streams.info(dep.names.ordersStream);
  expect(state.messages).toBe(events.length);
  expect(state.first_seq).toBe(1);
  expect(state.last_seq).toBe(events.length);

  const stored = await readStream(dep.nc, dep.names.ordersStream);
  expect(stored).toHaveLength(events.length);
  const storedIds = stored.map((s) => s.msgId);
  expect(new Set(storedIds).size).toBe(events.length); // no event stored twice
  expect(new Set(storedIds)).toEqual(new Set(events.map((e) => e.event.id)));

  const bySeq = new Map(stored.map((s) => [s.seq, s]));
  const wrong = events.flatMap(({ customerId, event }, i) => {
    const r = results[i];
    const s = r === undefined ? undefined : bySeq.get(r.seq);
    const subject = `orders.${partitionOf(customerId, dep.partitions)}.${customerId}`;
    return s?.msgId === event.id && s.subject === subject && r?.subject === subject
      ? []
      : [{ i, id: event.id, result: r, stored: s }];
  });
  expect(wrong.slice(0, 5)).toEqual([]);
  expect(new Set(results.map((r) => r.seq)).size).toBe(events.length);
}

describe('OrderPublisher: server crash', () => {
  it('stores every event exactly once when the server is SIGKILLed and restarted mid-stream', async () => {
    const { dep, events, results } = await publishThroughCrash(false);
    // The crash really interrupted publishing: the events in flight needed another attempt.
    expect(results.some((r) => r.attempts > 1)).toBe(true);
    await expectStoredExactlyOnce(dep, events, results);
  });

  it('does not store twice the events stored before the crash whose acks were lost', async () => {
    const { dep, events, results } = await publishThroughCrash(true);
    // At least 200 events were stored without an ack reaching the publisher: their retries
    // after the restart were recognised as duplicates of the stored copies.
    const duplicates = results.filter((r) => r.duplicate);
    expect(duplicates.length).toBeGreaterThanOrEqual(200);
    expect(duplicates.every((r) => r.attempts > 1)).toBe(true);
    await expectStoredExactlyOnce(dep, events, results);
  });
});

describe('OrderPublisher: validation', () => {
  const tooLongAscii = 'x'.repeat(MAX_CUSTOMER_ID_BYTES + 1);
  const tooLongUtf8 = '漢'.repeat(43); // 129 bytes, only 43 characters

  it.each([
    ['', 'non-empty'],
    ['ab\ud800', 'well-formed-unicode'],
    ['\udfffab', 'well-formed-unicode'],
    [tooLongAscii, 'max-bytes'],
    [tooLongUtf8, 'max-bytes'],
    ['a.b', 'no-dot'],
    ['.', 'no-dot'],
    ['a*', 'no-wildcard'],
    ['>', 'no-wildcard'],
    ['a b', 'no-whitespace'],
    ['a\tb', 'no-whitespace'],
    ['a\u00a0b', 'no-whitespace'],
    ['a\u3000b', 'no-whitespace'],
    ['a\u0001b', 'no-control'],
    ['a\u007fb', 'no-control'],
    ['a\u0085b', 'no-control'],
  ])('rejects customer id %j (rule %s) and stores nothing', async (customerId, rule) => {
    const dep = await deploy(await startServer());
    const publisher = newPublisher(dep);
    const err = await rejection(
      publisher.publish(customerId, { id: 'evt', type: 'order.created' }),
    );
    expect(err.code).toBe(ErrorCode.InvalidCustomerId);
    expect(err.rule).toBe(rule);
    expect(await messageCount(dep.nc, dep.names.ordersStream)).toBe(0);
  });

  it('rejects bad payloads, oversized payloads and too many items; the stream stays empty', async () => {
    const dep = await deploy(await startServer());
    const publisher = newPublisher(dep);
    const { maxItemsPerEvent, maxPayloadBytes } = DEFAULT_EVENT_LIMITS;
    // Casts let the test send what a JavaScript caller (no type checking) could send.
    const bad = (value: unknown): OrderEventInput => value as OrderEventInput;
    const cases: { name: string; event: OrderEventInput; code: ErrorCode; rule: string }[] = [
      {
        name: 'unknown type',
        event: bad({ type: 'order.deleted' }),
        code: ErrorCode.InvalidEvent,
        rule: 'type',
      },
      {
        name: 'missing type',
        event: bad({ items: [1] }),
        code: ErrorCode.InvalidEvent,
        rule: 'type',
      },
      {
        name: 'missing items',
        event: bad({ type: 'items.added' }),
        code: ErrorCode.InvalidEvent,
        rule: 'items',
      },
      {
        name: 'empty items',
        event: { type: 'items.added', items: [] },
        code: ErrorCode.InvalidEvent,
        rule: 'items',
      },
      {
        name: 'fractional item',
        event: { type: 'items.removed', items: [1, 1.5] },
        code: ErrorCode.InvalidEvent,
        rule: 'items.1',
      },
      {
        name: 'unsafe integer item',
        event: { type: 'items.added', items: [2 ** 53] },
        code: ErrorCode.InvalidEvent,
        rule: 'items.0',
      },
      {
        name: 'string item',
        event: bad({ type: 'items.added', items: ['1'] }),
        code: ErrorCode.InvalidEvent,
        rule: 'items.0',
      },
      {
        name: 'items on order.created',
        event: bad({ type: 'order.created', items: [1] }),
        code: ErrorCode.InvalidEvent,
        rule: 'event',
      },
      {
        name: 'unknown field',
        event: bad({ type: 'order.cleared', note: 'x' }),
        code: ErrorCode.InvalidEvent,
        rule: 'event',
      },
      {
        name: 'bad at',
        event: { type: 'order.created', at: 'yesterday' },
        code: ErrorCode.InvalidEvent,
        rule: 'at',
      },
      {
        name: 'empty id',
        event: { id: '', type: 'order.created' },
        code: ErrorCode.InvalidEvent,
        rule: 'id',
      },
      {
        name: 'id with space',
        event: { id: 'a b', type: 'order.created' },
        code: ErrorCode.InvalidEvent,
        rule: 'id',
      },
      {
        name: 'non-ASCII id',
        event: { id: 'é', type: 'order.created' },
        code: ErrorCode.InvalidEvent,
        rule: 'id',
      },
      {
        name: 'id too long',
        event: { id: 'i'.repeat(129), type: 'order.created' },
        code: ErrorCode.InvalidEvent,
        rule: 'id',
      },
      {
        name: 'too many items',
        event: {
          type: 'items.added',
          items: Array.from({ length: maxItemsPerEvent + 1 }, () => 1),
        },
        code: ErrorCode.TooManyItems,
        rule: 'max-items-per-event',
      },
      {
        // 1000 items of 17 bytes each ("9007199254740991,") encode to more than 16 KiB.
        name: 'oversized payload',
        event: {
          type: 'items.added',
          items: Array.from({ length: maxItemsPerEvent }, () => Number.MAX_SAFE_INTEGER),
        },
        code: ErrorCode.PayloadTooLarge,
        rule: 'max-payload-bytes',
      },
    ];
    expect(17 * maxItemsPerEvent).toBeGreaterThan(maxPayloadBytes);

    const outcomes = [];
    for (const c of cases) {
      const err = await rejection(publisher.publish('cust-1', c.event));
      outcomes.push({ name: c.name, code: err.code, rule: err.rule });
    }
    expect(outcomes).toEqual(cases.map((c) => ({ name: c.name, code: c.code, rule: c.rule })));
    expect(await messageCount(dep.nc, dep.names.ordersStream)).toBe(0);

    // The publisher stays usable, and nothing was stored before: the next event is seq 1.
    const ok = await publisher.publish('cust-1', { type: 'items.added', items: [1] });
    expect(ok.seq).toBe(1);
    expect(await messageCount(dep.nc, dep.names.ordersStream)).toBe(1);
  });

  it('honours custom limits', async () => {
    const dep = await deploy(await startServer());
    const publisher = newPublisher(dep, { limits: { maxPayloadBytes: 64, maxItemsPerEvent: 3 } });
    const tooMany = await rejection(
      publisher.publish('c', { type: 'items.added', items: [1, 2, 3, 4] }),
    );
    expect(tooMany.code).toBe(ErrorCode.TooManyItems);
    const tooBig = await rejection(
      publisher.publish('c', { id: 'x'.repeat(60), type: 'items.added', items: [1] }),
    );
    expect(tooBig.code).toBe(ErrorCode.PayloadTooLarge);
    expect(await messageCount(dep.nc, dep.names.ordersStream)).toBe(0);
    const ok = await publisher.publish('c', { id: 'e', type: 'items.added', items: [1, 2, 3] });
    expect(ok).toMatchObject({ seq: 1, duplicate: false });
  });
});

describe('OrderPublisher.connect', () => {
  it('reads the partition count from the deployment', async () => {
    const server = await startServer();
    // Two deployments with different partition counts on one server, told apart by namespace.
    const five = await deploy(server, { partitions: 5, isolate: true });
    const thirteen = await deploy(server, { partitions: 13, isolate: true });
    expect(five.namespace).not.toBe(thirteen.namespace);

    const customers = Array.from({ length: 40 }, (_, i) => `customer-${i}`);
    for (const [dep, partitions] of [
      [five, 5],
      [thirteen, 13],
    ] as const) {
      const publisher = await OrderPublisher.connect(dep.nc, {
        names: dep.names,
        limits: DEFAULT_EVENT_LIMITS,
        maxInFlight: 16,
        maxAttempts: 3,
        timeoutMs: 5000,
        log: silentLogger,
      });
      teardown.push(() => publisher.close());
      expect(publisher.partitions).toBe(partitions);
      const results = await Promise.all(
        customers.map((c) => publisher.publish(c, { type: 'order.created' })),
      );
      const stored = await readStream(dep.nc, dep.names.ordersStream);
      expect(stored.map((s) => s.subject).sort()).toEqual(
        customers.map((c) => `${dep.names.ordersPrefix}.${partitionOf(c, partitions)}.${c}`).sort(),
      );
      expect(results.map((r) => r.subject).sort()).toEqual(stored.map((s) => s.subject).sort());
    }
    // The two partition counts really route differently.
    expect(customers.some((c) => partitionOf(c, 5) !== partitionOf(c, 13))).toBe(true);
  });

  it('rejects with NOT_PROVISIONED when setup never ran', async () => {
    const server = await startServer();
    const nc = await connect({ servers: server.url });
    teardown.push(() => nc.close());
    const err: unknown = await OrderPublisher.connect(nc, {
      names: resourceNames(''),
      limits: DEFAULT_EVENT_LIMITS,
      maxInFlight: 16,
      maxAttempts: 3,
      timeoutMs: 5000,
    }).then(
      () => new Error('expected connect to fail'),
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: ErrorCode.NotProvisioned });
  });
});
