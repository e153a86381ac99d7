// The pure half of the Kubernetes simulator behind test/integration/k8s-behaviour.test.ts: what
// the rendered manifests say (read from the objects `kubectl kustomize` produced, never restated
// here), and the decisions the Kubernetes controllers take from them: the Deployment
// controller's rolling-update step, the PodDisruptionBudget's allowed disruptions, and the HPA
// (as KEDA configures it) with its scaling behavior. No I/O and no clock: every function takes
// the time and the observed state as arguments, so test/unit/kube-sim.test.ts checks them alone.
// The algorithms follow kube-controller-manager (deployment/rolling.go, disruption.go,
// podautoscaler/horizontal.go and replica_calculator.go), reduced to what one Deployment needs.

import type { K8sObject } from './manifests.js';

export class KubeSimError extends Error {
  constructor(
    readonly code: 'MANIFEST_SHAPE' | 'UNSUPPORTED',
    message: string,
  ) {
    super(message);
    this.name = 'KubeSimError';
  }
}

/** An IntOrString as Kubernetes has it: a count, or a percentage such as "25%". */
export type IntOrPercent = number | string;

/** intstr.GetScaledValueFromIntOrPercent: percentages of `total`, rounded up or down. */
export function scaledValue(value: IntOrPercent, total: number, roundUp: boolean): number {
  if (typeof value === 'number') return value;
  const match = /^(\d+)%$/u.exec(value);
  if (match?.[1] === undefined)
    throw new KubeSimError('MANIFEST_SHAPE', `bad IntOrString ${value}`);
  const exact = (Number(match[1]) * total) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

/**
 * deployment/util.ResolveFenceposts: maxSurge rounds up, maxUnavailable down, and both 0 would
 * deadlock a rollout, so maxUnavailable becomes 1 then.
 */
export function resolveFenceposts(
  maxSurge: IntOrPercent,
  maxUnavailable: IntOrPercent,
  desired: number,
): { readonly maxSurge: number; readonly maxUnavailable: number } {
  const surge = scaledValue(maxSurge, desired, true);
  const unavailable = scaledValue(maxUnavailable, desired, false);
  return { maxSurge: surge, maxUnavailable: surge === 0 && unavailable === 0 ? 1 : unavailable };
}

/** Pods of one revision that are not terminating, and how many of them are ready. */
export interface PodCounts {
  readonly total: number;
  readonly ready: number;
}

export interface RollingInput {
  readonly desired: number;
  readonly maxSurge: number;
  readonly maxUnavailable: number;
  /** Pods of older revisions. */
  readonly old: PodCounts;
  /** Pods of the Deployment's current revision. */
  readonly current: PodCounts;
}

export interface RollingStep {
  /** New-revision pods to create. */
  readonly createCurrent: number;
  /** Old pods to delete that are not ready (cleaned up first: they serve nothing). */
  readonly deleteOldUnready: number;
  /** Ready old pods to delete. */
  readonly deleteOldReady: number;
  /** Current-revision pods to delete (the Deployment was scaled in with no rollout under way). */
  readonly deleteCurrent: number;
}

/**
 * One reconcile of a RollingUpdate Deployment (rolling.go: reconcileNewReplicaSet, then
 * reconcileOldReplicaSets with cleanupUnhealthyReplicas and
 * scaleDownOldReplicaSetsForRollingUpdate). Terminating pods are not counted, as the
 * ReplicaSet controller does not count them. Available = ready (minReadySeconds 0).
 */
export function rollingStep(input: RollingInput): RollingStep {
  const { desired, maxSurge, maxUnavailable, old, current } = input;
  if (old.total === 0) {
    // No rollout under way: the ReplicaSet just holds the replica count.
    return {
      createCurrent: Math.max(0, desired - current.total),
      deleteOldUnready: 0,
      deleteOldReady: 0,
      deleteCurrent: Math.max(0, current.total - desired),
    };
  }
  const all = old.total + current.total;
  const createCurrent =
    current.total >= desired
      ? 0
      : Math.max(0, Math.min(desired + maxSurge - all, desired - current.total));
  const minAvailable = desired - maxUnavailable;
  const currentUnavailable = current.total - current.ready;
  const maxScaledDown = all - minAvailable - currentUnavailable;
  if (maxScaledDown <= 0)
    return { createCurrent, deleteOldUnready: 0, deleteOldReady: 0, deleteCurrent: 0 };
  const deleteOldUnready = Math.min(maxScaledDown, old.total - old.ready);
  const available = old.ready + current.ready;
  const deleteOldReady = Math.max(0, Math.min(available - minAvailable, old.ready));
  return { createCurrent, deleteOldUnready, deleteOldReady, deleteCurrent: 0 };
}

export interface PdbSpec {
  readonly minAvailable?: IntOrPercent;
  readonly maxUnavailable?: IntOrPercent;
}

/**
 * disruption.go (getExpectedPodCount, updatePdbStatus): how many pods must stay healthy and how
 * many may be disrupted now. `expected` is the controller's scale (the Deployment's replicas);
 * `healthy` counts ready pods that are not terminating.
 */
export function pdbStatus(
  pdb: PdbSpec,
  state: { readonly expected: number; readonly pods: number; readonly healthy: number },
): { readonly desiredHealthy: number; readonly disruptionsAllowed: number } {
  let desiredHealthy: number;
  if (pdb.maxUnavailable !== undefined) {
    desiredHealthy = state.expected - scaledValue(pdb.maxUnavailable, state.expected, true);
  } else if (pdb.minAvailable !== undefined) {
    // An integer minAvailable counts pods, not the controller's scale.
    desiredHealthy =
      typeof pdb.minAvailable === 'number'
        ? pdb.minAvailable
        : scaledValue(pdb.minAvailable, state.expected, true);
  } else {
    throw new KubeSimError('MANIFEST_SHAPE', 'PodDisruptionBudget has neither bound');
  }
  desiredHealthy = Math.max(0, desiredHealthy);
  return { desiredHealthy, disruptionsAllowed: Math.max(0, state.healthy - desiredHealthy) };
}

/**
 * The eviction API's answer (unhealthyPodEvictionPolicy IfHealthyBudget, the default): a healthy
 * pod only while a disruption is allowed; an unhealthy one while the budget is met anyway.
 */
export function evictionAllowed(
  status: { readonly desiredHealthy: number; readonly disruptionsAllowed: number },
  state: { readonly healthy: number; readonly podHealthy: boolean },
): boolean {
  return state.podHealthy ? status.disruptionsAllowed > 0 : state.healthy >= status.desiredHealthy;
}

/** The HPA controller's default tolerance (--horizontal-pod-autoscaler-tolerance). */
export const HPA_TOLERANCE = 0.1;

/**
 * replica_calculator.go GetExternalMetricReplicas for an AverageValue target (what KEDA creates
 * for a Prometheus trigger's `threshold`): ceil(metric / threshold), unless the metric per
 * current replica is within the tolerance of the target.
 */
export function hpaRawDesired(input: {
  readonly metric: number;
  readonly threshold: number;
  readonly currentReplicas: number;
  readonly tolerance?: number;
}): number {
  const { metric, threshold, currentReplicas } = input;
  const ratio = metric / (threshold * currentReplicas);
  if (currentReplicas > 0 && Math.abs(1 - ratio) <= (input.tolerance ?? HPA_TOLERANCE))
    return currentReplicas;
  return Math.ceil(metric / threshold);
}

export interface ScalingPolicy {
  readonly type: 'Pods' | 'Percent';
  readonly value: number;
  readonly periodSeconds: number;
}
export interface ScalingRules {
  readonly stabilizationWindowSeconds: number;
  readonly selectPolicy: 'Max' | 'Min' | 'Disabled';
  readonly policies: readonly ScalingPolicy[];
}
export interface HpaBehavior {
  readonly scaleUp: ScalingRules;
  readonly scaleDown: ScalingRules;
}

/** autoscaling/v2 defaults for rules a manifest leaves out. */
export const DEFAULT_BEHAVIOR: HpaBehavior = {
  scaleUp: {
    stabilizationWindowSeconds: 0,
    selectPolicy: 'Max',
    policies: [
      { type: 'Pods', value: 4, periodSeconds: 15 },
      { type: 'Percent', value: 100, periodSeconds: 15 },
    ],
  },
  scaleDown: {
    stabilizationWindowSeconds: 300,
    selectPolicy: 'Max',
    policies: [{ type: 'Percent', value: 100, periodSeconds: 15 }],
  },
};

/** What the HPA remembers between syncs (times in seconds). */
export interface HpaMemory {
  readonly recommendations: readonly { readonly at: number; readonly replicas: number }[];
  readonly scaleUpEvents: readonly { readonly at: number; readonly change: number }[];
  readonly scaleDownEvents: readonly { readonly at: number; readonly change: number }[];
}
/**
 * A new HPA's memory: the controller records the current replica count as a recommendation the
 * first time it sees an HPA, so it does not scale in before a stabilization window passed.
 */
export function initialHpaMemory(current: number, now: number): HpaMemory {
  return {
    recommendations: [{ at: now, replicas: current }],
    scaleUpEvents: [],
    scaleDownEvents: [],
  };
}

function changeInPeriod(
  events: readonly { readonly at: number; readonly change: number }[],
  now: number,
  periodSeconds: number,
): number {
  return events.filter((e) => e.at > now - periodSeconds).reduce((s, e) => s + e.change, 0);
}

/** calculateScaleUpLimitWithScalingRules. */
export function scaleUpLimit(
  current: number,
  memory: HpaMemory,
  rules: ScalingRules,
  now: number,
): number {
  if (rules.selectPolicy === 'Disabled') return current;
  let result = rules.selectPolicy === 'Min' ? Infinity : -Infinity;
  for (const p of rules.policies) {
    const start =
      current -
      changeInPeriod(memory.scaleUpEvents, now, p.periodSeconds) +
      changeInPeriod(memory.scaleDownEvents, now, p.periodSeconds);
    const proposed = p.type === 'Pods' ? start + p.value : Math.ceil(start * (1 + p.value / 100));
    result = rules.selectPolicy === 'Min' ? Math.min(result, proposed) : Math.max(result, proposed);
  }
  return result;
}

/** calculateScaleDownLimitWithBehaviors. */
export function scaleDownLimit(
  current: number,
  memory: HpaMemory,
  rules: ScalingRules,
  now: number,
): number {
  if (rules.selectPolicy === 'Disabled') return current;
  // The largest change (selectPolicy Max) is the lowest replica count.
  let result = rules.selectPolicy === 'Min' ? -Infinity : Infinity;
  for (const p of rules.policies) {
    const start =
      current -
      changeInPeriod(memory.scaleUpEvents, now, p.periodSeconds) +
      changeInPeriod(memory.scaleDownEvents, now, p.periodSeconds);
    const proposed = p.type === 'Pods' ? start - p.value : Math.floor(start * (1 - p.value / 100));
    result = rules.selectPolicy === 'Min' ? Math.max(result, proposed) : Math.min(result, proposed);
  }
  return result;
}

export interface HpaDecision {
  readonly replicas: number;
  readonly stabilized: number;
  readonly memory: HpaMemory;
}

/**
 * One HPA sync with behaviors (normalizeDesiredReplicasWithBehaviors): the raw recommendation is
 * stabilized (scale up to the lowest, scale down to the highest recommendation within each
 * window), then limited by the policies' rates and clamped to [min, max]. Times in seconds.
 */
export function hpaDecide(input: {
  readonly now: number;
  readonly current: number;
  readonly raw: number;
  readonly min: number;
  readonly max: number;
  readonly behavior: HpaBehavior;
  readonly memory: HpaMemory;
}): HpaDecision {
  const { now, current, raw, min, max, behavior, memory } = input;
  const upWindow = behavior.scaleUp.stabilizationWindowSeconds;
  const downWindow = behavior.scaleDown.stabilizationWindowSeconds;
  let up = raw;
  let down = raw;
  for (const r of memory.recommendations) {
    if (r.at > now - upWindow) up = Math.min(up, r.replicas);
    if (r.at > now - downWindow) down = Math.max(down, r.replicas);
  }
  let stabilized = current;
  if (stabilized < up) stabilized = up;
  if (stabilized > down) stabilized = down;

  let replicas = stabilized;
  if (stabilized > current) {
    const limit = Math.max(current, scaleUpLimit(current, memory, behavior.scaleUp, now));
    replicas = Math.min(stabilized, max, limit);
  } else if (stabilized < current) {
    const limit = Math.min(current, scaleDownLimit(current, memory, behavior.scaleDown, now));
    replicas = Math.max(stabilized, min, limit);
  }
  replicas = Math.min(max, Math.max(min, replicas));

  const keep = Math.max(
    upWindow,
    downWindow,
    ...behavior.scaleUp.policies.map((p) => p.periodSeconds),
    ...behavior.scaleDown.policies.map((p) => p.periodSeconds),
  );
  const recent = <T extends { readonly at: number }>(xs: readonly T[]): T[] =>
    xs.filter((x) => x.at > now - keep);
  return {
    replicas,
    stabilized,
    memory: {
      recommendations: [...recent(memory.recommendations), { at: now, replicas: raw }],
      scaleUpEvents: [
        ...recent(memory.scaleUpEvents),
        ...(replicas > current ? [{ at: now, change: replicas - current }] : []),
      ],
      scaleDownEvents: [
        ...recent(memory.scaleDownEvents),
        ...(replicas < current ? [{ at: now, change: current - replicas }] : []),
      ],
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Reading the rendered objects.

export interface ProbeSpec {
  readonly path: string;
  /** The container port the probe's (possibly named) port resolves to. */
  readonly containerPort: number;
  readonly periodSeconds: number;
  readonly timeoutSeconds: number;
  readonly failureThreshold: number;
  readonly successThreshold: number;
}

export interface PromQuery {
  readonly aggregation: 'max' | 'min' | 'sum';
  readonly metric: string;
  readonly matchers: Readonly<Record<string, string>>;
}

export interface WorkerManifests {
  readonly deployment: {
    readonly name: string;
    readonly replicas: number;
    readonly maxSurge: IntOrPercent;
    readonly maxUnavailable: IntOrPercent;
    readonly podLabels: Readonly<Record<string, string>>;
    /** The container's args (the image's entrypoint is `node bin/order-fleet.js`). */
    readonly args: readonly string[];
    /** envFrom ConfigMaps, then literal env values. */
    readonly env: Readonly<Record<string, string>>;
    /** Env variables set from the pod's name (fieldRef metadata.name). */
    readonly podNameEnv: readonly string[];
    readonly terminationGracePeriodSeconds: number;
    readonly startupProbe: ProbeSpec | undefined;
    readonly readinessProbe: ProbeSpec;
  };
  readonly pdb: PdbSpec;
  readonly scaledObject: {
    readonly minReplicaCount: number;
    readonly maxReplicaCount: number;
    readonly pollingInterval: number;
    readonly cooldownPeriod: number;
    readonly threshold: number;
    readonly activationThreshold: number;
    readonly ignoreNullValues: boolean;
    readonly query: PromQuery;
    readonly behavior: HpaBehavior;
  };
  /** Target labels the PodMonitor's relabelings give a pod's series. */
  readonly scrapeLabels: Readonly<Record<string, string>>;
  readonly metricsPath: string;
}

type Json = Record<string, unknown>;

function obj(value: unknown, where: string): Json {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new KubeSimError('MANIFEST_SHAPE', `${where}: not an object`);
  return value as Json;
}
function arr(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) throw new KubeSimError('MANIFEST_SHAPE', `${where}: not a list`);
  return value;
}
function num(value: unknown, where: string, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number') throw new KubeSimError('MANIFEST_SHAPE', `${where}: not a number`);
  return value;
}
function str(value: unknown, where: string): string {
  if (typeof value !== 'string') throw new KubeSimError('MANIFEST_SHAPE', `${where}: not a string`);
  return value;
}
function intOrPercent(value: unknown, where: string, fallback: IntOrPercent): IntOrPercent {
  if (value === undefined) return fallback;
  if (typeof value === 'number' || typeof value === 'string') return value;
  throw new KubeSimError('MANIFEST_SHAPE', `${where}: not an IntOrString`);
}
function labelsOf(value: unknown, where: string): Record<string, string> {
  return Object.fromEntries(
    Object.entries(obj(value, where)).map(([k, v]) => [k, str(v, `${where}.${k}`)]),
  );
}
function find(objects: readonly K8sObject[], kind: string, pred: (o: K8sObject) => boolean) {
  const found = objects.filter((o) => o.kind === kind && pred(o));
  if (found.length !== 1)
    throw new KubeSimError('MANIFEST_SHAPE', `expected one ${kind}, rendered ${found.length}`);
  return found[0] as K8sObject;
}
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

function probe(value: unknown, where: string, ports: ReadonlyMap<string, number>): ProbeSpec {
  const p = obj(value, where);
  const http = obj(p['httpGet'], `${where}.httpGet`);
  const port = http['port'];
  const containerPort =
    typeof port === 'number' ? port : ports.get(str(port, `${where}.httpGet.port`));
  if (containerPort === undefined)
    throw new KubeSimError('MANIFEST_SHAPE', `${where}: port ${String(port)} is not declared`);
  return {
    path: str(http['path'], `${where}.httpGet.path`),
    containerPort,
    // Kubernetes' defaults for fields a probe leaves out.
    periodSeconds: num(p['periodSeconds'], `${where}.periodSeconds`, 10),
    timeoutSeconds: num(p['timeoutSeconds'], `${where}.timeoutSeconds`, 1),
    failureThreshold: num(p['failureThreshold'], `${where}.failureThreshold`, 3),
    successThreshold: num(p['successThreshold'], `${where}.successThreshold`, 1),
  };
}

function rules(value: unknown, where: string, fallback: ScalingRules): ScalingRules {
  if (value === undefined) return fallback;
  const r = obj(value, where);
  const select = r['selectPolicy'] ?? 'Max';
  if (select !== 'Max' && select !== 'Min' && select !== 'Disabled')
    throw new KubeSimError('MANIFEST_SHAPE', `${where}.selectPolicy: ${JSON.stringify(select)}`);
  return {
    stabilizationWindowSeconds: num(
      r['stabilizationWindowSeconds'],
      `${where}.stabilizationWindowSeconds`,
      fallback.stabilizationWindowSeconds,
    ),
    selectPolicy: select,
    policies:
      r['policies'] === undefined
        ? fallback.policies
        : arr(r['policies'], `${where}.policies`).map((raw, i) => {
            const p = obj(raw, `${where}.policies[${i}]`);
            const type = p['type'];
            if (type !== 'Pods' && type !== 'Percent')
              throw new KubeSimError('MANIFEST_SHAPE', `${where}.policies[${i}].type`);
            return {
              type,
              value: num(p['value'], `${where}.policies[${i}].value`),
              periodSeconds: num(p['periodSeconds'], `${where}.policies[${i}].periodSeconds`),
            };
          }),
  };
}

/** `max(metric{label="value",...})`: the query shapes the simulator can evaluate. */
export function parsePromQuery(query: string): PromQuery {
  const m = /^\s*(max|min|sum)\s*\(\s*([A-Za-z_:][\w:]*)\s*(?:\{([^}]*)\})?\s*\)\s*$/u.exec(query);
  if (m === null) throw new KubeSimError('UNSUPPORTED', `cannot evaluate the query ${query}`);
  const matchers: Record<string, string> = {};
  for (const part of (m[3] ?? '').split(',').filter((s) => s.trim() !== '')) {
    const eq = /^\s*(\w+)\s*=\s*"([^"]*)"\s*$/u.exec(part);
    if (eq?.[1] === undefined || eq[2] === undefined)
      throw new KubeSimError('UNSUPPORTED', `only equality matchers: ${part}`);
    matchers[eq[1]] = eq[2];
  }
  return { aggregation: m[1] as PromQuery['aggregation'], metric: m[2] ?? '', matchers };
}

