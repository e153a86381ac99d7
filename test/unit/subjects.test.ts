import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_EVENT_LIMITS } from '../../src/contract/event.js';
import { resourceNames } from '../../src/contract/names.js';
import { partitionOf } from '../../src/contract/partition.js';
import {
  eventSubject,
  ordersStreamSubjects,
  parseOrdersSubject,
  partitionFilter,
} from '../../src/contract/subjects.js';
import { ErrorCode, ValidationError } from '../../src/errors.js';
import { orderEntryDecoder, timerSubject } from '../../src/orders/order-log.js';
import { thrownBy, validCustomerId } from './helpers.js';

const P = 32;
const names = resourceNames();
const nsNames = resourceNames('team-a_1');
const p = (id: string, partitions = P): number => partitionOf(id, partitions);

function parseError(subject: string, n = names, partitions = P): ValidationError {
  return thrownBy(() => parseOrdersSubject(n, partitions, subject), ValidationError);
}

describe('resourceNames', () => {
  it('uses the public contract names without a namespace', () => {
    // toMatchObject: the contract names below must hold; new resources may be added.
    expect(resourceNames()).toMatchObject({
      namespace: '',
      ordersStream: 'ORDERS',
      ordersPrefix: 'orders',
      deadLetterStream: 'ORDERS_DLQ',
      deadLetterPrefix: 'dlq.orders',
      stateBucket: 'orders-state',
      metaBucket: 'orders-meta',
      queryPrefix: 'order-fleet.q',
    });
    expect(resourceNames('')).toEqual(resourceNames());
  });

  it('prefixes every name with the namespace', () => {
    expect(resourceNames('ci-7')).toMatchObject({
      namespace: 'ci-7',
      ordersStream: 'CI-7_ORDERS',
      ordersPrefix: 'ci-7.orders',
      deadLetterStream: 'CI-7_ORDERS_DLQ',
      deadLetterPrefix: 'ci-7.dlq.orders',
      stateBucket: 'ci-7-orders-state',
      metaBucket: 'ci-7-orders-meta',
      queryPrefix: 'ci-7.order-fleet.q',
    });
  });

  it('keeps different namespaces fully disjoint, for every resource name', () => {
    const values = (n: object): string[] =>
      Object.entries(n)
        .filter(([key]) => key !== 'namespace')
        .map(([, value]) => String(value));
    const all = [...values(resourceNames('a')), ...values(resourceNames('b')), ...values(names)];
    expect(values(names).length).toBeGreaterThanOrEqual(7);
    expect(new Set(all).size).toBe(all.length);
  });

  it('namespaced names start with the namespace in the form each resource kind needs', () => {
    const n = resourceNames('ns');
    for (const [key, value] of Object.entries(n)) {
      if (key === 'namespace') continue;
      expect(String(value)).toMatch(/^(ns\.|ns-|NS_)/u);
    }
  });

  it('accepts a 32-character namespace and rejects bad ones', () => {
    expect(resourceNames('n'.repeat(32)).namespace).toBe('n'.repeat(32));
    for (const bad of ['n'.repeat(33), 'a.b', 'a b', 'a*', 'a>', 'ü', 'a/b']) {
      expect(() => resourceNames(bad)).toThrow(/namespace/);
    }
  });
});

