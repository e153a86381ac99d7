// The Kubernetes manifests, rendered by the real kustomize: every object is valid for its schema
// with no unknown keys, and the rules the fleet depends on hold (grace period vs
// SHUTDOWN_GRACE_MS, probes, security context, selectors, KEDA maximum ≤ partitions).

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ROLES, type Role } from '../../src/auth/roles.js';
import { REPO_ROOT } from '../support/fleet.js';
import {
  findObject,
  kustomizeCommand,
  renderKustomization,
  validateStrictly,
  type K8sObject,
} from '../support/manifests.js';

const kustomize = kustomizeCommand();
if ('missing' in kustomize) {
  // Said loudly rather than passing silently: these checks need kubectl or kustomize.
  console.warn(`SKIPPING manifest tests: no kustomize renderer here (${kustomize.missing})`);
}
const describeK8s = 'missing' in kustomize ? describe.skip : describe;

interface Container {
  name: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string; optional?: boolean } }[];
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[] };
  };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface PodSpec {
  terminationGracePeriodSeconds?: number;
  volumes?: { name: string; secret?: { secretName: string; optional?: boolean } }[];
  automountServiceAccountToken?: boolean;
  serviceAccountName?: string;
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    seccompProfile?: { type: string };
  };
  topologySpreadConstraints?: { labelSelector: { matchLabels: Record<string, string> } }[];
  containers: Container[];
}
interface Workload {
  spec: {
    selector: { matchLabels: Record<string, string> };
    strategy?: { type: string; rollingUpdate?: { maxSurge: number; maxUnavailable: number } };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}

const spec = <T>(o: K8sObject): T => o as unknown as T;
const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

describeK8s('k8s manifests', () => {
  const overlays = ['k8s/base', 'k8s/overlays/example', 'k8s/nats'];
  const rendered = new Map(overlays.map((dir) => [dir, renderKustomization(dir)]));
  const example = rendered.get('k8s/overlays/example') ?? [];
  const config = spec<{ data: Record<string, string> }>(
    findObject(example, 'ConfigMap', 'order-fleet-config'),
  ).data;
  const worker = spec<Workload>(findObject(example, 'Deployment', 'order-fleet-worker'));
  const podSpecs = example.flatMap((o) =>
    o.kind === 'Deployment' || o.kind === 'Job'
      ? [{ name: `${o.kind}/${o.metadata.name}`, pod: spec<Workload>(o).spec.template.spec }]
      : [],
  );

  it.each(overlays)('%s: every object is valid for its schema, with no unknown keys', (dir) => {
    const objects = rendered.get(dir) ?? [];
    expect(objects.length).toBeGreaterThan(0);
    expect(objects.flatMap(validateStrictly)).toEqual([]);
  });

  it('the strict validation catches unknown keys and schema errors', () => {
    const broken = structuredClone(findObject(example, 'Deployment', 'order-fleet-worker'));
    const pod = spec<Workload>(broken).spec.template.spec;
    const c = pod.containers[0] as unknown as Record<string, unknown>;
    c['readinessprobe'] = c['readinessProbe'];
    (pod as unknown as Record<string, unknown>)['terminationGracePeriodSeconds'] = 'soon';
    const problems = validateStrictly(broken);
    expect(problems).toContainEqual(
      'Deployment/order-fleet-worker: unknown key /spec/template/spec/containers/0/readinessprobe',
    );
    expect(
      problems.some((p) => p.includes('/spec/template/spec/terminationGracePeriodSeconds: type')),
    ).toBe(true);
  });

  it('the worker grace period covers SHUTDOWN_GRACE_MS with a 10 s margin', () => {
    const graceMs = Number(config['SHUTDOWN_GRACE_MS']);
    expect(graceMs).toBeGreaterThan(0);
    const podGraceS = worker.spec.template.spec.terminationGracePeriodSeconds ?? 30;
    expect(podGraceS * 1000).toBeGreaterThanOrEqual(graceMs + 10_000);
  });

  it('worker probes: liveness /healthz, readiness /readyz, startup, on the admin port', () => {
    const c = worker.spec.template.spec.containers[0];
    const adminPort = Number(config['ADMIN_PORT']);
    expect(c?.ports).toContainEqual({ name: 'admin', containerPort: adminPort, protocol: 'TCP' });
    expect(c?.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(c?.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(c?.startupProbe?.httpGet?.path).toBe('/healthz');
    expect(c?.resources?.requests?.['memory']).toBeDefined();
    expect(c?.resources?.limits?.['memory']).toBeDefined();
  });

  it('the worker takes WORKER_ID from its pod name and rolls with maxUnavailable 0', () => {
    const env = worker.spec.template.spec.containers[0]?.env ?? [];
    expect(env.find((e) => e.name === 'WORKER_ID')?.valueFrom?.fieldRef?.fieldPath).toBe(
      'metadata.name',
    );
    expect(worker.spec.strategy).toMatchObject({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 0 },
    });
    expect(worker.spec.strategy?.rollingUpdate?.maxSurge).toBeGreaterThan(0);
    for (const t of worker.spec.template.spec.topologySpreadConstraints ?? [])
      expect(matches(t.labelSelector.matchLabels, worker.spec.template.metadata.labels)).toBe(true);
    expect(worker.spec.template.spec.topologySpreadConstraints?.length).toBeGreaterThan(0);
  });

  it('every pod runs restricted: non-root, no escalation, no capabilities, RuntimeDefault, read-only root', () => {
    expect(podSpecs.length).toBe(3);
    for (const { name, pod } of podSpecs) {
      expect(pod.securityContext, name).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod.securityContext?.runAsUser, name).toBeGreaterThan(0);
      expect(pod.automountServiceAccountToken, name).toBe(false);
      expect(pod.serviceAccountName, name).toBe('order-fleet');
      for (const c of pod.containers) {
        expect(c.securityContext, `${name} ${c.name}`).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        // Settings from the ConfigMap; credentials only from optional Secret references.
        expect(c.envFrom?.[0]?.configMapRef?.name).toBe('order-fleet-config');
        expect(c.envFrom?.[1]?.secretRef?.optional).toBe(true);
        expect(JSON.stringify(c.env ?? [])).not.toMatch(/PASSWORD|TOKEN|CREDS/u);
      }
    }
    expect(JSON.stringify(config)).not.toMatch(/PASSWORD|TOKEN|CREDS/u);
  });

  it('each pod connects as its own least-privilege role, with only the Secrets of that role', () => {
    // The command a pod runs → the role (src/auth/roles.ts) `order-fleet auth init` made for it.
    const roleOf: Readonly<Record<string, Role>> = {
      setup: 'admin',
      worker: 'worker',
      notifier: 'notifier',
    };
    const seen = new Set<Role>();
    for (const { name, pod } of podSpecs) {
      const c = pod.containers[0];
      const role = roleOf[c?.args?.[0] ?? ''];
      if (c === undefined || role === undefined)
        throw new Error(`${name}: no role for its command`);
      expect(ROLES).toContain(role);
      seen.add(role);
      // Env (NKey seed, inbox prefix, TLS paths) from the role's Secret, nothing from another's.
      const secretRefs = (c.envFrom ?? []).flatMap((e) => (e.secretRef ? [e.secretRef] : []));
      expect(secretRefs, name).toEqual([{ name: `order-fleet-nats-${role}`, optional: true }]);
      // Its files (ca.pem, <role>-cert.pem, <role>-key.pem) where `auth init --client-dir
      // /etc/order-fleet/nats` points the env at, and no other Secret volume.
      const secretVolumes = (pod.volumes ?? []).filter((v) => v.secret !== undefined);
      expect(secretVolumes, name).toEqual([
        {
          name: 'nats-credentials',
          secret: { secretName: `order-fleet-nats-${role}-creds`, optional: true },
        },
      ]);
      expect(c.volumeMounts, name).toContainEqual({
        name: 'nats-credentials',
        mountPath: '/etc/order-fleet/nats',
        readOnly: true,
      });
    }
    expect([...seen].sort()).toEqual(['admin', 'notifier', 'worker']);
  });

  it('selectors match their labels (Deployments, PDB, PodMonitor, NetworkPolicies, ScaledObject target)', () => {
    for (const o of example.filter((x) => x.kind === 'Deployment')) {
      const w = spec<Workload>(o);
      expect(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels)).toBe(true);
    }
    const workerLabels = worker.spec.template.metadata.labels;
    const pdb = spec<{
      spec: { selector: { matchLabels: Record<string, string> }; maxUnavailable: number };
    }>(findObject(example, 'PodDisruptionBudget', 'order-fleet-worker'));
    expect(matches(pdb.spec.selector.matchLabels, workerLabels)).toBe(true);
    expect(pdb.spec.maxUnavailable).toBe(1);
    const pm = spec<{
      spec: {
        selector: { matchLabels: Record<string, string> };
        podMetricsEndpoints: { port: string }[];
      };
    }>(findObject(example, 'PodMonitor', 'order-fleet-worker'));
    expect(matches(pm.spec.selector.matchLabels, workerLabels)).toBe(true);
    expect(pm.spec.podMetricsEndpoints[0]?.port).toBe('admin');
    for (const np of example.filter((x) => x.kind === 'NetworkPolicy')) {
      const sel = spec<{ spec: { podSelector: { matchLabels: Record<string, string> } } }>(np).spec
        .podSelector.matchLabels;
      const selectsSome =
        podSpecs.length > 0 &&
        example
          .filter((x) => x.kind === 'Deployment' || x.kind === 'Job')
          .some((x) => matches(sel, spec<Workload>(x).spec.template.metadata.labels));
      expect(selectsSome, np.metadata.name).toBe(true);
    }
    const so = spec<{ spec: { scaleTargetRef: { name: string } } }>(
      findObject(example, 'ScaledObject', 'order-fleet-worker'),
    );
    expect(so.spec.scaleTargetRef.name).toBe('order-fleet-worker');
  });

  it('KEDA scales on the fleet-wide lag, at most one worker per partition, scale-in slowed', () => {
    const so = spec<{
      spec: {
        minReplicaCount: number;
        maxReplicaCount: number;
        advanced: {
          horizontalPodAutoscalerConfig: {
            behavior: {
              scaleDown: {
                stabilizationWindowSeconds: number;
                policies: { type: string; value: number }[];
              };
            };
          };
        };
        triggers: { type: string; metadata: Record<string, string> }[];
      };
    }>(findObject(example, 'ScaledObject', 'order-fleet-worker'));
    const partitions = Number(config['PARTITIONS']);
    expect(so.spec.maxReplicaCount).toBeLessThanOrEqual(partitions);
    expect(so.spec.minReplicaCount).toBeGreaterThanOrEqual(1);
    const down = so.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown;
    expect(down.stabilizationWindowSeconds).toBeGreaterThanOrEqual(60);
    expect(down.policies).toContainEqual(expect.objectContaining({ type: 'Pods', value: 1 }));
    expect(so.spec.triggers).toHaveLength(1);
    expect(so.spec.triggers[0]?.type).toBe('prometheus');
    expect(so.spec.triggers[0]?.metadata['query']).toMatch(/^max\(order_fleet_fleet_lag\{/u);
    expect(Number(so.spec.triggers[0]?.metadata['threshold'])).toBeGreaterThan(0);
  });

  it('the PrometheusRule holds exactly the promtool-tested alert rules', () => {
    const rule = spec<{ spec: unknown }>(findObject(example, 'PrometheusRule', 'order-fleet'));
    const file: unknown = parse(
      readFileSync(path.join(REPO_ROOT, 'deploy/prometheus/order-fleet.rules.yml'), 'utf8'),
    );
    expect(rule.spec).toEqual(file);
    const alerts = (file as { groups: { rules: { alert: string }[] }[] }).groups.flatMap((g) =>
      g.rules.map((r) => r.alert),
    );
    expect(alerts).toEqual(
      expect.arrayContaining([
        'OrderFleetPartitionUnowned',
        'OrderFleetLagGrowing',
        'OrderFleetPartitionsParked',
        'OrderFleetDeadLettersRising',
        'OrderFleetWebhookFailing',
      ]),
    );
  });

  it('NATS: 3-node JetStream cluster with fsync always, monitoring, 2.10+', () => {
    const values = parse(readFileSync(path.join(REPO_ROOT, 'k8s/nats/values.yaml'), 'utf8')) as {
      config: {
        cluster: { enabled: boolean; replicas: number };
        jetstream: { enabled: boolean; merge: Record<string, string> };
        monitor: { enabled: boolean; port: number };
      };
      container: { image: { tag: string } };
    };
    expect(values.config.cluster).toMatchObject({ enabled: true, replicas: 3 });
    expect(values.config.jetstream.enabled).toBe(true);
    expect(values.config.jetstream.merge['sync_interval']).toBe('always');
    expect(values.config.monitor).toMatchObject({ enabled: true, port: 8222 });
    const [major, minor, patch] = values.container.image.tag.split(/[.-]/u).map(Number);
    expect((major ?? 0) * 10_000 + (minor ?? 0) * 100 + (patch ?? 0)).toBeGreaterThanOrEqual(
      21_023,
    );
    expect(config['ORDERS_REPLICAS']).toBe('3');
  });
});

describe('alert rules', () => {
  const promtool = (() => {
    try {
      execFileSync('promtool', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      // Reported below: the rules test needs Debian's prometheus package.
      return false;
    }
  })();
  if (!promtool)
    console.warn('SKIPPING promtool rule tests: promtool not found (apt-get install prometheus)');
  it.skipIf(!promtool)('pass their promtool unit tests', () => {
    const out = execFileSync('promtool', ['test', 'rules', 'order-fleet.rules.test.yml'], {
      cwd: path.join(REPO_ROOT, 'deploy/prometheus'),
      encoding: 'utf8',
    });
    expect(out).toMatch(/SUCCESS/u);
  });
});