/** Evaluates a {@link PromQuery} over samples; undefined when no series matches. */
export function evaluateQuery(
  query: PromQuery,
  samples: readonly {
    readonly name: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly value: number;
  }[],
): number | undefined {
  const values = samples
    .filter((s) => s.name === query.metric && selects(query.matchers, s.labels))
    .map((s) => s.value);
  if (values.length === 0) return undefined;
  if (query.aggregation === 'sum') return values.reduce((a, b) => a + b, 0);
  return query.aggregation === 'max' ? Math.max(...values) : Math.min(...values);
}

/** Prometheus' Kubernetes SD turns a pod label name into `__meta_kubernetes_pod_label_<name>`. */
const sdLabel = (name: string): string =>
  `__meta_kubernetes_pod_label_${name.replace(/[^A-Za-z0-9_]/gu, '_')}`;

/**
 * The target labels a PodMonitor endpoint's relabelings produce for a pod (action `replace`
 * only, the default; an empty result drops the label, as Prometheus does).
 */
export function relabel(
  relabelings: readonly unknown[],
  podLabels: Readonly<Record<string, string>>,
): Record<string, string> {
  const meta = Object.fromEntries(Object.entries(podLabels).map(([k, v]) => [sdLabel(k), v]));
  const out: Record<string, string> = {};
  relabelings.forEach((raw, i) => {
    const r = obj(raw, `relabelings[${i}]`);
    const action = r['action'] ?? 'replace';
    if (action !== 'replace')
      throw new KubeSimError('UNSUPPORTED', `relabeling action ${JSON.stringify(action)}`);
    const sources = arr(r['sourceLabels'], `relabelings[${i}].sourceLabels`).map((s) =>
      str(s, 'sourceLabel'),
    );
    const separator = typeof r['separator'] === 'string' ? r['separator'] : ';';
    const value = sources.map((s) => meta[s] ?? out[s] ?? '').join(separator);
    const target = str(r['targetLabel'], `relabelings[${i}].targetLabel`);
    const regex = typeof r['regex'] === 'string' ? r['regex'] : '(.*)';
    const replacement = typeof r['replacement'] === 'string' ? r['replacement'] : '$1';
    const m = new RegExp(`^(?:${regex})$`, 'u').exec(value);
    if (m === null) return;
    const result = replacement.replace(/\$(\d+)/gu, (_, d: string) => m[Number(d)] ?? '');
    if (result === '') delete out[target];
    else out[target] = result;
  });
  return out;
}