describe('eventSubject / stream subjects / filters', () => {
  it('builds <prefix>.<partition>.<customerId>', () => {
    expect(eventSubject(names, P, 'john')).toBe(`orders.${p('john')}.john`);
    expect(eventSubject(nsNames, P, 'john')).toBe(`team-a_1.orders.${p('john')}.john`);
    expect(eventSubject(names, 1, 'karan')).toBe('orders.0.karan');
  });

  it('captures the whole prefix on the stream and filters per partition', () => {
    expect(ordersStreamSubjects(names, 3)).toEqual(['orders.0.>', 'orders.1.>', 'orders.2.>']);
    expect(ordersStreamSubjects(nsNames, 1)).toEqual(['team-a_1.orders.0.>']);
    expect(partitionFilter(names, 7)).toBe('orders.7.>');
    expect(partitionFilter(nsNames, 0)).toBe('team-a_1.orders.0.>');
  });

  it('PROPERTY: parse(eventSubject(id)) gives back the id and its partition', () => {
    fc.assert(
      fc.property(
        validCustomerId,
        fc.integer({ min: 1, max: 4096 }),
        fc.boolean(),
        (id, partitions, namespaced) => {
          const n = namespaced ? nsNames : names;
          const subject = eventSubject(n, partitions, id);
          expect(subject.startsWith(`${n.ordersPrefix}.`)).toBe(true);
          expect(parseOrdersSubject(n, partitions, subject)).toEqual({
            kind: 'event',
            partition: partitionOf(id, partitions),
            customerId: id,
          });
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('parseOrdersSubject', () => {
  it('parses a good event subject', () => {
    expect(parseOrdersSubject(names, P, `orders.${p('john')}.john`)).toEqual({
      kind: 'event',
      partition: p('john'),
      customerId: 'john',
    });
    expect(parseOrdersSubject(names, P, `orders.${p('顧客😀')}.顧客😀`)).toEqual({
      kind: 'event',
      partition: p('顧客😀'),
      customerId: '顧客😀',
    });
  });

  it('parses a namespaced subject only with the namespaced names', () => {
    const subject = `team-a_1.orders.${p('john')}.john`;
    expect(parseOrdersSubject(nsNames, P, subject)).toEqual({
      kind: 'event',
      partition: p('john'),
      customerId: 'john',
    });
    // With the default names, this is a wrong prefix.
    expect(parseError(subject, names).rule).toBe('prefix');
    // And a default subject does not belong to the namespace.
    expect(parseError(`orders.${p('john')}.john`, nsNames).rule).toBe('prefix');
  });

  it('parses a 4-token internal subject with its entry kind', () => {
    expect(parseOrdersSubject(names, P, `orders.${p('john')}.john.timer`)).toEqual({
      kind: 'internal',
      partition: p('john'),
      customerId: 'john',
      entry: 'timer',
    });
    expect(parseOrdersSubject(nsNames, P, `team-a_1.orders.${p('k')}.k.deadline`)).toEqual({
      kind: 'internal',
      partition: p('k'),
      customerId: 'k',
      entry: 'deadline',
    });
  });

  it('internal subjects are held to the same partition rule', () => {
    const wrong = (p('john') + 1) % P;
    const err = parseError(`orders.${wrong}.john.timer`);
    expect(err.code).toBe(ErrorCode.WrongPartition);
  });

  it('rejects a subject in the wrong partition with WRONG_PARTITION', () => {
    const expected = p('john');
    const wrong = (expected + 1) % P;
    const subject = `orders.${wrong}.john`;
    const err = parseError(subject);
    expect(err.code).toBe(ErrorCode.WrongPartition);
    expect(err.rule).toBe('partition-hash');
    expect(err.details).toEqual({ subject, expected, partitions: P });
    expect(err.message).toContain(`partition ${expected} of ${P}`);
    expect(err.message).toContain(`not ${wrong}`);
  });

  it('rejects a partition number outside [0, P) with WRONG_PARTITION', () => {
    expect(parseError(`orders.${P}.john`).code).toBe(ErrorCode.WrongPartition);
    expect(parseError(`orders.999999.john`).code).toBe(ErrorCode.WrongPartition);
    expect(parseError(`orders.99999999999999999999999.john`).code).toBe(ErrorCode.WrongPartition);
  });

  it('PROPERTY: every partition but the right one is rejected', () => {
    fc.assert(
      fc.property(
        validCustomerId,
        fc.integer({ min: 2, max: 64 }),
        fc.nat(),
        (id, partitions, k) => {
          const right = partitionOf(id, partitions);
          const wrong = (right + 1 + (k % (partitions - 1))) % partitions;
          expect(wrong).not.toBe(right);
          const err = parseError(`orders.${wrong}.${id}`, names, partitions);
          expect(err.code).toBe(ErrorCode.WrongPartition);
        },
      ),
      { numRuns: 100 },
    );
  });

  it.each([
    ['another prefix', 'order.1.john', 'prefix'],
    ['prefix without dot', 'ordersX.1.john', 'prefix'],
    ['uppercase prefix', 'ORDERS.1.john', 'prefix'],
    ['empty subject', '', 'prefix'],
    ['bare prefix', 'orders', 'prefix'],
    ['dead letter subject', 'dlq.orders.1.john', 'prefix'],
    ['only a partition', 'orders.1', 'shape'],
    ['nothing after the prefix', 'orders.', 'shape'],
    ['five tokens', 'orders.1.john.timer.extra', 'shape'],
    ['non-numeric partition', 'orders.x.john', 'partition'],
    ['negative partition', 'orders.-1.john', 'partition'],
    ['leading zero', 'orders.01.john', 'partition'],
    ['plus sign', 'orders.+1.john', 'partition'],
    ['exponent', 'orders.1e1.john', 'partition'],
    ['empty partition', 'orders..john', 'partition'],
    ['wildcard partition', 'orders.*.john', 'partition'],
    ['unicode digit', 'orders.\u0661.john', 'partition'],
  ])('rejects %s (%j) with INVALID_SUBJECT', (_name, subject, rule) => {
    const err = parseError(subject);
    expect(err.code).toBe(ErrorCode.InvalidSubject);
    expect(err.rule).toBe(rule);
    expect(err.details).toEqual({ subject });
    expect(err.message).toContain(`invalid subject ${subject}`);
  });

  it.each([
    ['empty customer id', '', 'non-empty'],
    ['wildcard *', '*', 'no-wildcard'],
    ['wildcard >', 'jo>hn', 'no-wildcard'],
    ['space', 'john doe', 'no-whitespace'],
    ['no-break space', 'john\u00a0doe', 'no-whitespace'],
    ['control character', 'jo\u0000hn', 'no-control'],
    ['too long', 'x'.repeat(129), 'max-bytes'],
    ['too long in bytes', '€'.repeat(43), 'max-bytes'],
  ])('rejects a bad customer id (%s) with INVALID_CUSTOMER_ID', (_name, id, rule) => {
    const subject = `orders.0.${id}`;
    const err = parseError(subject, names, 1);
    expect(err.code).toBe(ErrorCode.InvalidCustomerId);
    expect(err.rule).toBe(rule);
    expect(err.details).toEqual({ subject });
    expect(err.message).toContain(`(rule ${rule})`);
  });

  it('rejects a 4-token subject whose entry token is empty or a wildcard', () => {
    // `orders.<p>.john.` has an empty fourth token; `orders.<p>.john.>` a wildcard. Neither is a
    // valid concrete subject, yet both currently parse as internal entries ('' and '>').
    expect(() => parseOrdersSubject(names, P, `orders.${p('john')}.john.`)).toThrow(
      ValidationError,
    );
    expect(() => parseOrdersSubject(names, P, `orders.${p('john')}.john.>`)).toThrow(
      ValidationError,
    );
  });
});

describe('orderEntryDecoder', () => {
  const decode = orderEntryDecoder(names, P, DEFAULT_EVENT_LIMITS);
  const payload = new TextEncoder().encode(
    JSON.stringify({ id: 'e1', type: 'items.added', items: [1, 2] }),
  );

  it('decodes an event subject and payload into a typed entry', () => {
    expect(decode(`orders.${p('john')}.john`, payload)).toEqual({
      customerId: 'john',
      payload: { id: 'e1', type: 'items.added', items: [1, 2] },
    });
  });

  const encode = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));
  const timer = {
    type: 'summary.timer',
    window: 3,
    lastChangeSeq: 5,
    reason: 'quiet',
    dueAtMs: 1_700_000_030_000,
  } as const;
  const timerAt = `orders.${p('john')}.john.timer`;

  it('rejects 4-token subjects whose entry kind is not timer (reserved for the fleet)', () => {
    for (const kind of ['deadline', 'summary', 'timers', 'x']) {
      const subject = `orders.${p('john')}.john.${kind}`;
      // Whatever the payload: an order event, a timer entry, or garbage.
      for (const data of [payload, encode(timer), new TextEncoder().encode('nope')]) {
        const err = thrownBy(() => decode(subject, data), ValidationError);
        expect(err.code).toBe(ErrorCode.InvalidSubject);
        expect(err.rule).toBe('reserved-subject');
        expect(err.details).toEqual({ subject });
      }
    }
  });

  it('decodes a .timer subject with a valid timer payload into the timer entry', () => {
    expect(timerSubject(names, p('john'), 'john')).toBe(timerAt);
    expect(decode(timerAt, encode(timer))).toEqual({ customerId: 'john', payload: timer });
    const max = { ...timer, reason: 'max' } as const;
    expect(decode(timerAt, encode(max))).toEqual({ customerId: 'john', payload: max });
    // With a namespace too.
    const nsDecode = orderEntryDecoder(nsNames, P, DEFAULT_EVENT_LIMITS);
    const nsSubject = timerSubject(nsNames, p('k'), 'k');
    expect(nsSubject).toBe(`team-a_1.orders.${p('k')}.k.timer`);
    expect(nsDecode(nsSubject, encode(timer))).toEqual({ customerId: 'k', payload: timer });
  });

  it.each<[string, unknown]>([
    ['an order event', { id: 'e1', type: 'items.added', items: [1, 2] }],
    ['an empty object', {}],
    ['null', null],
    ['another type', { ...timer, type: 'summary.closed' }],
    ['an unknown reason', { ...timer, reason: 'soon' }],
    ['window 0', { ...timer, window: 0 }],
    ['a non-integer lastChangeSeq', { ...timer, lastChangeSeq: 1.5 }],
    ['a string dueAtMs', { ...timer, dueAtMs: '1700000030000' }],
    ['a missing field', { type: 'summary.timer', window: 3, reason: 'max', dueAtMs: 1 }],
    ['an extra field', { ...timer, extra: true }],
  ])('rejects a .timer subject whose payload is %s with INVALID_EVENT', (_name, value) => {
    const err = thrownBy(() => decode(timerAt, encode(value)), ValidationError);
    expect(err.code).toBe(ErrorCode.InvalidEvent);
    expect(err.rule).toBe('timer-entry');
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('rejects a .timer subject whose payload is not JSON with MALFORMED_JSON', () => {
    for (const data of [
      new TextEncoder().encode('nope'),
      new TextEncoder().encode(''),
      new Uint8Array([0xff, 0xfe, 0x7b, 0x7d]), // not UTF-8
    ]) {
      const err = thrownBy(() => decode(timerAt, data), ValidationError);
      expect(err.code).toBe(ErrorCode.MalformedJson);
      expect(err.rule).toBe('json');
    }
  });

  it('a timer payload on an event subject is not an order event', () => {
    const err = thrownBy(() => decode(`orders.${p('john')}.john`, encode(timer)), ValidationError);
    expect(err.code).toBe(ErrorCode.InvalidEvent);
  });

  it('checks a .timer subject before its payload', () => {
    const wrong = (p('john') + 1) % P;
    expect(
      thrownBy(() => decode(`orders.${wrong}.john.timer`, encode(timer)), ValidationError).code,
    ).toBe(ErrorCode.WrongPartition);
    expect(
      thrownBy(
        () => decode(`orders.${wrong}.john.timer`, new TextEncoder().encode('nope')),
        ValidationError,
      ).code,
    ).toBe(ErrorCode.WrongPartition);
  });

  it('surfaces subject errors before payload errors, and payload errors otherwise', () => {
    const garbage = new TextEncoder().encode('nope');
    expect(thrownBy(() => decode('orders.x.john', garbage), ValidationError).code).toBe(
      ErrorCode.InvalidSubject,
    );
    expect(thrownBy(() => decode(`orders.${p('john')}.john`, garbage), ValidationError).code).toBe(
      ErrorCode.MalformedJson,
    );
  });
});

describe('parseOrdersSubject tokenizing', () => {
  /** The tokenizer as first written (split on '.'), kept as the reference for the indexOf one. */
  function tokensBySplit(subject: string): string[] | 'prefix' | 'shape' {
    const prefix = `${names.ordersPrefix}.`;
    if (!subject.startsWith(prefix)) return 'prefix';
    const tokens = subject.slice(prefix.length).split('.');
    return tokens.length !== 2 && tokens.length !== 3 ? 'shape' : tokens;
  }

  function outcome(subject: string): unknown {
    try {
      return parseOrdersSubject(names, P, subject);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      return { code: err.code, rule: err.rule, message: err.message };
    }
  }

  it('PROPERTY: splits subjects exactly as split(".") did, for any dots and empty tokens', () => {
    const piece = fc.oneof(
      fc.constantFrom('', '.', '..', 'orders', '0', '7', '01', 'timer', 'x', 'é', '*', '>'),
      validCustomerId,
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 6 }), fc.boolean(), (pieces, withPrefix) => {
        const subject = `${withPrefix ? 'orders.' : ''}${pieces.join('.')}`;
        const reference = tokensBySplit(subject);
        const got = outcome(subject);
        if (reference === 'prefix' || reference === 'shape') {
          expect(got).toMatchObject({ code: ErrorCode.InvalidSubject, rule: reference });
          return;
        }
        const [partition = '', customerId = '', entry] = reference;
        if (typeof got === 'object' && got !== null && 'customerId' in got) {
          expect(got).toEqual(
            entry === undefined
              ? { kind: 'event', partition: Number(partition), customerId }
              : { kind: 'internal', partition: Number(partition), customerId, entry },
          );
        } else {
          // The same tokens fail a later rule: the same error as parsing them one by one.
          expect(got).not.toMatchObject({ rule: 'shape' });
          expect(got).not.toMatchObject({ rule: 'prefix' });
        }
      }),
      { numRuns: 2000 },
    );
  });
});
