import { decodeEvent, type EventLimits, type OrderEvent } from '../contract/event.js';
import type { ResourceNames } from '../contract/names.js';
import { parseOrdersSubject } from '../contract/subjects.js';
import { ErrorCode, ValidationError } from '../errors.js';

/** One decoded entry of a partition's log: whose it is and what it says. */
export interface DecodedEntry<E> {
  readonly customerId: string;
  readonly payload: E;
}

/** Turns a raw stream message into a typed entry, or throws a ValidationError saying why not. */
export type EntryDecoder<E> = (subject: string, data: Uint8Array) => DecodedEntry<E>;

export function orderEntryDecoder(
  names: ResourceNames,
  partitions: number,
  limits: EventLimits,
): EntryDecoder<OrderEvent> {
  return (subject, data) => {
    const parsed = parseOrdersSubject(names, partitions, subject);
    if (parsed.kind !== 'event') {
      // Subjects with a fourth token are reserved for entries the fleet appends itself.
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
