// Acceptance: the partition function of the subject contract is the one nats-server itself
// computes for a `{{partition(P, i)}}` subject mapping. A real server maps `parity<P>.<id>` to
// `parity<P>.<p>.<id>`; every id must arrive on exactly `partitionOf(id, P)`. A second test
// proves that a server-side mapping and the SDK put a customer's events on the same subject of
// the orders stream, so publishers that do not hash (other languages, plain `nats pub`) agree.

import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { customerIdViolation, MAX_CUSTOMER_ID_BYTES } from '../../src/contract/customer-id.js';
import { resourceNames } from '../../src/contract/names.js';
import { partitionOf } from '../../src/contract/partition.js';
import { eventSubject } from '../../src/contract/subjects.js';
import { OrderPublisher } from '../../src/publisher/order-publisher.js';
import { provision, silentLogger } from '../support/fleet.js';
import { rng } from '../support/model.js';
import { startNatsServer } from '../support/nats-server.js';

/** Partition counts checked against the server: trivial, prime, the default, the maximum. */
const PARTITION_COUNTS = [1, 7, 32, 4096] as const;
/** Random ids per run (plus the hand-picked edge cases below). */
const RANDOM_IDS = 1_200;
const SEED = 20_240_601;

const encoder = new TextEncoder();
const byteLength = (s: string): number => encoder.encode(s).byteLength;

const teardown: (() => Promise<void>)[] = [];

afterEach(async () => {
  // Reverse order: close clients before killing the servers they talk to.
  for (const task of teardown.splice(0).reverse()) await task();
});

async function connectTracked(url: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url });
  teardown.push(async () => {
    if (!nc.isClosed()) await nc.close();
  });
  return nc;
}

// ---------------------------------------------------------------------------
// Customer ids: every encoding path, exact byte limits, all valid per the contract
// ---------------------------------------------------------------------------

/** Ids chosen by hand: single characters, punctuation, 2/3/4-byte UTF-8, odd code points. */
const EDGE_IDS: readonly string[] = [
  '0',
  'a',
  '-',
  '_',
  '$',
  '$JS',
  'ORDERS',
  '12345',
  '#%&!?~^|`\'"\\/:;,=+@()[]{}<',
  'é',
  'e\u0301', // decomposed é: different bytes, different id
  '\u00ad', // soft hyphen
  '\u200b', // zero-width space (not \s in JS)
  '中',
  '漢字テスト',
  '한국어',
  '😀',
  '👨‍👩‍👧‍👦', // ZWJ sequence
  '🇯🇵🇫🇷', // regional indicators
  '👍🏽',
  '\ufffd',
  '\uffff',
  '\u{10ffff}',
  '\u{1d11e}',
  'x'.repeat(MAX_CUSTOMER_ID_BYTES),
  'é'.repeat(MAX_CUSTOMER_ID_BYTES / 2),
  `${'漢'.repeat(42)}ab`,
  '😀'.repeat(MAX_CUSTOMER_ID_BYTES / 4),
  `${'😀'.repeat(31)}中a`,
];

type Random = () => number;

const between = (random: Random, min: number, max: number): number =>
  min + Math.floor(random() * (max - min + 1));

/** Code point ranges, weighted by repetition, covering 1-, 2-, 3- and 4-byte UTF-8. */
const RANGES: readonly (readonly [number, number])[] = [
  [0x21, 0x7e], // printable ASCII
  [0x21, 0x7e],
  [0x30, 0x39],
  [0xa1, 0x24f], // Latin-1 supplement, Latin extended
  [0x370, 0x4ff], // Greek, Cyrillic
  [0x590, 0x6ff], // Hebrew, Arabic (right-to-left)
  [0x900, 0x97f], // Devanagari
  [0x3040, 0x30ff], // Hiragana, Katakana
  [0x4e00, 0x9fff], // CJK unified ideographs
  [0xac00, 0xd7a3], // Hangul
  [0xe000, 0xf8ff], // private use
  [0x1f300, 0x1faff], // emoji
  [0x1f300, 0x1faff],
  [0x20000, 0x2a6df], // CJK extension B
  [0x21, 0x10ffff], // anything
];

