import { ErrorCode, ValidationError } from '../errors.js';
import { customerIdViolation } from './customer-id.js';
import type { ResourceNames } from './names.js';
import { partitionOf } from './partition.js';

/**
 * Subject layout of the orders stream (`<prefix>` is `orders` unless a namespace is set):
 *
 *   <prefix>.<p>.<customerId>          an order event, published by anyone
 *   <prefix>.<p>.<customerId>.<kind>   reserved for entries the fleet itself appends (timer
 *                                      firings); ordinary publishers must not use it
 *
 * The stream captures `<prefix>.>` so that one partition's consumer can filter on
 * `<prefix>.<p>.>` — on NATS 2.9 a consumer takes a single filter, and it must be a subset of the
 * stream's subjects as written.
 */
export function eventSubject(names: ResourceNames, partitions: number, customerId: string): string {
  return `${names.ordersPrefix}.${partitionOf(customerId, partitions)}.${customerId}`;
}

/**
 * One subject per partition, `<prefix>.<p>.>`, rather than `<prefix>.>`: the stream then refuses
 * a message whose partition token no runner consumes (`orders.99.x` with P = 8, `orders.01.x`,
 * `orders.x`), so the publisher gets an error instead of an event that is stored but never
 * applied. (A mis-partitioned but well-formed subject is consumed and dead-lettered.)
 */
export function ordersStreamSubjects(names: ResourceNames, partitions: number): string[] {
  return Array.from({ length: partitions }, (_, p) => `${names.ordersPrefix}.${p}.>`);
}

export function partitionFilter(names: ResourceNames, partition: number): string {
  return `${names.ordersPrefix}.${partition}.>`;
}

export type ParsedSubject =
  | { readonly kind: 'event'; readonly partition: number; readonly customerId: string }
  | {
      readonly kind: 'internal';
      readonly partition: number;
      readonly customerId: string;
      readonly entry: string;
    };

/**
 * Parses a subject read from the orders stream. Throws a {@link ValidationError} when it breaks
 * the contract (wrong shape, bad customer id, or a partition that is not the customer's hash).
 */
export function parseOrdersSubject(
  names: ResourceNames,
  partitions: number,
  subject: string,
): ParsedSubject {
  const prefix = `${names.ordersPrefix}.`;
  if (!subject.startsWith(prefix)) {
    throw invalidSubject(subject, 'prefix', `subject must start with ${prefix}`);
  }
  // Tokens found with indexOf rather than split: this runs for every entry a worker reads.
  const first = prefix.length;
  const second = subject.indexOf('.', first) + 1;
  const third = second === 0 ? -1 : subject.indexOf('.', second) + 1;
  if (second === 0 || (third > 0 && subject.indexOf('.', third) !== -1)) {
    throw invalidSubject(subject, 'shape', `subject must be ${prefix}<partition>.<customerId>`);
  }
  const partitionToken = subject.slice(first, second - 1);
  const customerId = third === 0 ? subject.slice(second) : subject.slice(second, third - 1);
  const entry = third === 0 ? undefined : subject.slice(third);
  if (!/^(0|[1-9][0-9]*)$/u.test(partitionToken)) {
    throw invalidSubject(subject, 'partition', 'partition must be a plain decimal number');
  }
  const rule = customerIdViolation(customerId);
  if (rule !== undefined) {
    throw new ValidationError(
      ErrorCode.InvalidCustomerId,
      `invalid customer id in subject: ${rule.explain} (rule ${rule.name})`,
      rule.name,
      { details: { subject } },
    );
  }
  if (entry !== undefined && !/^[a-z][a-z0-9-]*$/u.test(entry)) {
    throw invalidSubject(subject, 'entry', 'the fourth token must name an internal entry kind');
  }
  const partition = Number(partitionToken);
  const expected = partitionOf(customerId, partitions);
  if (partition !== expected) {
    throw new ValidationError(
      ErrorCode.WrongPartition,
      `customer ${customerId} belongs to partition ${expected} of ${partitions}, not ${partition}`,
      'partition-hash',
      { details: { subject, expected, partitions } },
    );
  }
  return entry === undefined
    ? { kind: 'event', partition, customerId }
    : { kind: 'internal', partition, customerId, entry };
}

function invalidSubject(subject: string, rule: string, message: string): ValidationError {
  return new ValidationError(
    ErrorCode.InvalidSubject,
    `invalid subject ${subject}: ${message}`,
    rule,
    {
      details: { subject },
    },
  );
}
