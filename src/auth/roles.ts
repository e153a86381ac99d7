import type { ResourceNames } from '../contract/names.js';
import { DEPLOYMENT_KEY } from '../nats/deployment.js';

/**
 * The fleet's roles and exactly what each may send and receive on NATS. Worked out from what
 * nats.js v3 really sends for each command (traced on a permissive server, then checked by the
 * integration tests against a server running these permissions):
 *
 * - JetStream API requests are subjects (`$JS.API.<verb>.<stream>[.<consumer>[.<filter>]]`), so
 *   each role gets the verbs it uses on the streams it uses, never `$JS.API.>`.
 * - A KV bucket `b` is the stream `KV_b` on subjects `$KV.b.>`: a write is a publish there, a
 *   read is `STREAM.MSG.GET.KV_b` (or `DIRECT.GET.KV_b.$KV.b.<key>`, which names the key and so
 *   can be allowed key by key), a watch is an ordered push consumer (consumer create/delete on
 *   `KV_b` plus flow control `$JS.FC.KV_b.>`).
 * - Pull consumers need consumer info and `MSG.NEXT`; acknowledgements are publishes to
 *   `$JS.ACK.<stream>.<consumer>.…`, and from nats-server 2.14 on also to the new form
 *   `$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.…`.
 * - Replies come to the role's own inbox prefix, the only thing a role may subscribe to (besides
 *   the worker's query subjects), so one role cannot read another's replies.
 * - Permissions cannot look at headers and the account mapping `orders.*` is applied before the
 *   publish check, so the streams themselves refuse rollups, purges and deletes (see provision).
 */
export const ROLES = ['admin', 'publisher', 'worker', 'notifier', 'observer'] as const;
export type Role = (typeof ROLES)[number];

export interface SubjectPermissions {
  readonly allow: readonly string[];
  readonly deny: readonly string[];
}

export interface RolePermissions {
  readonly publish: SubjectPermissions;
  readonly subscribe: SubjectPermissions;
  /** Replies to requests the role received (the worker answering `contents` questions). */
  readonly allowResponses: boolean;
}

/** What each role is for, for the generated files' comments and the README. */
export const ROLE_PURPOSE: Readonly<Record<Role, string>> = {
  admin: 'order-fleet setup: create and update streams and buckets; inspect dead letters',
  publisher: 'publish order events (and read the deployment record to partition them)',
  worker: 'order-fleet worker: consume partitions, checkpoint, timers, summaries, dead letters',
  notifier: 'order-fleet notifier: deliver summaries, dead-letter refused deliveries',
  observer: 'order-fleet status and contents: read-only',
};

/** The reply-subject prefix of a role; the role may subscribe below it and nowhere else. */
export function inboxPrefix(role: Role, names: ResourceNames): string {
  return names.namespace === '' ? `_INBOX.${role}` : `_INBOX.${names.namespace}.${role}`;
}

const API = '$JS.API';

function kvStream(bucket: string): string {
  return `KV_${bucket}`;
}

/** Acks of a stream's consumer(s), in both the classic and the 2.14+ subject form. */
function acks(stream: string, consumer = '*'): string[] {
  return [`$JS.ACK.${stream}.${consumer}.>`, `$JS.ACK.*.*.${stream}.${consumer}.>`];
}

/** Create (every form nats.js uses), info, pull and delete of a consumer. */
function consumerUse(stream: string, consumer = '*'): string[] {
  return [
    `${API}.CONSUMER.CREATE.${stream}.${consumer}`,
    `${API}.CONSUMER.CREATE.${stream}.${consumer}.>`,
    `${API}.CONSUMER.DURABLE.CREATE.${stream}.${consumer}`,
    `${API}.CONSUMER.INFO.${stream}.${consumer}`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
  ];
}

/** Read, write and watch a KV bucket (watches are ordered push consumers). */
function kvReadWrite(bucket: string): string[] {
  const stream = kvStream(bucket);
  return [
    `${API}.STREAM.INFO.${stream}`,
    `${API}.STREAM.MSG.GET.${stream}`,
    `$KV.${bucket}.>`,
    ...kvWatch(bucket),
  ];
}

