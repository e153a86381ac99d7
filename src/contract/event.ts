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
  const parsed = validateEvent(event, limits);
  const data = encoder.encode(JSON.stringify(parsed));
  checkSize(data.byteLength, limits);
  return { event: parsed, data };
}

/** Decodes and validates an event read from the stream. Throws {@link ValidationError}. */
export function decodeEvent(data: Uint8Array, limits: EventLimits): OrderEvent {
  checkSize(data.byteLength, limits);
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(data));
  } catch (cause) {
    throw new ValidationError(ErrorCode.MalformedJson, 'payload is not valid UTF-8 JSON', 'json', {
      cause,
    });
  }
  return validateEvent(json, limits);
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