function randomChar(random: Random): string {
  for (;;) {
    const range = RANGES[between(random, 0, RANGES.length - 1)];
    if (range === undefined) continue;
    const cp = between(random, range[0], range[1]);
    if (cp >= 0xd800 && cp <= 0xdfff) continue; // surrogates are not scalar values
    const ch = String.fromCodePoint(cp);
    // Keep only characters the contract accepts inside an id.
    if (customerIdViolation(`a${ch}`) === undefined) return ch;
  }
}

/** A random valid id of 1..maxChars characters, at most MAX_CUSTOMER_ID_BYTES long. */
function randomId(random: Random, maxChars: number): string {
  const target = between(random, 1, maxChars);
  let id = '';
  for (let i = 0; i < target; i++) {
    const ch = randomChar(random);
    if (byteLength(id + ch) > MAX_CUSTOMER_ID_BYTES) break;
    id += ch;
  }
  return id === '' ? 'x' : id;
}

/** A random mix of characters filled up to exactly MAX_CUSTOMER_ID_BYTES bytes. */
function exactlyMaxBytesId(random: Random): string {
  let id = '';
  for (;;) {
    const ch = randomChar(random);
    if (byteLength(id + ch) > MAX_CUSTOMER_ID_BYTES) break;
    id += ch;
  }
  return id + 'z'.repeat(MAX_CUSTOMER_ID_BYTES - byteLength(id));
}

/** A random printable-ASCII id (what most deployments use), 1..MAX_CUSTOMER_ID_BYTES long. */
function asciiId(random: Random): string {
  const length = random() < 0.2 ? MAX_CUSTOMER_ID_BYTES : between(random, 1, 40);
  let id = '';
  while (id.length < length) {
    const ch = String.fromCharCode(between(random, 0x21, 0x7e));
    if (customerIdViolation(ch) === undefined) id += ch;
  }
  return id;
}

