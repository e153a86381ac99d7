// Seeded generator of hostile messages for the orders stream: each comes with the reason the
// worker must file it under, worked out here from the contract (README), not from src/. The same
// seed gives the same messages, so a failing run can be replayed with FUZZ_SEED.

import { partitionOf } from '../../src/contract/partition.js';
import type { ResourceNames } from '../../src/contract/names.js';

export interface Limits {
  readonly maxPayloadBytes: number;
  readonly maxItemsPerEvent: number;
}

/** Who publishes it: a publisher's raw connection, or a (compromised) worker's for timer subjects. */
export type Sender = 'publisher' | 'worker';

export interface Hostile {
  readonly kind: string;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly sender: Sender;
  /** The dead-letter reason code it must get. */
  readonly reason: string;
}

const encoder = new TextEncoder();
const text = (s: string): Uint8Array => encoder.encode(s);

export class Random {
  #a: number;
  constructor(seed: number) {
    this.#a = seed >>> 0;
  }
  /** mulberry32 */
  next(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = this.#a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(xs: readonly T[]): T {
    const x = xs[Math.floor(this.next() * xs.length)];
    if (x === undefined) throw new Error('pick from an empty list');
    return x;
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(0, 255));
  }
  token(n: number): string {
    const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-';
    return Array.from({ length: n }, () => this.pick([...alphabet])).join('');
  }
}

/** Control characters that can travel in a NATS subject (not space, tab, CR, LF). */
const SUBJECT_SAFE_CONTROLS = [
  ...Array.from({ length: 8 }, (_, i) => i + 1),
  ...Array.from({ length: 18 }, (_, i) => i + 14),
  127,
].map((c) => String.fromCharCode(c));

