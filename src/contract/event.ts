import { z } from 'zod';
import { ErrorCode, ValidationError } from '../errors.js';

/** Event types of the public contract. */
export const EVENT_TYPES = [
  'order.created',
  'items.added',
  'items.removed',
  'order.cleared',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface EventLimits {
  /** Largest accepted encoded payload, in bytes. */
  readonly maxPayloadBytes: number;
  /** Most items one event may list. */
  readonly maxItemsPerEvent: number;
}

export const DEFAULT_EVENT_LIMITS: EventLimits = {
  maxPayloadBytes: 16 * 1024,
  maxItemsPerEvent: 1000,
};

/**
 * Event ids become the `Nats-Msg-Id` header, so they must be header-safe: printable, no
 * whitespace, bounded.
 */
/**
 * Message ids that start with this are the fleet's own (timer entries share the stream's
 * duplicate window with events, so a publisher must not be able to take their ids).
 */
export const RESERVED_ID_PREFIX = '~';

const EventId = z
  .string()
  .min(1, 'id must not be empty')
  .max(128, 'id must be at most 128 characters')
  .regex(/^[\x21-\x7e]+$/u, 'id must be printable ASCII without spaces')
  .refine((id) => !id.startsWith(RESERVED_ID_PREFIX), {
    message: `ids starting with '${RESERVED_ID_PREFIX}' are reserved for the fleet's own entries`,
  });

const Item = z
  .number()
  .int('items must be integers')
  .min(Number.MIN_SAFE_INTEGER)
  .max(Number.MAX_SAFE_INTEGER);
const At = z.iso.datetime({ offset: true, message: 'at must be an ISO-8601 date-time' });
/** The very pattern `At` checks (same options), for the fast path below. */
const AT_PATTERN = z.regexes.datetime({ offset: true, local: false, precision: null });

const Items = z.array(Item).min(1, 'items must list at least one item');

export const OrderEventSchema = z.discriminatedUnion('type', [
  z.strictObject({ id: EventId, type: z.literal('order.created'), at: At.optional() }),
  z.strictObject({ id: EventId, type: z.literal('items.added'), items: Items, at: At.optional() }),
  z.strictObject({
    id: EventId,
    type: z.literal('items.removed'),
    items: Items,
    at: At.optional(),
  }),
  z.strictObject({ id: EventId, type: z.literal('order.cleared'), at: At.optional() }),
]);

/** An order event as it travels on the wire (the customer comes from the subject). */
export type OrderEvent = z.infer<typeof OrderEventSchema>;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Validates an event a publisher wants to send and returns its encoded bytes. */
export function encodeEvent(
  event: unknown,
  limits: EventLimits,
): { event: OrderEvent; data: Uint8Array } {
  // The fast path accepts exactly what the schema accepts in the common shapes (and nothing
  // else: anything unusual goes to the schema, which makes every error); its result may share the
  // caller's items array, which is only read here.
  const parsed = fastEvent(event, limits) ?? validateEvent(event, limits);
  const data = encoder.encode(JSON.stringify(parsed));
  checkSize(data.byteLength, limits);
  return { event: parsed, data };
}

/** Decodes and validates an event read from the stream. Throws {@link ValidationError}. */
export function decodeEvent(data: Uint8Array, limits: EventLimits): OrderEvent {
  const json = parseJson(data, limits);
  // The input is a fresh JSON.parse result that nobody else holds, so the fast path may keep its
  // items array instead of copying it.
  return fastEvent(json, limits) ?? validateEvent(json, limits);
}

/**
 * The decoder that uses the schema alone, with no fast path: the reference the fast path is
 * proved against (tests), and nothing else.
 */
export function decodeEventWithSchema(data: Uint8Array, limits: EventLimits): OrderEvent {
  return validateEvent(parseJson(data, limits), limits);
}

function parseJson(data: Uint8Array, limits: EventLimits): unknown {
  checkSize(data.byteLength, limits);
  try {
    return JSON.parse(decoder.decode(data));
  } catch (cause) {
    throw new ValidationError(ErrorCode.MalformedJson, 'payload is not valid UTF-8 JSON', 'json', {
      cause,
    });
  }
}

function checkSize(bytes: number, limits: EventLimits): void {
  if (bytes > limits.maxPayloadBytes) {
    throw new ValidationError(
      ErrorCode.PayloadTooLarge,
      `payload is ${bytes} bytes; the maximum is ${limits.maxPayloadBytes} (MAX_PAYLOAD_BYTES)`,
      'max-payload-bytes',
      { details: { bytes, max: limits.maxPayloadBytes } },
    );
  }
}

/**
 * Hand-written checks for well-formed events read from the stream, in front of the schema: zod
 * costs about a microsecond per event (a discriminated union of strict objects, an issue list,
 * a copy of every array), which the worker pays on every entry it applies.
 *
 * Contract: for a value `JSON.parse` returned, this returns either `undefined` (not sure: the
 * caller asks the schema, which stays the authority and produces every error) or an event equal
 * to what `OrderEventSchema` returns for the same input: same fields, same key order, same
 * values. It accepts only what the schema accepts (test/unit/event-fast-path.test.ts proves the
 * equivalence on generated valid and invalid inputs), so it never produces an error of its own.
 *
 * Only for JSON values: an arbitrary object from a caller (getters, proxies, class instances,
 * symbol keys) goes to the schema, which is why `encodeEvent` does not use it.
 */
export function fastEvent(input: unknown, limits: EventLimits): OrderEvent | undefined {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return undefined;
  const record = input as Record<string, unknown>;
  let keys = 0;
  let hasItems = false;
  let hasAt = false;
  for (const key in record) {
    keys++;
    if (key === 'items') hasItems = true;
    else if (key === 'at') hasAt = true;
    else if (key !== 'id' && key !== 'type') return undefined;
  }
  const { id, type } = record;
  if (keys !== 2 + (hasItems ? 1 : 0) + (hasAt ? 1 : 0) || !isEventId(id)) return undefined;
  let at: string | undefined;
  if (hasAt) {
    const value = record['at'];
    if (typeof value !== 'string' || !AT_PATTERN.test(value)) return undefined;
    at = value;
  }
  switch (type) {
    case 'order.created':
    case 'order.cleared':
      if (hasItems) return undefined;
      return at === undefined ? { id, type } : { id, type, at };
    case 'items.added':
    case 'items.removed': {
      const items = record['items'];
      if (!hasItems || !isItems(items, limits)) return undefined;
      return at === undefined ? { id, type, items } : { id, type, items, at };
    }
    default:
      return undefined;
  }
}

/** Printable ASCII without spaces, 1–128 characters, not starting with the reserved prefix. */
function isEventId(id: unknown): id is string {
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) return false;
  if (id.startsWith(RESERVED_ID_PREFIX)) return false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

/** 1..maxItemsPerEvent safe integers (a longer list goes to the slow path for its own error). */
function isItems(items: unknown, limits: EventLimits): items is number[] {
  if (!Array.isArray(items) || items.length === 0 || items.length > limits.maxItemsPerEvent) {
    return false;
  }
  for (let i = 0; i < items.length; i++) {
    if (!Number.isSafeInteger(items[i])) return false;
  }
  return true;
}

function validateEvent(input: unknown, limits: EventLimits): OrderEvent {
  // Check the item count before the schema so an oversized list gets its own clear error.
  if (typeof input === 'object' && input !== null && 'items' in input) {
    const { items } = input;
    if (Array.isArray(items) && items.length > limits.maxItemsPerEvent) {
      throw new ValidationError(
        ErrorCode.TooManyItems,
        `event lists ${items.length} items; the maximum is ${limits.maxItemsPerEvent} (MAX_ITEMS_PER_EVENT)`,
        'max-items-per-event',
        { details: { items: items.length, max: limits.maxItemsPerEvent } },
      );
    }
  }
  const result = OrderEventSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? 'event' : issue.path.join('.');
    const message = issue?.message ?? 'invalid event';
    throw new ValidationError(
      ErrorCode.InvalidEvent,
      `invalid event: ${where}: ${message}`,
      where,
      {
        cause: result.error,
        details: { path: where },
      },
    );
  }
  return result.data;
}
