import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeEvent,
  DEFAULT_EVENT_LIMITS,
  encodeEvent,
  EVENT_TYPES,
  RESERVED_ID_PREFIX,
  type EventLimits,
  type OrderEvent,
} from '../../src/contract/event.js';
import { ErrorCode, isOrderFleetError, ValidationError } from '../../src/errors.js';
import { thrownBy } from './helpers.js';

const LIMITS = DEFAULT_EVENT_LIMITS;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const json = (value: unknown): Uint8Array => bytes(JSON.stringify(value));

function decodeError(data: Uint8Array, limits: EventLimits = LIMITS): ValidationError {
  return thrownBy(() => decodeEvent(data, limits), ValidationError);
}

function encodeError(event: unknown, limits: EventLimits = LIMITS): ValidationError {
  return thrownBy(() => encodeEvent(event, limits), ValidationError);
}

// --- arbitraries -------------------------------------------------------------------------

// Printable ASCII without spaces, not starting with the prefix reserved for the fleet's ids.
const eventId = fc
  .string({
    unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
    minLength: 1,
    maxLength: 128,
  })
  .filter((id) => !id.startsWith(RESERVED_ID_PREFIX));
const item = fc
  .oneof(
    fc.integer({ min: -1000, max: 1000 }),
    fc.maxSafeInteger(),
    fc.constantFrom(Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER),
  )
  .map((n) => n + 0); // normalise -0, which JSON cannot carry
const items = fc.array(item, { minLength: 1, maxLength: 50 });
const at = fc.oneof(
  fc
    .date({
      min: new Date('1970-01-01T00:00:00Z'),
      max: new Date('2200-01-01T00:00:00Z'),
      noInvalidDate: true,
    })
    .map((d) => d.toISOString()),
  fc.constantFrom(
    '2024-02-29T12:00:00+02:00',
    '2024-01-01T00:00:00-05:30',
    '2024-06-01T08:30:00.123456Z',
  ),
);

const orderEvent: fc.Arbitrary<OrderEvent> = fc.oneof(
  fc.record(
    { id: eventId, type: fc.constant('order.created' as const), at },
    { requiredKeys: ['id', 'type'] },
  ),
  fc.record(
    { id: eventId, type: fc.constant('items.added' as const), items, at },
    { requiredKeys: ['id', 'type', 'items'] },
  ),
  fc.record(
    { id: eventId, type: fc.constant('items.removed' as const), items, at },
    { requiredKeys: ['id', 'type', 'items'] },
  ),
  fc.record(
    { id: eventId, type: fc.constant('order.cleared' as const), at },
    { requiredKeys: ['id', 'type'] },
  ),
);

// --- tests ---------------------------------------------------------------------------------

describe('event contract constants', () => {
  it('lists the four event types and sane default limits', () => {
    expect(EVENT_TYPES).toEqual(['order.created', 'items.added', 'items.removed', 'order.cleared']);
    expect(DEFAULT_EVENT_LIMITS).toEqual({ maxPayloadBytes: 16 * 1024, maxItemsPerEvent: 1000 });
  });
});

describe('encodeEvent / decodeEvent round trip', () => {
  it.each<[string, OrderEvent]>([
    ['order.created', { id: 'e-1', type: 'order.created' }],
    ['items.added', { id: 'e-2', type: 'items.added', items: [1, 2, 3] }],
    ['items.removed', { id: 'e-3', type: 'items.removed', items: [2] }],
    ['order.cleared', { id: 'e-4', type: 'order.cleared', at: '2024-05-01T10:00:00Z' }],
    [
      'negative and huge items',
      { id: 'e-5', type: 'items.added', items: [-7, 0, Number.MAX_SAFE_INTEGER] },
    ],
  ])('round trips a %s event', (_name, event) => {
    const { event: validated, data } = encodeEvent(event, LIMITS);
    expect(validated).toEqual(event);
    expect(new TextDecoder().decode(data)).toBe(JSON.stringify(event));
    expect(decodeEvent(data, LIMITS)).toEqual(event);
  });

  it('PROPERTY: decode(encode(e)) equals e for every valid event', () => {
    fc.assert(
      fc.property(orderEvent, (event) => {
        const { event: validated, data } = encodeEvent(event, LIMITS);
        expect(validated).toEqual(event);
        const decoded = decodeEvent(data, LIMITS);
        expect(decoded).toEqual(event);
        // and encoding is stable: re-encoding the decoded event gives the same bytes
        expect(encodeEvent(decoded, LIMITS).data).toEqual(data);
      }),
      { numRuns: 200 },
    );
  });

  it('decodes payloads that other publishers wrote (key order, whitespace, offsets)', () => {
    const raw = bytes(
      '  {"items": [5, 6], "at": "2024-01-01T00:00:00+01:00", "type": "items.added", "id": "x"}\n',
    );
    expect(decodeEvent(raw, LIMITS)).toEqual({
      id: 'x',
      type: 'items.added',
      items: [5, 6],
      at: '2024-01-01T00:00:00+01:00',
    });
  });

  it('accepts ids at the 128-character limit and printable ASCII punctuation', () => {
    const id = '!'.repeat(64) + '~'.repeat(64);
    expect(decodeEvent(json({ id, type: 'order.created' }), LIMITS)).toEqual({
      id,
      type: 'order.created',
    });
  });
});