function kvWatch(bucket: string): string[] {
  const stream = kvStream(bucket);
  return [
    `${API}.CONSUMER.CREATE.${stream}`,
    `${API}.CONSUMER.CREATE.${stream}.>`,
    `${API}.CONSUMER.DELETE.${stream}.>`,
    `${API}.CONSUMER.INFO.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ];
}

/**
 * The immutable deployment record, readable key by key through the direct-get API, and the meta
 * bucket's stream info (is it provisioned, does it allow direct gets; no values).
 */
function deploymentRead(names: ResourceNames): string[] {
  return [
    `${API}.STREAM.INFO.${kvStream(names.metaBucket)}`,
    `${API}.DIRECT.GET.${kvStream(names.metaBucket)}.$KV.${names.metaBucket}.${DEPLOYMENT_KEY}`,
  ];
}

/** Every stream the fleet owns, KV buckets included. */
export function fleetStreams(names: ResourceNames): string[] {
  return [
    names.ordersStream,
    names.deadLetterStream,
    names.notificationsStream,
    ...[names.stateBucket, names.metaBucket, names.leaseBucket, names.memberBucket].map(kvStream),
  ];
}

/** Stream and consumer administration nobody but `admin` may do, denied explicitly elsewhere. */
function streamAdministration(names: ResourceNames): string[] {
  return fleetStreams(names).flatMap((s) => [
    `${API}.STREAM.CREATE.${s}`,
    `${API}.STREAM.UPDATE.${s}`,
    `${API}.STREAM.DELETE.${s}`,
    `${API}.STREAM.PURGE.${s}`,
    `${API}.STREAM.MSG.DELETE.${s}`,
    `${API}.STREAM.RESTORE.${s}`,
    `${API}.STREAM.SNAPSHOT.${s}`,
  ]);
}

/**
 * The permissions of one role. Pure: `auth init` renders them into the server config, and the
 * unit tests check them subject by subject.
 */
export function rolePermissions(role: Role, names: ResourceNames): RolePermissions {
  const inbox = `${inboxPrefix(role, names)}.>`;
  const orders = names.ordersPrefix;
  const meta = names.metaBucket;
  switch (role) {
    case 'publisher':
      return {
        publish: {
          // Exactly three tokens: `<orders>.<p>.<customerId>`. Entries the fleet writes itself
          // (`<orders>.<p>.<customerId>.<kind>`, timer firings) have four and are refused.
          allow: [`${orders}.*.*`, ...deploymentRead(names)],
          deny: [`${orders}.*.*.>`, ...streamAdministration(names)],
        },
        subscribe: { allow: [inbox], deny: [] },
        allowResponses: false,
      };
    case 'worker':
      return {
        publish: {
          allow: [
            `${API}.INFO`,
            ...deploymentRead(names),
            // Timer firings, appended by the partition's owner.
            `${orders}.*.*.timer`,
            `${names.deadLetterPrefix}.*`,
            `${names.notificationsPrefix}.*`,
            // Replays look at the customer's last notification; a timer id collision at the
            // stored message.
            `${API}.STREAM.MSG.GET.${names.notificationsStream}`,
            `${API}.STREAM.MSG.GET.${names.ordersStream}`,
            // Partition consumers `partition-<p>`: recreated at every start of a partition.
            ...consumerUse(names.ordersStream),
            `${API}.CONSUMER.DELETE.${names.ordersStream}.*`,
            ...acks(names.ordersStream),
            ...kvReadWrite(names.stateBucket),
            ...kvReadWrite(meta),
            ...kvReadWrite(names.leaseBucket),
            ...kvReadWrite(names.memberBucket),
            // Counters for the console (core NATS, fire and forget).
            `${names.statusPrefix}.*`,
          ],
          // The deployment record is written by setup alone.
          deny: [`$KV.${meta}.${DEPLOYMENT_KEY}`, ...streamAdministration(names)],
        },
        subscribe: { allow: [inbox, `${names.queryPrefix}.*`], deny: [] },
        allowResponses: true,
      };
    case 'notifier':
      return {
        publish: {
          allow: [
            `${API}.INFO`,
            ...consumerUse(names.notificationsStream, 'notifier'),
            ...acks(names.notificationsStream, 'notifier'),
            names.deadLetterNotifications,
          ],
          deny: streamAdministration(names),
        },
        subscribe: { allow: [inbox], deny: [] },
        allowResponses: false,
      };
    case 'observer':
      return {
        publish: {
          allow: [
            `${API}.INFO`,
            ...deploymentRead(names),
            `${names.queryPrefix}.*`,
            `${API}.STREAM.INFO.${names.ordersStream}`,
            `${API}.CONSUMER.INFO.${names.ordersStream}.*`,
            ...[names.stateBucket, meta, names.leaseBucket, names.memberBucket].flatMap((b) => [
              `${API}.STREAM.INFO.${kvStream(b)}`,
              `${API}.STREAM.MSG.GET.${kvStream(b)}`,
            ]),
          ],
          deny: [`$KV.>`, ...streamAdministration(names)],
        },
        // The workers' counter reports, which the console shows.
        subscribe: { allow: [inbox, `${names.statusPrefix}.*`], deny: [] },
        allowResponses: false,
      };
    case 'admin': {
      const streams = fleetStreams(names);
      return {
        publish: {
          allow: [
            `${API}.INFO`,
            `${API}.STREAM.NAMES`,
            `${API}.STREAM.LIST`,
            ...streams.flatMap((s) => [
              `${API}.STREAM.CREATE.${s}`,
              `${API}.STREAM.UPDATE.${s}`,
              `${API}.STREAM.INFO.${s}`,
              `${API}.STREAM.MSG.GET.${s}`,
              `${API}.DIRECT.GET.${s}`,
              `${API}.DIRECT.GET.${s}.>`,
              // Inspection (dead letters, the log): ordered consumers of its own.
              `${API}.CONSUMER.CREATE.${s}`,
              `${API}.CONSUMER.CREATE.${s}.>`,
              `${API}.CONSUMER.INFO.${s}.*`,
              `${API}.CONSUMER.DELETE.${s}.*`,
              `${API}.CONSUMER.NAMES.${s}`,
              `${API}.CONSUMER.LIST.${s}`,
              `${API}.CONSUMER.MSG.NEXT.${s}.*`,
              `$JS.FC.${s}.>`,
            ]),
            `$KV.${meta}.${DEPLOYMENT_KEY}`,
          ],
          // Setup never deletes or purges; losing the log takes a break-glass user of its own.
          deny: streams.flatMap((s) => [
            `${API}.STREAM.DELETE.${s}`,
            `${API}.STREAM.PURGE.${s}`,
            `${API}.STREAM.MSG.DELETE.${s}`,
          ]),
        },
        subscribe: { allow: [inbox], deny: [] },
        allowResponses: false,
      };
    }
  }
}
