// The kube simulator's decisions (test/support/kube-sim.ts), alone: the Deployment controller's
// rolling step, the PodDisruptionBudget, the HPA formula and its behaviors, and reading the
// rendered manifests. The expected values are worked out from the Kubernetes rules by hand.

import { describe, expect, it } from 'vitest';
import {
  DEFAULT_BEHAVIOR,
  evaluateQuery,
  evictionAllowed,
  hpaDecide,
  hpaRawDesired,
  initialHpaMemory,
  parseMetrics,
  parsePromQuery,
  pdbStatus,
  readWorkerManifests,
  relabel,
  resolveFenceposts,
  rollingStep,
  scaleDownLimit,
  scaleUpLimit,
  scaledValue,
  type HpaBehavior,
  type HpaMemory,
} from '../support/kube-sim.js';
import { kustomizeCommand, renderKustomization } from '../support/manifests.js';

describe('fenceposts', () => {
  it('rounds surge up and unavailable down, and never both 0', () => {
    expect(scaledValue('25%', 3, true)).toBe(1);
    expect(scaledValue('25%', 3, false)).toBe(0);
    expect(resolveFenceposts(1, 0, 3)).toEqual({ maxSurge: 1, maxUnavailable: 0 });
    expect(resolveFenceposts('25%', '25%', 3)).toEqual({ maxSurge: 1, maxUnavailable: 0 });
    expect(resolveFenceposts(0, 0, 3)).toEqual({ maxSurge: 0, maxUnavailable: 1 });
    expect(() => scaledValue('a lot', 3, true)).toThrow(/IntOrString/u);
  });
});

describe('rollingStep (maxSurge 1, maxUnavailable 0, 3 replicas)', () => {
  const base = { desired: 3, maxSurge: 1, maxUnavailable: 0 };
  it('surges one new pod and deletes nothing while it is not ready', () => {
    expect(
      rollingStep({ ...base, old: { total: 3, ready: 3 }, current: { total: 0, ready: 0 } }),
    ).toEqual({ createCurrent: 1, deleteOldUnready: 0, deleteOldReady: 0, deleteCurrent: 0 });
    expect(
      rollingStep({ ...base, old: { total: 3, ready: 3 }, current: { total: 1, ready: 0 } }),
    ).toEqual({ createCurrent: 0, deleteOldUnready: 0, deleteOldReady: 0, deleteCurrent: 0 });
  });
  it('deletes one old pod once the new one is ready, then surges the next', () => {
    expect(
      rollingStep({ ...base, old: { total: 3, ready: 3 }, current: { total: 1, ready: 1 } }),
    ).toEqual({ createCurrent: 0, deleteOldUnready: 0, deleteOldReady: 1, deleteCurrent: 0 });
    expect(
      rollingStep({ ...base, old: { total: 2, ready: 2 }, current: { total: 1, ready: 1 } }),
    ).toEqual({ createCurrent: 1, deleteOldUnready: 0, deleteOldReady: 0, deleteCurrent: 0 });
  });
  it('removes an unready old pod first, within what availability allows', () => {
    expect(
      rollingStep({ ...base, old: { total: 3, ready: 2 }, current: { total: 1, ready: 1 } }),
    ).toEqual({ createCurrent: 0, deleteOldUnready: 1, deleteOldReady: 0, deleteCurrent: 0 });
  });
  it('with maxUnavailable 1 deletes before the new pod is ready', () => {
    expect(
      rollingStep({
        desired: 3,
        maxSurge: 0,
        maxUnavailable: 1,
        old: { total: 3, ready: 3 },
        current: { total: 0, ready: 0 },
      }),
    ).toEqual({ createCurrent: 0, deleteOldUnready: 0, deleteOldReady: 1, deleteCurrent: 0 });
  });
  it('without a rollout, holds the replica count both ways', () => {
    expect(
      rollingStep({ ...base, old: { total: 0, ready: 0 }, current: { total: 2, ready: 2 } }),
    ).toEqual({ createCurrent: 1, deleteOldUnready: 0, deleteOldReady: 0, deleteCurrent: 0 });
    expect(
      rollingStep({
        ...base,
        desired: 2,
        old: { total: 0, ready: 0 },
        current: { total: 4, ready: 4 },
      }),
    ).toEqual({ createCurrent: 0, deleteOldUnready: 0, deleteOldReady: 0, deleteCurrent: 2 });
  });
});