describe('MALFORMED_JSON', () => {
  it.each([
    ['truncated object', '{"id":"a","type":"order.created"'],
    ['plain text', 'hello'],
    ['empty payload', ''],
    ['single quotes', "{'id':'a'}"],
    ['trailing comma', '{"id":"a",}'],
  ])('rejects %s', (_name, text) => {
    const err = decodeError(bytes(text));
    expect(err.code).toBe(ErrorCode.MalformedJson);
    expect(err.rule).toBe('json');
    expect(err.message).toMatch(/not valid UTF-8 JSON/);
    expect(err.cause).toBeInstanceOf(SyntaxError);
  });

  it('rejects invalid UTF-8 even when it would otherwise parse', () => {
    // {"id":"<0xff>","type":"order.created"}
    const prefix = bytes('{"id":"');
    const suffix = bytes('","type":"order.created"}');
    const data = new Uint8Array([...prefix, 0xff, ...suffix]);
    const err = decodeError(data);
    expect(err.code).toBe(ErrorCode.MalformedJson);
    expect(err.cause).toBeInstanceOf(TypeError);
  });
});

describe('INVALID_EVENT', () => {
  const cases: [name: string, payload: unknown, field: string][] = [
    ['unknown type', { id: 'a', type: 'order.shipped' }, 'type'],
    ['missing type', { id: 'a', items: [1] }, 'type'],
    ['missing items on items.added', { id: 'a', type: 'items.added' }, 'items'],
    ['missing items on items.removed', { id: 'a', type: 'items.removed' }, 'items'],
    ['empty items', { id: 'a', type: 'items.added', items: [] }, 'items'],
    ['items not an array', { id: 'a', type: 'items.added', items: 5 }, 'items'],
    ['non-integer item', { id: 'a', type: 'items.added', items: [1, 2.5] }, 'items.1'],
    ['string item', { id: 'a', type: 'items.removed', items: ['1'] }, 'items.0'],
    ['null item', { id: 'a', type: 'items.added', items: [null] }, 'items.0'],
    ['unsafe integer item', { id: 'a', type: 'items.added', items: [2 ** 60] }, 'items.0'],
    ['bad at', { id: 'a', type: 'order.created', at: 'yesterday' }, 'at'],
    ['date-only at', { id: 'a', type: 'order.created', at: '2024-01-01' }, 'at'],
    ['numeric at', { id: 'a', type: 'order.created', at: 1700000000000 }, 'at'],
    ['missing id', { type: 'order.created' }, 'id'],
    ['empty id', { id: '', type: 'order.created' }, 'id'],
    ['id with a space', { id: 'a b', type: 'order.created' }, 'id'],
    ['non-ASCII id', { id: 'é', type: 'order.created' }, 'id'],
    ['id over 128 chars', { id: 'x'.repeat(129), type: 'order.created' }, 'id'],
  ];

  it.each(cases)('rejects %s and names the field', (_name, payload, field) => {
    const err = decodeError(json(payload));
    expect(err.code).toBe(ErrorCode.InvalidEvent);
    expect(err.rule).toBe(field);
    expect(err.details).toEqual({ path: field });
    expect(err.message).toContain(`invalid event: ${field}:`);
    expect(err.cause).toBeDefined();
    // encodeEvent applies the same validation
    const encErr = encodeError(payload);
    expect(encErr.code).toBe(ErrorCode.InvalidEvent);
    expect(encErr.rule).toBe(field);
  });

  it.each([
    ['unknown field', { id: 'a', type: 'order.created', customer: 'john' }, 'customer'],
    ['items on order.created', { id: 'a', type: 'order.created', items: [1] }, 'items'],
    ['items on order.cleared', { id: 'a', type: 'order.cleared', items: [1] }, 'items'],
    ['extra field next to items', { id: 'a', type: 'items.added', items: [1], qty: 2 }, 'qty'],
  ])('rejects an extra field (%s) and names it in the message', (_name, payload, field) => {
    const err = decodeError(json(payload));
    expect(err.code).toBe(ErrorCode.InvalidEvent);
    expect(err.message).toContain(`"${field}"`);
    expect(err.message).toMatch(/unrecognized key/i);
  });

  it.each([
    ['null', null],
    ['an array', [{ id: 'a', type: 'order.created' }]],
    ['a number', 42],
    ['a string', 'order.created'],
  ])('rejects a JSON payload that is %s, not an object', (_name, payload) => {
    const err = decodeError(json(payload));
    expect(err.code).toBe(ErrorCode.InvalidEvent);
    expect(err.rule).toBe('event');
  });

  it('is a ValidationError recognisable by code', () => {
    const err = decodeError(json({ id: 'a', type: 'nope' }));
    expect(isOrderFleetError(err, ErrorCode.InvalidEvent)).toBe(true);
    expect(isOrderFleetError(err, ErrorCode.MalformedJson)).toBe(false);
  });
});

