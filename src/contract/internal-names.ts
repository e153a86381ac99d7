import type { ResourceNames } from './names.js';

/**
 * Internal names the fleet builds from {@link ResourceNames}: KV keys of leases and members,
 * durable consumer names, query subjects, and the streams behind KV buckets. Kept in one place so
 * that a worker, `status` and tests can never disagree on them.
 */

/** Lease of partition `p` in the lease bucket. */
export function leaseKey(partition: number): string {
  return `p.${partition}`;
}

/** Every lease key. */
export const LEASE_KEYS = 'p.>';

/** The partition of a lease key, or undefined for another key. */
export function partitionOfLeaseKey(key: string): number | undefined {
  const match = /^p\.(\d+)$/u.exec(key);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/** A worker's entry in the membership bucket. */
export function memberKey(workerId: string): string {
  return `m.${workerId}`;
}

/** Every member key. */
export const MEMBER_KEYS = 'm.>';

export function workerIdOfMemberKey(key: string): string {
  return key.slice(2);
}

/** Durable pull consumer of partition `p` on the orders stream (KEDA scales on it). */
export function partitionConsumerName(partition: number): string {
  return `partition-${partition}`;
}

/** Durable consumer shared by every notifier: several can run, each message goes to one. */
export const NOTIFIER_CONSUMER = 'notifier';

/** Where `contents` questions for partition `p` are sent; only its current runner listens. */
export function querySubject(names: ResourceNames, partition: number): string {
  return `${names.queryPrefix}.${partition}`;
}

/** Dead letters of partition `p`. */
export function deadLetterSubject(names: ResourceNames, partition: number): string {
  return `${names.deadLetterPrefix}.${partition}`;
}

/** The JetStream stream behind a KV bucket, and the subject prefix of its keys. */
export function kvStreamName(bucket: string): string {
  return `KV_${bucket}`;
}

export function kvSubjectPrefix(bucket: string): string {
  return `$KV.${bucket}.`;
}
