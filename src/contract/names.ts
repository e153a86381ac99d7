import { z } from 'zod';

/**
 * Names of every NATS resource the fleet uses. The defaults are the public contract (stream
 * `ORDERS`, subjects `orders.<p>.<customerId>`). An optional namespace prefixes every name so that
 * several fleets (or parallel test runs) can share one NATS account without touching each other.
 */
export interface ResourceNames {
  readonly namespace: string;
  /** Stream holding the order events (and, later, timer entries). */
  readonly ordersStream: string;
  /** First token(s) of event subjects: `<ordersPrefix>.<p>.<customerId>`. */
  readonly ordersPrefix: string;
  readonly deadLetterStream: string;
  /** Dead letters of the orders stream: `<deadLetterPrefix>.<p>`. */
  readonly deadLetterPrefix: string;
  /** Dead letters of notification delivery (permanent webhook failures). */
  readonly deadLetterNotifications: string;
  /** Stream of summary notifications, `<notificationsPrefix>.<customerId>`. */
  readonly notificationsStream: string;
  readonly notificationsPrefix: string;
  /** KV bucket: one entry per customer. */
  readonly stateBucket: string;
  /** KV bucket: deployment settings (partition count) and per-partition watermarks. */
  readonly metaBucket: string;
  /** KV bucket with a TTL: one entry per live worker. */
  readonly memberBucket: string;
  /** KV bucket with a TTL: one lease per partition. */
  readonly leaseBucket: string;
  /** Request/reply subjects for questions, per partition. */
  readonly queryPrefix: string;
  /** Core NATS subjects where each worker reports its counters: `<statusPrefix>.<workerId>`. */
  readonly statusPrefix: string;
}

export const NamespaceSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]*$/u, 'namespace may only contain letters, digits, _ and -')
  .max(32, 'namespace must be at most 32 characters');

export function resourceNames(namespace = ''): ResourceNames {
  NamespaceSchema.parse(namespace);
  const upper = namespace === '' ? '' : `${namespace.toUpperCase()}_`;
  const dotted = namespace === '' ? '' : `${namespace}.`;
  const dashed = namespace === '' ? '' : `${namespace}-`;
  return {
    namespace,
    ordersStream: `${upper}ORDERS`,
    ordersPrefix: `${dotted}orders`,
    deadLetterStream: `${upper}ORDERS_DLQ`,
    deadLetterPrefix: `${dotted}dlq.orders`,
    deadLetterNotifications: `${dotted}dlq.notifications`,
    notificationsStream: `${upper}NOTIFICATIONS`,
    notificationsPrefix: `${dotted}notifications`,
    stateBucket: `${dashed}orders-state`,
    metaBucket: `${dashed}orders-meta`,
    memberBucket: `${dashed}orders-members`,
    leaseBucket: `${dashed}orders-leases`,
    queryPrefix: `${dotted}order-fleet.q`,
    statusPrefix: `${dotted}order-fleet.status`,
  };
}