export function hostileGenerator(
  names: ResourceNames,
  partitions: number,
  limits: Limits,
  random: Random,
): () => Hostile {
  const on = (customerId: string, ...rest: string[]): string =>
    [names.ordersPrefix, String(partitionOf(customerId, partitions)), customerId, ...rest].join(
      '.',
    );
  const customer = (): string => `fz-${random.token(random.int(1, 12))}`;
  const id = (): string => `bad-${random.token(10)}`;
  const goodJson = (): Record<string, unknown> => ({
    id: id(),
    type: 'items.added',
    items: [random.int(0, 50)],
  });
  const json = (v: unknown): Uint8Array => text(JSON.stringify(v));
  const ev = (
    kind: string,
    data: Uint8Array,
    reason: string,
    subject = on(customer()),
  ): Hostile => ({
    kind,
    subject,
    data,
    sender: 'publisher',
    reason,
  });
  const timer = (kind: string, data: Uint8Array, reason: string): Hostile => ({
    kind,
    subject: on(customer(), 'timer'),
    data,
    sender: 'worker',
    reason,
  });
  const validTimer = (): Record<string, unknown> => ({
    type: 'summary.timer',
    window: random.int(1, 1000),
    lastChangeSeq: random.int(1, 1000),
    reason: random.pick(['quiet', 'max']),
    dueAtMs: Date.now(),
  });

  const cases: (() => Hostile)[] = [
    // Random bytes with at least one byte that can never appear in UTF-8.
    () => {
      const data = random.bytes(random.int(1, 300));
      data[random.int(0, data.length - 1)] = random.pick([0xc0, 0xc1, 0xf5, 0xff]);
      return ev('random bytes', data, 'MALFORMED_JSON');
    },
    () => ev('empty body', new Uint8Array(0), 'MALFORMED_JSON'),
    // A valid-looking event whose string holds an invalid UTF-8 sequence.
    () => {
      const head = text('{"id":"');
      const tail = text('","type":"order.created"}');
      return ev(
        'invalid UTF-8 in JSON',
        Uint8Array.from([...head, 0x61, 0xc3, 0x28, ...tail]),
        'MALFORMED_JSON',
      );
    },
    () => {
      const s = JSON.stringify(goodJson());
      return ev('truncated JSON', text(s.slice(0, random.int(1, s.length - 1))), 'MALFORMED_JSON');
    },
    () => ev('trailing garbage', text(`${JSON.stringify(goodJson())}}`), 'MALFORMED_JSON'),
    // Deep JSON, within the size limit: valid JSON, never a valid event.
    () => {
      const depth = random.int(100, Math.floor((limits.maxPayloadBytes - 64) / 2));
      return ev('deep array', text(`${'['.repeat(depth)}${']'.repeat(depth)}`), 'INVALID_EVENT');
    },
    () => {
      const depth = random.int(50, Math.floor((limits.maxPayloadBytes - 64) / 8));
      return ev(
        'deep object',
        text(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`),
        'INVALID_EVENT',
      );
    },
    () => {
      const depth = random.int(10, 500);
      return ev(
        'deep items',
        text(
          `{"id":"${id()}","type":"items.added","items":[${'['.repeat(depth)}1${']'.repeat(depth)}]}`,
        ),
        'INVALID_EVENT',
      );
    },
    // Huge: over the payload limit (some far over it).
    () => {
      const size =
        limits.maxPayloadBytes +
        random.pick([1, random.int(2, 1000), random.int(1000, 3 * limits.maxPayloadBytes)]);
      const base = JSON.stringify({ id: id(), type: 'order.created' });
      return ev(
        'oversized payload',
        text(`${base.slice(0, -1)}${' '.repeat(size - base.length)}}`),
        'PAYLOAD_TOO_LARGE',
      );
    },
    () => {
      const n = limits.maxItemsPerEvent + random.int(1, 500);
      return ev(
        'huge items array',
        json({ id: id(), type: 'items.added', items: Array.from({ length: n }, () => 1) }),
        'TOO_MANY_ITEMS',
      );
    },
    // Wrong types and values.
    () =>
      ev(
        'wrong types',
        json(
          random.pick<Record<string, unknown>>([
            { id: 5, type: 'order.created' },
            { id: id(), type: 7 },
            { id: id(), type: 'items.added', items: '1,2' },
            { id: id(), type: 'items.added', items: [true] },
            { id: id(), type: 'items.added', items: [1.5] },
            { id: id(), type: 'items.added', items: [2 ** 60] },
            { id: id(), type: 'items.added', items: [null] },
            { id: id(), type: 'items.added', items: [] },
            { id: id(), type: 'items.removed' },
            { id: id(), type: 'order.created', at: 'yesterday' },
            { id: id(), type: 'order.created', at: 12 },
            { id: id(), type: 'order.created', items: [1] },
            { id: id(), type: 'order.shipped' },
            { id: id(), type: 'order.created', coupon: 'FREE' },
            { type: 'order.created' },
            { id: '', type: 'order.created' },
            { id: `~${random.token(8)}`, type: 'order.created' },
            { id: id(), type: 'order.created', constructor: { prototype: { polluted: true } } },
          ]),
        ),
        'INVALID_EVENT',
      ),
    () => ev('not an object', json(random.pick([1, 'x', null, true, [1, 2], []])), 'INVALID_EVENT'),
    () => ev('id too long', json({ id: 'x'.repeat(129), type: 'order.created' }), 'INVALID_EVENT'),
    () =>
      ev(
        'id with control characters',
        json({
          id: `a${random.pick([...SUBJECT_SAFE_CONTROLS, '\n', '\t', ' '])}b`,
          type: 'order.created',
        }),
        'INVALID_EVENT',
      ),
    () =>
      ev(
        'id with non-ASCII',
        json({ id: `caf\u00e9-${random.token(4)}`, type: 'order.created' }),
        'INVALID_EVENT',
      ),
    // Customer ids the contract refuses, on the partition their hash names.
    () =>
      ev(
        'customer id with a control character',
        json(goodJson()),
        'INVALID_CUSTOMER_ID',
        on(`fz${random.pick(SUBJECT_SAFE_CONTROLS)}${random.token(3)}`),
      ),
    () =>
      ev(
        'customer id with a Unicode space',
        json(goodJson()),
        'INVALID_CUSTOMER_ID',
        on(`fz\u00a0${random.token(3)}`),
      ),
    () =>
      ev(
        'customer id too long',
        json(goodJson()),
        'INVALID_CUSTOMER_ID',
        on(`fz${'y'.repeat(127)}`),
      ),
    () =>
      ev(
        'customer id of 129 bytes (multi-byte)',
        json(goodJson()),
        'INVALID_CUSTOMER_ID',
        on(`${'\u00e9'.repeat(64)}z`),
      ),
    // A well-formed subject on a partition that is not the customer's.
    () => {
      const c = customer();
      const wrong = (partitionOf(c, partitions) + random.int(1, partitions - 1)) % partitions;
      return ev(
        'wrong partition',
        json(goodJson()),
        'WRONG_PARTITION',
        `${names.ordersPrefix}.${wrong}.${c}`,
      );
    },
    // Forged timer entries on the reserved subject, from a raw (worker-credentialed) publisher.
    () =>
      timer(
        'forged timer: not JSON',
        random.bytes(random.int(0, 40)).map((b) => b | 0x80),
        'MALFORMED_JSON',
      ),
    () => {
      const t = validTimer();
      const broken = random.pick<Record<string, unknown>>([
        { ...t, window: 0 },
        { ...t, window: 'x' },
        { ...t, reason: 'now' },
        { ...t, dueAtMs: 1.5 },
        { ...t, extra: true },
        { ...t, type: 'summary.close' },
        { type: 'summary.timer' },
        goodJson(),
      ]);
      return timer('forged timer: wrong shape', json(broken), 'INVALID_EVENT');
    },
  ];
  return () => random.pick(cases)();
}

/**
 * Timer entries that are well formed but refer to no open window (a forger guessing): they are
 * valid log entries, so they are not dead-lettered; applied, they must change nothing.
 */
export function voidTimer(
  names: ResourceNames,
  partitions: number,
  customerId: string,
  random: Random,
): Hostile {
  return {
    kind: 'void timer',
    subject: [
      names.ordersPrefix,
      String(partitionOf(customerId, partitions)),
      customerId,
      'timer',
    ].join('.'),
    data: text(
      JSON.stringify({
        type: 'summary.timer',
        window: 1_000_000_000 + random.int(0, 1000),
        lastChangeSeq: 1_000_000_000,
        reason: 'max',
        dueAtMs: 0,
      }),
    ),
    sender: 'worker',
    reason: '',
  };
}