describe('PodDisruptionBudget', () => {
  it('maxUnavailable 1 of 3: one disruption while all are healthy, none after it', () => {
    const pdb = { maxUnavailable: 1 };
    const full = pdbStatus(pdb, { expected: 3, pods: 3, healthy: 3 });
    expect(full).toEqual({ desiredHealthy: 2, disruptionsAllowed: 1 });
    expect(evictionAllowed(full, { healthy: 3, podHealthy: true })).toBe(true);
    const one = pdbStatus(pdb, { expected: 3, pods: 3, healthy: 2 });
    expect(one).toEqual({ desiredHealthy: 2, disruptionsAllowed: 0 });
    expect(evictionAllowed(one, { healthy: 2, podHealthy: true })).toBe(false);
    // An unhealthy pod may go while the budget holds anyway (IfHealthyBudget).
    expect(evictionAllowed(one, { healthy: 2, podHealthy: false })).toBe(true);
    const below = pdbStatus(pdb, { expected: 3, pods: 3, healthy: 1 });
    expect(evictionAllowed(below, { healthy: 1, podHealthy: false })).toBe(false);
  });
  it('minAvailable as a count or a percentage (rounded up)', () => {
    expect(pdbStatus({ minAvailable: 2 }, { expected: 5, pods: 5, healthy: 4 })).toEqual({
      desiredHealthy: 2,
      disruptionsAllowed: 2,
    });
    expect(pdbStatus({ minAvailable: '50%' }, { expected: 3, pods: 3, healthy: 3 })).toEqual({
      desiredHealthy: 2,
      disruptionsAllowed: 1,
    });
    expect(() => pdbStatus({}, { expected: 3, pods: 3, healthy: 3 })).toThrow(/neither/u);
  });
});

describe('HPA', () => {
  it('asks for ceil(metric / threshold), unless within the tolerance of the target', () => {
    expect(hpaRawDesired({ metric: 11_001, threshold: 5000, currentReplicas: 2 })).toBe(3);
    expect(hpaRawDesired({ metric: 20_001, threshold: 5000, currentReplicas: 3 })).toBe(5);
    expect(hpaRawDesired({ metric: 0, threshold: 5000, currentReplicas: 3 })).toBe(0);
    // 10,400 over 2 replicas is 4 % above the target: no change.
    expect(hpaRawDesired({ metric: 10_400, threshold: 5000, currentReplicas: 2 })).toBe(2);
    expect(hpaRawDesired({ metric: 10_400, threshold: 5000, currentReplicas: 1 })).toBe(3);
  });

  const behavior: HpaBehavior = {
    scaleUp: {
      stabilizationWindowSeconds: 0,
      selectPolicy: 'Max',
      policies: [{ type: 'Pods', value: 4, periodSeconds: 30 }],
    },
    scaleDown: {
      stabilizationWindowSeconds: 300,
      selectPolicy: 'Max',
      policies: [{ type: 'Pods', value: 1, periodSeconds: 60 }],
    },
  };
  const decide = (memory: HpaMemory, now: number, current: number, raw: number) =>
    hpaDecide({ now, current, raw, min: 2, max: 32, behavior, memory });

  it('scales up at once, at most 4 pods per 30 s, clamped to max', () => {
    const a = decide(initialHpaMemory(3, 0), 15, 3, 10);
    expect(a.replicas).toBe(7);
    // 15 s later the 30 s period still holds the +4: no more.
    const b = decide(a.memory, 30, 7, 10);
    expect(b.replicas).toBe(7);
    const c = decide(b.memory, 46, 7, 10);
    expect(c.replicas).toBe(10);
    expect(
      hpaDecide({
        now: 0,
        current: 30,
        raw: 40,
        min: 2,
        max: 32,
        behavior,
        memory: initialHpaMemory(30, 0),
      }).replicas,
    ).toBe(32);
  });

  it('a new HPA holds its current replicas for the scale-down window', () => {
    let memory = initialHpaMemory(3, 0);
    let replicas = 3;
    const seen: [number, number][] = [];
    for (let now = 15; now <= 420; now += 15) {
      const d = decide(memory, now, replicas, 1);
      memory = d.memory;
      if (d.replicas !== replicas) seen.push([now, d.replicas]);
      replicas = d.replicas;
    }
    // Not before the window (300 s) passed; then one pod per 60 s, down to min 2.
    expect(seen).toEqual([[300, 2]]);
  });

  it('scales in one pod per 60 s after the highest recommendation left the window', () => {
    let memory: HpaMemory = initialHpaMemory(5, 0);
    let replicas = 5;
    const seen: [number, number][] = [];
    for (let now = 15; now <= 600; now += 15) {
      // A burst asks for 5 until t = 60, then the lag is gone.
      const d = decide(memory, now, replicas, now <= 60 ? 5 : 1);
      memory = d.memory;
      if (d.replicas !== replicas) seen.push([now, d.replicas]);
      replicas = d.replicas;
    }
    // The last 5 was recommended at t = 60: it leaves the 300 s window at t = 360.
    expect(seen).toEqual([
      [360, 4],
      [420, 3],
      [480, 2],
    ]);
  });

  it('rate limits count changes within each policy period, per selectPolicy', () => {
    const memory: HpaMemory = {
      recommendations: [],
      scaleUpEvents: [{ at: 10, change: 2 }],
      scaleDownEvents: [],
    };
    const rules = DEFAULT_BEHAVIOR.scaleUp; // Max of (4 pods, 100 %) per 15 s
    // 5 now, 3 at the period's start: max(3 + 4, 3 * 2) = 7.
    expect(scaleUpLimit(5, memory, rules, 20)).toBe(7);
    expect(scaleUpLimit(5, memory, { ...rules, selectPolicy: 'Min' }, 20)).toBe(6);
    expect(scaleUpLimit(5, memory, { ...rules, selectPolicy: 'Disabled' }, 20)).toBe(5);
    // Default scale-down: 100 % per 15 s, so down to 0 (then clamped to min by hpaDecide).
    expect(scaleDownLimit(5, memory, DEFAULT_BEHAVIOR.scaleDown, 20)).toBe(0);
  });
});

