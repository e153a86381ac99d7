import { decodeEvent, type EventLimits } from '../contract/event.js';
import type { ResourceNames } from '../contract/names.js';
import { parseOrdersSubject, type ParsedSubject } from '../contract/subjects.js';
import { ErrorCode, ValidationError } from '../errors.js';
import type { OrderEntry } from './order-aggregator.js';
import { fastTimerEntry, TimerEntrySchema, type TimerEntry } from './summary.js';

/** The fourth subject token of a timer entry: `<prefix>.<p>.<customerId>.timer`. */
export const TIMER_ENTRY_KIND = 'timer';

export function timerSubject(names: ResourceNames, partition: number, customerId: string): string {
  return `${names.ordersPrefix}.${partition}.${customerId}.${TIMER_ENTRY_KIND}`;
}

export function decodeTimerEntry(raw: unknown): TimerEntry {
  return fastTimerEntry(raw) ?? decodeTimerEntryWithSchema(raw);
}

/** The schema alone: the authority for anything the fast path does not take, and every error. */
export function decodeTimerEntryWithSchema(raw: unknown): TimerEntry {
  const parsed = TimerEntrySchema.safeParse(raw);
  if (!parsed.success) {
    throw new ValidationError(ErrorCode.InvalidEvent, 'invalid timer entry', 'timer-entry', {
      cause: parsed.error,
    });
  }
  return parsed.data;
}

/** One decoded entry of a partition's log: whose it is and what it says. */
export interface DecodedEntry<E> {
  readonly customerId: string;
  readonly payload: E;
}

const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** Turns a raw stream message into a typed entry, or throws a ValidationError saying why not. */
export type EntryDecoder<E> = (subject: string, data: Uint8Array) => DecodedEntry<E>;

export function orderEntryDecoder(
  names: ResourceNames,
  partitions: number,
  limits: EventLimits,
): EntryDecoder<OrderEntry> {
  // No cache of parsed subjects: for the common (ASCII) id, parsing is one pass over the subject
  // with no encoding, and a cache would cost memory per customer and miss anyway at high
  // customer counts.
  return (subject, data) => {
    const parsed: ParsedSubject = parseOrdersSubject(names, partitions, subject);
    if (parsed.kind === 'internal' && parsed.entry === TIMER_ENTRY_KIND) {
      let json: unknown;
      try {
        json = JSON.parse(textDecoder.decode(data));
      } catch (cause) {
        throw new ValidationError(
          ErrorCode.MalformedJson,
          'timer entry is not valid JSON',
          'json',
          { cause },
        );
      }
      return { customerId: parsed.customerId, payload: decodeTimerEntry(json) };
    }
    if (parsed.kind !== 'event') {
      // Other fourth tokens are reserved for entries the fleet may append in the future.
      throw new ValidationError(
        ErrorCode.InvalidSubject,
        `subject ${subject} is reserved for the fleet's own entries`,
        'reserved-subject',
        { details: { subject } },
      );
    }
    return { customerId: parsed.customerId, payload: decodeEvent(data, limits) };
  };
}
