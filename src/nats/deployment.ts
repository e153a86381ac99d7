import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import type { ResourceNames } from '../contract/names.js';
import { ErrorCode, OrderFleetError } from '../errors.js';
import { isStreamNotFound } from './errors.js';

/** The partition count of a new deployment, when `PARTITIONS` is not given. */
export const DEFAULT_PARTITIONS = 32;

/** Key in the meta bucket that stores the deployment's fixed settings. */
export const DEPLOYMENT_KEY = 'deployment';

/**
 * Where a partition's open timers can be found again after a crash (docs/architecture.md,
 * "Timers and summaries"):
 * - `index`: one `t.<p>.<customer>` entry per open window, written at checkpoints when a window
 *   opens or closes (two writes per window). Every deployment created before layouts existed.
 * - `state`: no index; a new owner after a crash reads the partition's customer snapshots, which
 *   hold the windows already. One write per customer fewer; new deployments use it.
 * The switch goes one way, index → state, once every live worker can run `state`.
 */
export const TimerLayoutSchema = z.enum(['index', 'state']);
export type TimerLayout = z.infer<typeof TimerLayoutSchema>;

/** What `setup` writes for a new deployment. */
export const DEFAULT_TIMER_LAYOUT: TimerLayout = 'state';

export const DeploymentSchema = z.object({
  version: z.literal(1),
  partitions: z.number().int().min(1),
  createdAt: z.string(),
  // Optional so that a record written before layouts existed still reads (as 'index'); an older
  // version reading a newer record drops the field, which is why the switch waits for the fleet.
  timerLayout: TimerLayoutSchema.optional(),
});

/**
 * Settings fixed when the deployment was created. Every component reads the partition count from
 * here, never from its own configuration, so publishers and workers cannot disagree on it.
 */
export type Deployment = z.infer<typeof DeploymentSchema>;

/** The deployment's timer layout (a record without one predates layouts: the index). */
export function timerLayoutOf(deployment: Deployment): TimerLayout {
  return deployment.timerLayout ?? 'index';
}

export async function openMetaBucket(nc: NatsConnection, names: ResourceNames): Promise<KV> {
  return new Kvm(nc).open(names.metaBucket);
}

/** Reads the stored deployment, or undefined when `setup` never ran. */
export async function readDeployment(meta: KV): Promise<Deployment | undefined> {
  return (await readDeploymentEntry(meta))?.deployment;
}

/** The stored deployment with its revision (for the conditional write of a layout switch). */
export async function readDeploymentEntry(
  meta: KV,
): Promise<{ readonly deployment: Deployment; readonly revision: number } | undefined> {
  const entry = await meta.get(DEPLOYMENT_KEY);
  if (entry === null || entry.operation !== 'PUT') return undefined;
  return { deployment: DeploymentSchema.parse(entry.json()), revision: entry.revision };
}

/**
 * Loads the deployment or explains that `order-fleet setup` must run first.
 *
 * The record is read with the direct-get API, whose request subject names the key
 * (`$JS.API.DIRECT.GET.KV_<meta>.$KV.<meta>.deployment`): a role that needs nothing else from the
 * meta bucket (a publisher) is allowed exactly this key, not the watermarks beside it. The record
 * partition count never changes once written, so a direct get served by any replica is as good as any. The
 * bucket's stream info comes first: a direct get on a stream that does not exist is not refused
 * but left unanswered, and a bucket provisioned before direct gets were enabled needs the
 * ordinary get. Only the timer layout ever changes (once, index → state), and nothing that reads
 * the record this way uses it: workers read it again from the bucket at each partition start.
 */
export async function loadDeployment(
  nc: NatsConnection,
  names: ResourceNames,
): Promise<Deployment> {
  let deployment: Deployment | undefined;
  try {
    const info = await (
      await jetstreamManager(nc, { checkAPI: false })
    ).streams.info(`KV_${names.metaBucket}`);
    const direct = info.config.allow_direct === true;
    deployment = await readDeployment(
      direct
        ? await new Kvm(nc).open(names.metaBucket, { allow_direct: true })
        : await openMetaBucket(nc, names),
    );
  } catch (err) {
    // A missing meta bucket means "never provisioned"; anything else is a real failure.
    if (!isMissingBucket(err)) throw err;
    deployment = undefined;
  }
  if (deployment === undefined) {
    throw new OrderFleetError(
      ErrorCode.NotProvisioned,
      `the deployment is not provisioned (no ${names.metaBucket}/${DEPLOYMENT_KEY}); run \`order-fleet setup\` first`,
    );
  }
  return deployment;
}

function isMissingBucket(err: unknown): boolean {
  return isStreamNotFound(err) || (err instanceof Error && isStreamNotFound(err.cause));
}