describe('queries and scrapes', () => {
  it('evaluates max(metric{label="v"}) over labelled samples', () => {
    const q = parsePromQuery('max(order_fleet_fleet_lag{fleet="order-fleet"})');
    expect(q).toEqual({
      aggregation: 'max',
      metric: 'order_fleet_fleet_lag',
      matchers: { fleet: 'order-fleet' },
    });
    const samples = parseMetrics(
      [
        '# HELP order_fleet_fleet_lag entries',
        'order_fleet_fleet_lag{scope="fleet",worker="w1"} 12',
        'order_fleet_fleet_lag{scope="fleet",worker="w2"} 30',
        'order_fleet_applied_total{worker="w1"} 5',
      ].join('\n'),
    );
    expect(evaluateQuery(q, samples)).toBeUndefined();
    const labelled = samples.map((s) => ({ ...s, labels: { ...s.labels, fleet: 'order-fleet' } }));
    expect(evaluateQuery(q, labelled)).toBe(30);
    expect(() => parsePromQuery('rate(x[5m])')).toThrow(/cannot evaluate/u);
  });
  it('relabels pod labels as Prometheus does, dropping empty results', () => {
    const rules = [
      {
        sourceLabels: ['__meta_kubernetes_pod_label_app_kubernetes_io_part_of'],
        targetLabel: 'fleet',
      },
    ];
    expect(relabel(rules, { 'app.kubernetes.io/part-of': 'order-fleet' })).toEqual({
      fleet: 'order-fleet',
    });
    expect(relabel(rules, {})).toEqual({});
  });
});

const describeK8s = 'missing' in kustomizeCommand() ? describe.skip : describe;
describeK8s('readWorkerManifests (k8s/overlays/example)', () => {
  it('reads the rules the simulator plays out from the rendered objects', () => {
    const m = readWorkerManifests(renderKustomization('k8s/overlays/example'));
    expect(m.deployment.name).toBe('order-fleet-worker');
    expect(m.deployment.args).toEqual(['worker']);
    expect(m.deployment.podNameEnv).toEqual(['WORKER_ID']);
    expect(m.deployment.readinessProbe.path).toBe('/readyz');
    expect(m.deployment.readinessProbe.containerPort).toBe(Number(m.deployment.env['ADMIN_PORT']));
    expect(m.deployment.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      Number(m.deployment.env['SHUTDOWN_GRACE_MS']),
    );
    expect(m.pdb).toEqual({ maxUnavailable: 1 });
    expect(m.scaledObject.query.metric).toBe('order_fleet_fleet_lag');
    // The PodMonitor's relabeling gives the pods' series the label the query selects on.
    expect(
      evaluateQuery(m.scaledObject.query, [
        { name: m.scaledObject.query.metric, labels: m.scrapeLabels, value: 1 },
      ]),
    ).toBe(1);
    expect(m.scaledObject.minReplicaCount).toBeGreaterThan(0);
  });
});
