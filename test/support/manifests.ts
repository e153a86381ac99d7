// Renders the k8s/ kustomizations with the real kustomize (`kubectl kustomize`, else `kustomize
// build`) and validates every object against its Kubernetes (or CRD) schema, strictly: the
// kubernetes-models validators accept unknown keys, so the validation also records which keys
// the validator looked at and reports every key it never read (a typo such as `readinessprobe`
// or a field at the wrong level would otherwise pass silently).

import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from './fleet.js';

export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string } & Record<
    string,
    unknown
  >;
  readonly [key: string]: unknown;
}

/** The kustomize command available here, or undefined (with the reason) when there is none. */
export function kustomizeCommand(): { readonly cmd: string[] } | { readonly missing: string } {
  const candidates: string[][] = [
    ['kubectl', 'kustomize'],
    ['kustomize', 'build'],
  ];
  const problems: string[] = [];
  for (const cmd of candidates) {
    try {
      execFileSync(cmd[0] ?? '', [...cmd.slice(1), '--help'], { stdio: 'ignore' });
      return { cmd };
    } catch (err) {
      problems.push(`${cmd.join(' ')}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { missing: problems.join('; ') };
}

/** `kubectl kustomize <dir>` (relative to the repo), parsed. */
export function renderKustomization(dir: string): K8sObject[] {
  const found = kustomizeCommand();
  if ('missing' in found) throw new Error(`no kustomize renderer: ${found.missing}`);
  const [bin, ...args] = found.cmd;
  const text = execFileSync(bin ?? '', [...args, path.join(REPO_ROOT, dir)], {
    encoding: 'utf8',
  });
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length > 0) throw new Error(`bad YAML from kustomize: ${d.errors.join('; ')}`);
    return d.toJS() as K8sObject;
  });
}

type SchemaValidate = ((data: unknown) => boolean) & {
  errors?:
    | readonly { instancePath: string; keyword?: string; message?: string; params?: unknown }[]
    | null;
};

const require = createRequire(import.meta.url);
const SCHEMAS: Readonly<Record<string, string>> = {
  'v1/Namespace': 'kubernetes-models/_schemas/IoK8sApiCoreV1Namespace.js',
  'v1/ServiceAccount': 'kubernetes-models/_schemas/IoK8sApiCoreV1ServiceAccount.js',
  'v1/ConfigMap': 'kubernetes-models/_schemas/IoK8sApiCoreV1ConfigMap.js',
  'v1/Secret': 'kubernetes-models/_schemas/IoK8sApiCoreV1Secret.js',
  'v1/Service': 'kubernetes-models/_schemas/IoK8sApiCoreV1Service.js',
  'apps/v1/Deployment': 'kubernetes-models/_schemas/IoK8sApiAppsV1Deployment.js',
  'batch/v1/Job': 'kubernetes-models/_schemas/IoK8sApiBatchV1Job.js',
  'policy/v1/PodDisruptionBudget':
    'kubernetes-models/_schemas/IoK8sApiPolicyV1PodDisruptionBudget.js',
  'networking.k8s.io/v1/NetworkPolicy':
    'kubernetes-models/_schemas/IoK8sApiNetworkingV1NetworkPolicy.js',
  'keda.sh/v1alpha1/ScaledObject': '@kubernetes-models/keda/_schemas/KedaShV1alpha1ScaledObject.js',
  'monitoring.coreos.com/v1/PodMonitor':
    '@kubernetes-models/prometheus-operator/_schemas/MonitoringCoreosComV1PodMonitor.js',
  'monitoring.coreos.com/v1/PrometheusRule':
    '@kubernetes-models/prometheus-operator/_schemas/MonitoringCoreosComV1PrometheusRule.js',
};

function schemaFor(obj: K8sObject): SchemaValidate {
  const module = SCHEMAS[`${obj.apiVersion}/${obj.kind}`];
  if (module === undefined) throw new Error(`no schema known for ${obj.apiVersion} ${obj.kind}`);
  // Resolved as a file path: the packages' export maps do not list their schema modules.
  const file = path.join(REPO_ROOT, 'node_modules', module);
  return (require(file) as { validate: SchemaValidate }).validate;
}

/**
 * Problems with one object: schema errors, then unknown keys (JSON pointers). A key is known when
 * the validator read it; a map-like object (labels, ConfigMap data, free-form CRD fields) is read
 * by enumerating its keys, which marks all of them known.
 */
export function validateStrictly(obj: K8sObject): string[] {
  const validate = schemaFor(obj);
  const read = new Map<object, Set<PropertyKey> | 'all'>();
  const proxies = new WeakMap<object, object>();
  const wrap = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object') return value;
    const existing = proxies.get(value);
    if (existing !== undefined) return existing;
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        const seen = read.get(target) ?? new Set<PropertyKey>();
        if (seen !== 'all') seen.add(key);
        read.set(target, seen);
        return wrap(Reflect.get(target, key, receiver));
      },
      ownKeys(target) {
        read.set(target, 'all');
        return Reflect.ownKeys(target);
      },
      has(target, key) {
        const seen = read.get(target) ?? new Set<PropertyKey>();
        if (seen !== 'all') seen.add(key);
        read.set(target, seen);
        return Reflect.has(target, key);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  const problems: string[] = [];
  const where = `${obj.kind}/${obj.metadata.name}`;
  if (!validate(wrap(obj))) {
    for (const e of validate.errors ?? [])
      problems.push(
        `${where}${e.instancePath}: ${e.message ?? e.keyword ?? 'invalid'} ${JSON.stringify(e.params)}`,
      );
  }
  const walk = (value: unknown, pointer: string): void => {
    if (value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      value.forEach((item, i) => walk(item, `${pointer}/${i}`));
      return;
    }
    const seen = read.get(value);
    for (const [key, inner] of Object.entries(value)) {
      if (seen !== 'all' && !(seen?.has(key) ?? false))
        problems.push(`${where}: unknown key ${pointer}/${key}`);
      walk(inner, `${pointer}/${key}`);
    }
  };
  walk(obj, '');
  return problems;
}

export function findObject(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (found === undefined) throw new Error(`${kind}/${name} not rendered`);
  return found;
}