describe('TOO_MANY_ITEMS', () => {
  const limits: EventLimits = { maxPayloadBytes: 1024 * 1024, maxItemsPerEvent: 3 };

  it('accepts exactly the maximum number of items', () => {
    const event = { id: 'a', type: 'items.added', items: [1, 2, 3] };
    expect(decodeEvent(json(event), limits)).toEqual(event);
    expect(encodeEvent(event, limits).event).toEqual(event);
  });

  it('rejects one item over the maximum, on decode and on encode', () => {
    const event = { id: 'a', type: 'items.removed', items: [1, 2, 3, 4] };
    for (const err of [decodeError(json(event), limits), encodeError(event, limits)]) {
      expect(err.code).toBe(ErrorCode.TooManyItems);
      expect(err.rule).toBe('max-items-per-event');
      expect(err.details).toEqual({ items: 4, max: 3 });
      expect(err.message).toContain('4 items');
      expect(err.message).toContain('MAX_ITEMS_PER_EVENT');
    }
  });

  it('uses the default limit of 1000', () => {
    const ok = { id: 'a', type: 'items.added', items: Array.from({ length: 1000 }, (_, i) => i) };
    expect(encodeEvent(ok, LIMITS).event).toEqual(ok);
    const tooMany = { ...ok, items: [...ok.items, 1000] };
    expect(encodeError(tooMany).code).toBe(ErrorCode.TooManyItems);
  });

  it('PROPERTY: an items list is accepted iff its length is within the limit', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 25 }),
        (max, length) => {
          const event = {
            id: 'a',
            type: 'items.added',
            items: Array.from({ length }, (_, i) => i),
          };
          const lim: EventLimits = { maxPayloadBytes: 1024 * 1024, maxItemsPerEvent: max };
          if (length <= max) expect(decodeEvent(json(event), lim)).toEqual(event);
          else expect(decodeError(json(event), lim).code).toBe(ErrorCode.TooManyItems);
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('PAYLOAD_TOO_LARGE', () => {
  const event = { id: 'evt-1', type: 'items.added', items: [1, 2, 3] } as const;
  const size = json(event).byteLength;

  it('accepts a payload of exactly the maximum size', () => {
    const limits: EventLimits = { maxPayloadBytes: size, maxItemsPerEvent: 1000 };
    expect(encodeEvent(event, limits).data.byteLength).toBe(size);
    expect(decodeEvent(json(event), limits)).toEqual(event);
  });

  it('rejects a payload one byte over the maximum, on decode and on encode', () => {
    const limits: EventLimits = { maxPayloadBytes: size - 1, maxItemsPerEvent: 1000 };
    for (const err of [decodeError(json(event), limits), encodeError(event, limits)]) {
      expect(err.code).toBe(ErrorCode.PayloadTooLarge);
      expect(err.rule).toBe('max-payload-bytes');
      expect(err.details).toEqual({ bytes: size, max: size - 1 });
      expect(err.message).toContain(`${size} bytes`);
      expect(err.message).toContain('MAX_PAYLOAD_BYTES');
    }
  });

  it('checks the size before parsing on decode (an oversized non-JSON payload is too large, not malformed)', () => {
    const err = decodeError(new Uint8Array(LIMITS.maxPayloadBytes + 1).fill(0x7b));
    expect(err.code).toBe(ErrorCode.PayloadTooLarge);
  });

  it('measures bytes, not characters', () => {
    // 'é' is 2 bytes in UTF-8; stuffing it into an unknown field still counts on decode.
    const text = JSON.stringify({ id: 'a', type: 'order.created' }).replace(
      '}',
      `,"x":"${'é'.repeat(40)}"}`,
    );
    const limits: EventLimits = { maxPayloadBytes: text.length + 10, maxItemsPerEvent: 10 };
    expect(bytes(text).byteLength).toBeGreaterThan(limits.maxPayloadBytes);
    expect(decodeError(bytes(text), limits).code).toBe(ErrorCode.PayloadTooLarge);
  });

  it('rejects an otherwise valid event that encodes above the default 16 KiB', () => {
    const big = {
      id: 'a',
      type: 'items.added',
      items: Array.from({ length: 1000 }, () => Number.MAX_SAFE_INTEGER),
    };
    const err = encodeError(big);
    expect(err.code).toBe(ErrorCode.PayloadTooLarge);
    expect(err.details).toEqual({ bytes: json(big).byteLength, max: 16 * 1024 });
  });
});

describe('reserved id prefix', () => {
  it("rejects event ids starting with '~' (the fleet's own message ids) and names the rule", () => {
    for (const id of ['~', '~tmr-1-q1', '~x']) {
      expect(() => encodeEvent({ id, type: 'order.created' }, DEFAULT_EVENT_LIMITS)).toThrow(
        /reserved/u,
      );
    }
    expect(encodeEvent({ id: 'a~b', type: 'order.created' }, DEFAULT_EVENT_LIMITS).event.id).toBe(
      'a~b',
    );
  });
});
