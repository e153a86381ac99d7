import {
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import type { ResourceNames } from '../contract/names.js';
import { ordersStreamSubjects } from '../contract/subjects.js';
import { describeError, ErrorCode, errorCode, isRetriable, OrderFleetError } from '../errors.js';
import { retry } from '../lifecycle/retry.js';
import type { Logger } from '../logging/logger.js';
import {
  DEFAULT_PARTITIONS,
  DEFAULT_TIMER_LAYOUT,
  DEPLOYMENT_KEY,
  openMetaBucket,
  readDeployment,
  readDeploymentEntry,
  timerLayoutOf,
  type Deployment,
  type TimerLayout,
} from './deployment.js';
import { isNoSuitablePeers, isStreamNotFound, isWrongLastSequence } from './errors.js';
import { jetstreamManager } from '@nats-io/jetstream';
import { kvStreamName } from '../contract/internal-names.js';
import { Kvm } from '@nats-io/kv';
import { readLiveMembers } from '../fleet/membership.js';

export interface SetupOptions {
  /** Requested partition count; undefined keeps the stored one (default for a new deployment). */
  readonly partitions: number | undefined;
  /**
   * Requested timer layout: undefined keeps the stored one (`state` for a new deployment);
   * `state` on an `index` deployment switches it, once every live worker supports `state`.
   */
  readonly timerLayout?: TimerLayout | undefined;
  readonly replicas: number;
  /** How long {@link setupDeploymentWhenReady} waits out a forming cluster (default 0). */
  readonly waitMs?: number;
  readonly maxAgeMs: number;
  readonly duplicateWindowMs: number;
  readonly leaseTtlMs: number;
  readonly notificationsDuplicateWindowMs: number;
  readonly notificationsMaxAgeMs: number;
}

export type SetupAction = 'created' | 'updated' | 'unchanged';

export interface SetupReport {
  readonly deployment: Deployment;
  readonly resources: readonly {
    readonly kind: 'stream' | 'kv';
    readonly name: string;
    readonly action: SetupAction;
    readonly changed: readonly string[];
  }[];
}

/** Dead letters are kept longer than events: an operator must have time to look at them. */
const DEAD_LETTER_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

/** The fields of a stream config that setup manages and compares. */
type Managed = Pick<
  StreamConfig,
  | 'name'
  | 'subjects'
  | 'storage'
  | 'retention'
  | 'discard'
  | 'num_replicas'
  | 'max_age'
  | 'duplicate_window'
  | 'deny_delete'
  | 'deny_purge'
  | 'allow_rollup_hdrs'
>;

/**
 * Permissions cannot look at headers, so the streams themselves refuse what no user may do: a
 * `Nats-Rollup` header from anyone allowed to publish would otherwise erase a stream's history,
 * and message deletes and purges would erase events, dead letters or summaries. The server never
 * lets these be turned back on (deny_delete, deny_purge), which is the point.
 */
const HARDENED = { deny_delete: true, deny_purge: true, allow_rollup_hdrs: false } as const;

/**
 * KV buckets: no rollups (a `Nats-Rollup: all` on one key would wipe the bucket; the fleet never
 * purges keys) and no message deletes. Purge stays possible for the stream so an operator can
 * compact delete markers, but no role's permissions include the purge API. Direct gets are on so
 * the deployment record can be read key by key (see loadDeployment).
 */
/**
 * The dead-letter stream keeps single-message deletes: `order-fleet dlq purge` drops exactly the
 * dead letters an operator selected. Only the admin role's permissions include that API.
 */
const DLQ_HARDENED = { deny_delete: false, deny_purge: true, allow_rollup_hdrs: false } as const;

const KV_HARDENED = { deny_delete: true, allow_rollup_hdrs: false, allow_direct: true } as const;
const IMMUTABLE: readonly (keyof Managed)[] = ['storage', 'retention'];

/**
 * Creates or updates, idempotently, everything the fleet needs. Running it twice changes nothing.
 * The partition count is the one setting that can never change on a live deployment: every
 * customer's events, state keys and watermarks are addressed by it.
 */
/**
 * {@link setupDeployment}, retried for up to `options.waitMs` while the cluster cannot take it
 * yet: transient NATS failures, and "no suitable peers" while the last peer of a cluster that
 * is just starting (a compose `up`, a Helm install next to the setup Job) joins the meta group.
 * Setup is idempotent, so a retry after a partial run only finishes it. After the wait, the
 * last failure is thrown: a replica count the cluster can never place fails then, clearly.
 */
export async function setupDeploymentWhenReady(
  nc: NatsConnection,
  names: ResourceNames,
  options: SetupOptions,
  log: Logger,
  signal?: AbortSignal,
): Promise<SetupReport> {
  const deadline = Date.now() + (options.waitMs ?? 0);
  return retry(() => setupDeployment(nc, names, options, log), {
    initialMs: 250,
    maxMs: 5000,
    ...(signal === undefined ? {} : { signal }),
    shouldRetry: (err) => Date.now() < deadline && (isRetriable(err) || isNoSuitablePeers(err)),
    onRetry: (err, attempt, delayMs) =>
      log.warn(
        { code: errorCode(err), err: describeError(err), attempt, delayMs },
        'setup: the cluster cannot take it yet, retrying',
      ),
  });
}

export async function setupDeployment(
  nc: NatsConnection,
  names: ResourceNames,
  options: SetupOptions,
  log: Logger,
): Promise<SetupReport> {
  const jsm = await jetstreamManager(nc);
  // Refuse a partition change before touching anything: a refused setup must change nothing.
  const partitions = await resolvePartitions(jsm, nc, names, options.partitions);
  const resources: SetupReport['resources'][number][] = [];
  const replicas = options.replicas;

  resources.push(
    await ensureStream(jsm, {
      ...HARDENED,
      name: names.ordersStream,
      subjects: ordersStreamSubjects(names, partitions),
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: replicas,
      max_age: nanos(options.maxAgeMs),
      duplicate_window: nanos(options.duplicateWindowMs),
    }),
  );
  resources.push(
    await ensureStream(jsm, {
      ...DLQ_HARDENED,
      name: names.deadLetterStream,
      subjects: [`${names.deadLetterPrefix}.>`, names.deadLetterNotifications],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: replicas,
      max_age: nanos(DEAD_LETTER_MAX_AGE_MS),
      // Dead letters are published with a deterministic id per source message, so a replay
      // that meets the same bad message does not file it twice.
      duplicate_window: nanos(options.duplicateWindowMs),
    }),
  );
  resources.push(
    await ensureStream(jsm, {
      ...HARDENED,
      name: names.notificationsStream,
      subjects: [`${names.notificationsPrefix}.>`],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: replicas,
      max_age: nanos(options.notificationsMaxAgeMs),
      // Summaries are published with Nats-Msg-Id = summaryId; a replay inside this window is
      // deduplicated by the server (the sink also checks the last summary when replaying).
      duplicate_window: nanos(
        options.notificationsMaxAgeMs === 0
          ? options.notificationsDuplicateWindowMs
          : Math.min(options.notificationsDuplicateWindowMs, options.notificationsMaxAgeMs),
      ),
    }),
  );
  for (const bucket of [names.stateBucket, names.metaBucket]) {
    resources.push(await ensureBucket(nc, jsm, bucket, replicas, 0));
  }
  // Leases and membership expire with the bucket TTL (NATS 2.9 has no per-key TTL).
  for (const bucket of [names.leaseBucket, names.memberBucket]) {
    resources.push(await ensureBucket(nc, jsm, bucket, replicas, options.leaseTtlMs));
  }

  const deployment = await ensureDeployment(nc, names, partitions, options.timerLayout);
  for (const r of resources)
    log.info(
      { kind: r.kind, name: r.name, action: r.action, changed: r.changed },
      'setup resource',
    );
  log.info({ partitions: deployment.partitions }, 'setup deployment');
  return { deployment, resources };
}

async function ensureStream(
  jsm: JetStreamManager,
  desired: Managed,
): Promise<SetupReport['resources'][number]> {
  let current: StreamConfig;
  try {
    current = (await jsm.streams.info(desired.name)).config;
  } catch (err) {
    if (!isStreamNotFound(err)) throw err;
    await jsm.streams.add(desired);
    return { kind: 'stream', name: desired.name, action: 'created', changed: [] };
  }
  const changed = diff(current, desired);
  const immutable = changed.filter((k) => IMMUTABLE.includes(k));
  if (immutable.length > 0) {
    throw new OrderFleetError(
      ErrorCode.ImmutableSetting,
      `stream ${desired.name} exists with a different ${immutable.join(', ')}, which NATS cannot change in place`,
      { details: { stream: desired.name, fields: immutable } },
    );
  }
  if (changed.length === 0)
    return { kind: 'stream', name: desired.name, action: 'unchanged', changed };
  await jsm.streams.update(desired.name, { ...current, ...desired });
  return { kind: 'stream', name: desired.name, action: 'updated', changed };
}

function diff(current: StreamConfig, desired: Managed): (keyof Managed)[] {
  // A server may leave out a boolean that is false; read it as false, or setup would never settle.
  const normal = (v: unknown, like: unknown): unknown =>
    v ?? (typeof like === 'boolean' ? false : null);
  return (Object.keys(desired) as (keyof Managed)[]).filter(
    (key) =>
      JSON.stringify(normal(current[key], desired[key])) !==
      JSON.stringify(normal(desired[key], desired[key])),
  );
}

async function ensureBucket(
  nc: NatsConnection,
  jsm: JetStreamManager,
  bucket: string,
  replicas: number,
  ttlMs: number,
): Promise<SetupReport['resources'][number]> {
  const stream = kvStreamName(bucket);
  let config: StreamConfig | undefined;
  try {
    config = (await jsm.streams.info(stream)).config;
  } catch (err) {
    if (!isStreamNotFound(err)) throw err;
  }
  let action: SetupAction = 'updated';
  if (config === undefined) {
    // The bucket's stream is created hardened in one step, in the layout the KV API expects
    // (ADR-8: subjects `$KV.<bucket>.>`, limits retention, discard new), rather than created by
    // `Kvm.create` and then updated: a 2.9 cluster node replaying that update from its meta log
    // on restart fails ("can not cancel deny message deletes") and crashes.
    // history 1: entries are whole snapshots, older revisions are worthless.
    await jsm.streams.add({
      name: stream,
      subjects: [`$KV.${bucket}.>`],
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.New,
      storage: StorageType.File,
      max_msgs_per_subject: 1,
      max_msg_size: -1,
      num_replicas: replicas,
      max_age: nanos(ttlMs),
      ...KV_HARDENED,
    });
    config = (await jsm.streams.info(stream)).config;
    action = 'created';
  }
  const desired = { num_replicas: replicas, max_age: nanos(ttlMs), ...KV_HARDENED };
  const changed = (Object.keys(desired) as (keyof typeof desired)[]).filter(
    (key) => (config[key] ?? false) !== desired[key],
  );
  if (changed.length > 0) await jsm.streams.update(stream, { ...config, ...desired });
  if (action === 'created') return { kind: 'kv', name: bucket, action, changed: [] };
  return {
    kind: 'kv',
    name: bucket,
    action: changed.length > 0 ? 'updated' : 'unchanged',
    changed,
  };
}

function refuseChange(existing: Deployment, requested: number | undefined): void {
  if (requested === undefined || requested === existing.partitions) return;
  throw new OrderFleetError(
    ErrorCode.ImmutableSetting,
    `refusing to change the partition count from ${existing.partitions} to ${requested}: ` +
      'every stored event subject, customer state key and watermark is addressed by it, so ' +
      'changing it would split customers across partitions. Keep PARTITIONS unset (or equal to ' +
      `${existing.partitions}), or provision a new deployment under another ORDER_FLEET_NAMESPACE and replay into it.`,
    { details: { stored: existing.partitions, requested } },
  );
}

/** The deployment's partition count: the stored one, else the requested one, else the default. */
async function resolvePartitions(
  jsm: JetStreamManager,
  nc: NatsConnection,
  names: ResourceNames,
  requested: number | undefined,
): Promise<number> {
  try {
    await jsm.streams.info(kvStreamName(names.metaBucket));
  } catch (err) {
    if (isStreamNotFound(err)) return requested ?? DEFAULT_PARTITIONS; // a new deployment
    throw err;
  }
  const existing = await readDeployment(await openMetaBucket(nc, names));
  if (existing === undefined) return requested ?? DEFAULT_PARTITIONS;
  refuseChange(existing, requested);
  return existing.partitions;
}

async function ensureDeployment(
  nc: NatsConnection,
  names: ResourceNames,
  requested: number | undefined,
  layout: TimerLayout | undefined,
): Promise<Deployment> {
  const meta = await openMetaBucket(nc, names);
  for (;;) {
    const stored = await readDeploymentEntry(meta);
    if (stored !== undefined) {
      const existing = stored.deployment;
      refuseChange(existing, requested);
      if (layout === undefined || layout === timerLayoutOf(existing)) return existing;
      const switched = await switchTimerLayout(nc, names, existing, layout);
      try {
        // Conditional on the record we read: two setups racing switch it once.
        await meta.update(DEPLOYMENT_KEY, JSON.stringify(switched), stored.revision);
        return switched;
      } catch (err) {
        if (!isWrongLastSequence(err)) throw err;
        continue;
      }
    }
    const created: Deployment = {
      version: 1,
      partitions: requested ?? DEFAULT_PARTITIONS,
      createdAt: new Date().toISOString(),
      timerLayout: layout ?? DEFAULT_TIMER_LAYOUT,
    };
    try {
      // create() is conditional: if two setups race, exactly one writes and the other
      // loops once to compare against what the winner stored.
      await meta.create(DEPLOYMENT_KEY, JSON.stringify(created));
      return created;
    } catch (err) {
      if (!isWrongLastSequence(err)) throw err;
    }
  }
}

/**
 * The record after switching its timer layout, if that is safe now. Only index → state: the
 * index is not written under `state`, so going back would leave a crash path without it. And only
 * when every live member advertises `state` in its heartbeat: a worker of an older version would
 * not know the field, go on trusting an index nobody keeps complete after a crash, and miss the
 * open windows of customers nobody holds in memory. Workers pick the layout up at their next
 * partition start; until then they keep writing the index, which is harmless.
 */
async function switchTimerLayout(
  nc: NatsConnection,
  names: ResourceNames,
  existing: Deployment,
  layout: TimerLayout,
): Promise<Deployment> {
  if (layout === 'index') {
    throw new OrderFleetError(
      ErrorCode.ImmutableSetting,
      'refusing to switch the timer layout from state back to index: workers on the state layout ' +
        'keep no timer index, so an index-layout owner would miss open windows after a crash',
      { details: { stored: timerLayoutOf(existing), requested: layout } },
    );
  }
  const { members, unreadable } = await readLiveMembers(
    await jetstreamManager(nc),
    await new Kvm(nc).open(names.memberBucket),
    names.memberBucket,
  );
  const lacking = [
    ...members.filter((m) => !(m.timerLayouts ?? []).includes(layout)).map((m) => m.id),
    ...unreadable,
  ];
  if (lacking.length > 0) {
    throw new OrderFleetError(
      ErrorCode.UpgradeBlocked,
      `refusing to switch the timer layout to ${layout}: ${lacking.length} live worker(s) do not ` +
        `support it (${lacking.slice(0, 5).join(', ')}); finish rolling the fleet onto this ` +
        'version, then run setup again',
      { details: { layout, workers: lacking } },
    );
  }
  return { ...existing, timerLayout: layout };
}