/**
 * Everything the simulator plays out, from the rendered objects: the worker Deployment (by the
 * ScaledObject's scaleTargetRef), the PodDisruptionBudget and PodMonitor that select its pods,
 * and the ConfigMaps its container reads.
 */
export function readWorkerManifests(objects: readonly K8sObject[]): WorkerManifests {
  const so = find(objects, 'ScaledObject', () => true);
  const soSpec = obj(so['spec'], 'ScaledObject.spec');
  const target = str(obj(soSpec['scaleTargetRef'], 'scaleTargetRef')['name'], 'scaleTargetRef');
  const dep = find(objects, 'Deployment', (o) => o.metadata.name === target);
  const spec = obj(dep['spec'], 'Deployment.spec');
  const strategy = obj(spec['strategy'], 'Deployment.spec.strategy');
  if (strategy['type'] !== 'RollingUpdate')
    throw new KubeSimError('UNSUPPORTED', `strategy ${String(strategy['type'])}`);
  const rolling = obj(strategy['rollingUpdate'] ?? {}, 'rollingUpdate');
  const template = obj(spec['template'], 'template');
  const podLabels = labelsOf(obj(template['metadata'], 'template.metadata')['labels'], 'labels');
  const selector = labelsOf(obj(spec['selector'], 'selector')['matchLabels'], 'matchLabels');
  if (!selects(selector, podLabels))
    throw new KubeSimError('MANIFEST_SHAPE', 'the Deployment selector misses its pods');
  const podSpec = obj(template['spec'], 'template.spec');
  const containers = arr(podSpec['containers'], 'containers');
  if (containers.length !== 1)
    throw new KubeSimError('UNSUPPORTED', `${containers.length} containers in a worker pod`);
  const c = obj(containers[0], 'containers[0]');
  const ports = new Map(
    arr(c['ports'] ?? [], 'ports').map((raw) => {
      const p = obj(raw, 'port');
      return [str(p['name'], 'port.name'), num(p['containerPort'], 'containerPort')] as const;
    }),
  );
  const env: Record<string, string> = {};
  for (const raw of arr(c['envFrom'] ?? [], 'envFrom')) {
    const ref = obj(raw, 'envFrom[]')['configMapRef'];
    if (ref === undefined) continue; // Secrets are optional and absent here (an open NATS).
    const name = str(obj(ref, 'configMapRef')['name'], 'configMapRef.name');
    const cm = find(objects, 'ConfigMap', (o) => o.metadata.name === name);
    Object.assign(env, labelsOf(cm['data'] ?? {}, `ConfigMap ${name}`));
  }
  const podNameEnv: string[] = [];
  for (const raw of arr(c['env'] ?? [], 'env')) {
    const e = obj(raw, 'env[]');
    const name = str(e['name'], 'env.name');
    if (typeof e['value'] === 'string') env[name] = e['value'];
    else if (
      obj(obj(e['valueFrom'], `${name}.valueFrom`)['fieldRef'], `${name}.fieldRef`)['fieldPath'] ===
      'metadata.name'
    )
      podNameEnv.push(name);
    else throw new KubeSimError('UNSUPPORTED', `env ${name} from anything but the pod name`);
  }

  const pdbObj = find(objects, 'PodDisruptionBudget', (o) =>
    selects(
      labelsOf(
        obj(obj(o['spec'], 'pdb.spec')['selector'], 'pdb.selector')['matchLabels'],
        'pdb.matchLabels',
      ),
      podLabels,
    ),
  );
  const pdbSpec = obj(pdbObj['spec'], 'pdb.spec');
  const pdb: PdbSpec = {
    ...(pdbSpec['minAvailable'] === undefined
      ? {}
      : { minAvailable: intOrPercent(pdbSpec['minAvailable'], 'minAvailable', 0) }),
    ...(pdbSpec['maxUnavailable'] === undefined
      ? {}
      : { maxUnavailable: intOrPercent(pdbSpec['maxUnavailable'], 'maxUnavailable', 0) }),
  };

  const triggers = arr(soSpec['triggers'], 'triggers');
  if (triggers.length !== 1)
    throw new KubeSimError('UNSUPPORTED', `${triggers.length} triggers (the HPA takes the max)`);
  const trigger = obj(triggers[0], 'triggers[0]');
  if (trigger['type'] !== 'prometheus')
    throw new KubeSimError('UNSUPPORTED', `trigger ${String(trigger['type'])}`);
  const meta = obj(trigger['metadata'], 'trigger.metadata');
  const hpaBehavior = obj(
    obj(obj(soSpec['advanced'] ?? {}, 'advanced')['horizontalPodAutoscalerConfig'] ?? {}, 'hpa')[
      'behavior'
    ] ?? {},
    'behavior',
  );

  const pm = find(objects, 'PodMonitor', (o) =>
    selects(
      labelsOf(obj(obj(o['spec'], 'pm.spec')['selector'], 'pm.selector')['matchLabels'], 'pm'),
      podLabels,
    ),
  );
  const endpoints = arr(obj(pm['spec'], 'pm.spec')['podMetricsEndpoints'], 'podMetricsEndpoints');
  const endpoint = obj(endpoints[0], 'podMetricsEndpoints[0]');
  if (ports.get(str(endpoint['port'], 'endpoint.port')) === undefined)
    throw new KubeSimError('MANIFEST_SHAPE', 'the PodMonitor scrapes an undeclared port');

  return {
    deployment: {
      name: dep.metadata.name,
      replicas: num(spec['replicas'], 'replicas', 1),
      maxSurge: intOrPercent(rolling['maxSurge'], 'maxSurge', '25%'),
      maxUnavailable: intOrPercent(rolling['maxUnavailable'], 'maxUnavailable', '25%'),
      podLabels,
      args: arr(c['args'] ?? [], 'args').map((a) => str(a, 'arg')),
      env,
      podNameEnv,
      terminationGracePeriodSeconds: num(podSpec['terminationGracePeriodSeconds'], 'grace', 30),
      startupProbe:
        c['startupProbe'] === undefined ? undefined : probe(c['startupProbe'], 'startup', ports),
      readinessProbe: probe(c['readinessProbe'], 'readinessProbe', ports),
    },
    pdb,
    scaledObject: {
      // KEDA's defaults for fields a ScaledObject leaves out.
      minReplicaCount: num(soSpec['minReplicaCount'], 'minReplicaCount', 0),
      maxReplicaCount: num(soSpec['maxReplicaCount'], 'maxReplicaCount', 100),
      pollingInterval: num(soSpec['pollingInterval'], 'pollingInterval', 30),
      cooldownPeriod: num(soSpec['cooldownPeriod'], 'cooldownPeriod', 300),
      threshold: Number(str(meta['threshold'], 'threshold')),
      activationThreshold: Number(meta['activationThreshold'] ?? '0'),
      ignoreNullValues: (meta['ignoreNullValues'] ?? 'true') === 'true',
      query: parsePromQuery(str(meta['query'], 'query')),
      behavior: {
        scaleUp: rules(hpaBehavior['scaleUp'], 'scaleUp', DEFAULT_BEHAVIOR.scaleUp),
        scaleDown: rules(hpaBehavior['scaleDown'], 'scaleDown', DEFAULT_BEHAVIOR.scaleDown),
      },
    },
    scrapeLabels: relabel(arr(endpoint['relabelings'] ?? [], 'relabelings'), podLabels),
    metricsPath: typeof endpoint['path'] === 'string' ? endpoint['path'] : '/metrics',
  };
}

/** Prometheus text format → samples (comments skipped; labels unescaped minimally). */
export function parseMetrics(
  text: string,
): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/u.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/gu))
      if (l[1] !== undefined) labels[l[1]] = l[2] ?? '';
    out.push({ name: m[1] ?? '', labels, value: Number(m[3]) });
  }
  return out;
}