function generateIds(count: number, seed: number): string[] {
  const random = rng(seed);
  const ids = new Set<string>(EDGE_IDS);
  while (ids.size < EDGE_IDS.length + count) {
    const roll = random();
    if (roll < 0.15) ids.add(exactlyMaxBytesId(random));
    else if (roll < 0.35) ids.add(asciiId(random));
    else if (roll < 0.65) ids.add(randomId(random, 12));
    else ids.add(randomId(random, 64));
  }
  return [...ids];
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe('partition parity with nats-server', () => {
  const ids = generateIds(RANDOM_IDS, SEED);

  it('uses ids that are all valid, unique and cover every UTF-8 width and the byte limit', () => {
    expect(ids.length).toBeGreaterThanOrEqual(1_000 + EDGE_IDS.length);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.filter((id) => customerIdViolation(id) !== undefined)).toEqual([]);
    const widths = new Set(
      ids.flatMap((id) => [...id].map((ch) => byteLength(ch))), // 1..4 bytes per code point
    );
    expect([...widths].sort()).toEqual([1, 2, 3, 4]);
    expect(
      ids.filter((id) => byteLength(id) === MAX_CUSTOMER_ID_BYTES).length,
    ).toBeGreaterThanOrEqual(100);
    expect(ids.filter((id) => /^[\x21-\x7e]+$/u.test(id)).length).toBeGreaterThanOrEqual(200);
  });

  it(`routes every id to partitionOf(id, P) for P in ${PARTITION_COUNTS.join(', ')}`, async () => {
    const mappings = PARTITION_COUNTS.map(
      (p) => `  "parity${p}.*": "parity${p}.{{partition(${p},1)}}.{{wildcard(1)}}"`,
    );
    const server = await startNatsServer({ configText: `mappings = {\n${mappings.join('\n')}\n}` });
    teardown.push(() => server.cleanup());
    const nc = await connectTracked(server.url);

    // The sentinel is published last: one publisher's messages arrive in order, so once it is
    // seen every earlier message has been delivered (or lost, which the count would show).
    const SENTINEL = 'parity-sentinel~end';
    for (const p of PARTITION_COUNTS) {
      const sub = nc.subscribe(`parity${p}.*.*`);
      const received = (async () => {
        const got: { subject: string; id: string }[] = [];
        for await (const msg of sub) {
          const id = msg.string();
          if (id === SENTINEL) break;
          got.push({ subject: msg.subject, id });
        }
        return got;
      })();
      await nc.flush();
      for (const id of ids) nc.publish(`parity${p}.${id}`, id);
      nc.publish(`parity${p}.${SENTINEL}`, SENTINEL);
      await nc.flush();
      const got = await received;

      expect(got.length, `P=${p}: messages received`).toBe(ids.length);
      expect(new Set(got.map((m) => m.id))).toEqual(new Set(ids));
      const mismatches = got
        .filter((m) => m.subject !== `parity${p}.${partitionOf(m.id, p)}.${m.id}`)
        .map((m) => ({ id: m.id, got: m.subject, expected: partitionOf(m.id, p) }));
      expect(mismatches, `P=${p}: ids routed elsewhere than partitionOf`).toEqual([]);

      // The mapping really spreads ids: with this many ids every partition of a small P is hit.
      const used = new Set(got.map((m) => m.subject.split('.')[1]));
      if (p <= 32) expect(used.size, `P=${p}: partitions used`).toBe(p);
      else expect(used.size, `P=${p}: partitions used`).toBeGreaterThan(ids.length / 2);
    }
  });

  it('stores a customer on the same subject whether the server or the SDK computes the partition', async () => {
    const partitions = 32;
    // A publisher that does not hash publishes to `orders-in.<customerId>`; the server routes it
    // into the orders stream exactly as the contract says.
    const server = await startNatsServer({
      configText: `mappings = { "orders-in.*": "orders.{{partition(${partitions},1)}}.{{wildcard(1)}}" }`,
    });
    teardown.push(() => server.cleanup());
    const dep = await provision(server.url, { partitions, isolate: false });
    teardown.push(() => dep.close());
    expect(dep.names).toEqual(resourceNames(''));

    const customers = ids.slice(0, 200);
    const js = jetstream(dep.nc);
    const publisher = new OrderPublisher(dep.nc, {
      names: dep.names,
      partitions: dep.partitions,
      limits: { maxPayloadBytes: 16 * 1024, maxItemsPerEvent: 1000 },
      maxInFlight: 64,
      maxAttempts: 5,
      timeoutMs: 5000,
      log: silentLogger,
    });
    const viaSdk = await Promise.all(
      customers.map((id, i) => publisher.publish(id, { id: `sdk-${i}`, type: 'order.created' })),
    );
    await publisher.close();
    const viaServer = await Promise.all(
      customers.map((id, i) =>
        js.publish(`orders-in.${id}`, JSON.stringify({ id: `srv-${i}`, type: 'order.created' }), {
          msgID: `srv-${i}`,
        }),
      ),
    );

    const jsm = await jetstreamManager(dep.nc);
    expect((await jsm.streams.info(dep.names.ordersStream)).state.messages).toBe(
      2 * customers.length,
    );
    const problems: string[] = [];
    for (const [i, id] of customers.entries()) {
      const expected = eventSubject(dep.names, partitions, id);
      const sdk = viaSdk[i];
      const srv = viaServer[i];
      if (sdk === undefined || srv === undefined) throw new Error(`missing result ${i}`);
      const stored = await jsm.streams.getMessage(dep.names.ordersStream, { seq: srv.seq });
      if (sdk.subject !== expected) problems.push(`sdk ${id}: ${sdk.subject} != ${expected}`);
      if (stored?.subject !== expected) {
        problems.push(`server ${id}: ${String(stored?.subject)} != ${expected}`);
      }
    }
    expect(problems).toEqual([]);
  });
});
