// The running half of the Kubernetes simulator: pods are real `node bin/order-fleet.js worker`
// processes (the container's args from the rendered Deployment, WORKER_ID from the pod name, the
// ConfigMap's env), each with its own ADMIN_PORT standing in for its pod IP. A kubelet per pod
// runs the startup and readiness probes against the real /healthz and /readyz, and deletes a pod
// with SIGTERM, then SIGKILL after terminationGracePeriodSeconds. Controllers decide with the
// pure functions of kube-sim.ts: the Deployment controller (rolling update), `kubectl drain`
// through the eviction API (the PodDisruptionBudget), and the HPA KEDA creates, reading the
// ScaledObject's query from every pod's /metrics as the PodMonitor labels them. Every decision
// goes to an event log that tests assert on.
//
// Time: every duration from the manifests is multiplied by one factor, `timeScale` (manifest
// seconds → real seconds), and so are the env durations listed in `scaledEnv` that must stay
// consistent with them (the gauge interval below the polling interval). The grace period is
// scaled only with `scaleGracePeriod` (then list SHUTDOWN_GRACE_MS in `scaledEnv` too): it is an
// upper bound that a clean handoff stays far below, so scaling it saves no time and only turns
// a busy moment on a loaded machine (a flood of closing summary windows) into a forced exit. Not simulated: liveness restarts, scale to zero (KEDA activation and
// cooldown need minReplicaCount 0), Prometheus' scrape delay, zones.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnWorker, type TestDeployment, type WorkerProcess } from './fleet.js';
import {
  KubeSimError,
  evaluateQuery,
  evictionAllowed,
  hpaDecide,
  hpaRawDesired,
  initialHpaMemory,
  parseMetrics,
  pdbStatus,
  resolveFenceposts,
  rollingStep,
  type HpaMemory,
  type ProbeSpec,
  type WorkerManifests,
} from './kube-sim.js';
import { freePort } from './ports.js';

/** Counts right after a decision, so tests can check every decision against its rule. */
export interface Counts {
  /** spec.replicas of the Deployment. */
  readonly desired: number;
  /** Pods not terminating. */
  readonly live: number;
  /** Ready pods not terminating (available: minReadySeconds is 0). */
  readonly ready: number;
}

/** What the simulator decided or saw; `t` is in manifest seconds since it began. */
export type SimEventBody =
  | ({
      readonly type: 'created';
      readonly pod: string;
      readonly node: string;
      readonly revision: number;
      readonly maxSurge: number;
    } & Counts)
  | ({
      readonly type: 'deleted';
      readonly pod: string;
      readonly reason: 'rollout' | 'scale-in' | 'eviction' | 'teardown';
      readonly maxUnavailable: number;
    } & Counts)
  | { readonly type: 'ready' | 'unready'; readonly pod: string }
  | {
      readonly type: 'exited';
      readonly pod: string;
      readonly code: number | null;
      readonly signal: string | null;
      readonly terminating: boolean;
    }
  | { readonly type: 'killed'; readonly pod: string }
  | { readonly type: 'startup-failed'; readonly pod: string }
  | { readonly type: 'cordon' | 'uncordon'; readonly node: string }
  | {
      readonly type: 'evicted' | 'eviction-refused';
      readonly pod: string;
      readonly healthy: number;
      readonly desiredHealthy: number;
      readonly disruptionsAllowed: number;
    }
  | {
      readonly type: 'hpa';
      readonly metric: number | null;
      readonly raw: number;
      readonly stabilized: number;
      readonly from: number;
      readonly to: number;
    };
export type SimEvent = SimEventBody & { readonly t: number };

interface Pod {
  readonly name: string;
  readonly node: string;
  readonly revision: number;
  readonly port: number;
  readonly process: WorkerProcess;
  readonly createdAt: number;
  readonly probes: AbortController;
  ready: boolean;
  terminating: boolean;
  gone: Promise<void>;
}

export interface PodView {
  readonly name: string;
  readonly node: string;
  readonly revision: number;
  readonly ready: boolean;
  readonly terminating: boolean;
}

/** Sleeps; false when aborted (the loop should end), any other failure is thrown. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  return sleep(ms, true, { signal }).catch((err: unknown) => {
    if (signal.aborted) return false;
    throw err;
  });
}

export class KubeCluster {
  readonly events: SimEvent[] = [];
  /** Every pod's process ever started, for log-based counters and failure traces. */
  readonly processes: WorkerProcess[] = [];
  readonly #m: WorkerManifests;
  readonly #dep: TestDeployment;
  readonly #timeScale: number;
  readonly #scaledEnv: readonly string[];
  readonly #graceMs: number;
  readonly #onSpawn: (w: WorkerProcess) => void;
  readonly #pods = new Map<string, Pod>();
  readonly #cordoned = new Set<string>();
  readonly #nodes: readonly string[];
  readonly #t0 = performance.now();
  readonly #abort = new AbortController();
  #hpaAbort: AbortController | undefined;
  #replicas: number;
  #revision = 1;
  #podSeq = 0;
  #loops: Promise<void>[] = [];
  #failure: Error | undefined;

  constructor(
    manifests: WorkerManifests,
    dep: TestDeployment,
    opts: {
      readonly timeScale: number;
      readonly nodes: readonly string[];
      readonly scaledEnv: readonly string[];
      readonly scaleGracePeriod: boolean;
      readonly onSpawn?: (w: WorkerProcess) => void;
    },
  ) {
    this.#m = manifests;
    this.#dep = dep;
    this.#timeScale = opts.timeScale;
    this.#scaledEnv = opts.scaledEnv;
    const grace = manifests.deployment.terminationGracePeriodSeconds * 1000;
    this.#graceMs = opts.scaleGracePeriod ? grace * opts.timeScale : grace;
    this.#nodes = opts.nodes;
    this.#onSpawn = opts.onSpawn ?? (() => undefined);
    this.#replicas = manifests.deployment.replicas;
    if (manifests.scaledObject.minReplicaCount < 1)
      throw new KubeSimError('UNSUPPORTED', 'scale to zero (KEDA activation) is not simulated');
    const adminPort = Number(manifests.deployment.env['ADMIN_PORT']);
    if (adminPort !== manifests.deployment.readinessProbe.containerPort)
      throw new KubeSimError(
        'MANIFEST_SHAPE',
        `ADMIN_PORT ${adminPort} is not the port the readiness probe calls`,
      );
  }

  /** Manifest seconds since the simulation began. */
  now(): number {
    return (performance.now() - this.#t0) / 1000 / this.#timeScale;
  }

  #ms(manifestSeconds: number): number {
    return manifestSeconds * 1000 * this.#timeScale;
  }

  #record(event: SimEventBody): void {
    this.events.push({ ...event, t: Math.round(this.now() * 10) / 10 });
  }

  #counts(): Counts {
    const live = [...this.#pods.values()].filter((p) => !p.terminating);
    return {
      desired: this.#replicas,
      live: live.length,
      ready: live.filter((p) => p.ready).length,
    };
  }

  get replicas(): number {
    return this.#replicas;
  }

  pods(): PodView[] {
    return [...this.#pods.values()].map((p) => ({
      name: p.name,
      node: p.node,
      revision: p.revision,
      ready: p.ready,
      terminating: p.terminating,
    }));
  }

  /** Every pod of the current revision, as many as wanted, ready, and no other pod left. */
  rolledOut(): string[] | undefined {
    const pods = this.pods();
    const done =
      pods.length === this.#replicas &&
      pods.every((p) => p.revision === this.#revision && p.ready && !p.terminating);
    return done ? pods.map((p) => p.name).sort() : undefined;
  }

  /** A failure inside a controller loop, rethrown to the test. */
  check(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Starts the Deployment controller (the Deployment is applied). */
  start(): void {
    this.#loops.push(this.#guard(this.#deploymentController(this.#abort.signal)));
  }

  /** `kubectl rollout restart`: a new template revision, rolled out by the strategy. */
  rolloutRestart(): void {
    this.#revision++;
  }

  get revision(): number {
    return this.#revision;
  }

  async #guard(loop: Promise<void>): Promise<void> {
    await loop.catch((err: unknown) => {
      // Kept for check(): a broken controller must fail the test, not hang it.
      this.#failure = err instanceof Error ? err : new Error(String(err));
    });
  }

  async #deploymentController(signal: AbortSignal): Promise<void> {
    // The real controller is event-driven; a short poll stands in for its watch.
    do await this.#reconcile();
    while (await pause(50, signal));
  }

  async #reconcile(): Promise<void> {
    const live = [...this.#pods.values()].filter((p) => !p.terminating);
    const current = live.filter((p) => p.revision === this.#revision);
    const old = live.filter((p) => p.revision !== this.#revision);
    const fence = resolveFenceposts(
      this.#m.deployment.maxSurge,
      this.#m.deployment.maxUnavailable,
      this.#replicas,
    );
    const step = rollingStep({
      desired: this.#replicas,
      ...fence,
      old: { total: old.length, ready: old.filter((p) => p.ready).length },
      current: { total: current.length, ready: current.filter((p) => p.ready).length },
    });
    // ReplicaSet deletion order: not ready first, then the youngest.
    const rank = (pods: Pod[]): Pod[] =>
      [...pods].sort((a, b) => Number(a.ready) - Number(b.ready) || b.createdAt - a.createdAt);
    const victims = [
      ...rank(old.filter((p) => !p.ready)).slice(0, step.deleteOldUnready),
      ...rank(old.filter((p) => p.ready)).slice(0, step.deleteOldReady),
      ...rank(current).slice(0, step.deleteCurrent),
    ];
    for (const pod of victims)
      this.#delete(
        pod,
        pod.revision === this.#revision ? 'scale-in' : 'rollout',
        fence.maxUnavailable,
      );
    for (let i = 0; i < step.createCurrent; i++) await this.#create(fence.maxSurge);
  }

  #schedule(): string {
    const load = (node: string): number =>
      [...this.#pods.values()].filter((p) => p.node === node && !p.terminating).length;
    // Topology spread over hosts (ScheduleAnyway): the least loaded schedulable node.
    const node = this.#nodes
      .filter((n) => !this.#cordoned.has(n))
      .sort((a, b) => load(a) - load(b) || a.localeCompare(b))[0];
    if (node === undefined) throw new KubeSimError('UNSUPPORTED', 'no schedulable node');
    return node;
  }

  async #create(maxSurge: number): Promise<void> {
    const d = this.#m.deployment;
    const name = `${d.name}-r${this.#revision}-${++this.#podSeq}`;
    const port = await freePort();
    const env: Record<string, string> = { ...d.env };
    for (const key of this.#scaledEnv) {
      const value = env[key];
      if (value === undefined) throw new KubeSimError('MANIFEST_SHAPE', `no env ${key} to scale`);
      env[key] = String(Math.round(Number(value) * this.#timeScale));
    }
    for (const key of d.podNameEnv) env[key] = name;
    Object.assign(env, {
      // This cluster's NATS, and the pod's own "IP": a port of its own on 127.0.0.1.
      NATS_URL: this.#dep.url,
      ORDER_FLEET_NAMESPACE: this.#dep.namespace,
      ADMIN_PORT: String(port),
      ADMIN_HOST: '127.0.0.1',
    });
    // The manifest's env only: not the test deployment's tuned intervals.
    const proc = spawnWorker({ ...this.#dep, env: {} }, name, env, d.args);
    this.processes.push(proc);
    this.#onSpawn(proc);
    const pod: Pod = {
      name,
      node: this.#schedule(),
      revision: this.#revision,
      port,
      process: proc,
      createdAt: performance.now(),
      probes: new AbortController(),
      ready: false,
      terminating: false,
      gone: Promise.resolve(),
    };
    pod.gone = proc.exited.then((exit) => this.#exited(pod, exit));
    this.#pods.set(name, pod);
    this.#record({
      type: 'created',
      pod: name,
      node: pod.node,
      revision: pod.revision,
      maxSurge,
      ...this.#counts(),
    });
    this.#loops.push(this.#guard(this.#kubelet(pod)));
  }

  #exited(pod: Pod, exit: { code: number | null; signal: NodeJS.Signals | null }): void {
    pod.probes.abort();
    this.#pods.delete(pod.name);
    this.#record({
      type: 'exited',
      pod: pod.name,
      code: exit.code,
      signal: exit.signal,
      terminating: pod.terminating,
    });
  }

  /** Deletes a pod as the API server and kubelet do: out of the endpoints, SIGTERM, SIGKILL. */
  #delete(
    pod: Pod,
    reason: 'rollout' | 'scale-in' | 'eviction' | 'teardown',
    maxUnavailable: number,
  ): void {
    if (pod.terminating) return;
    pod.terminating = true;
    pod.ready = false;
    pod.probes.abort();
    this.#record({ type: 'deleted', pod: pod.name, reason, maxUnavailable, ...this.#counts() });
    pod.process.signal('SIGTERM');
    const kill = setTimeout(() => {
      this.#record({ type: 'killed', pod: pod.name });
      pod.process.signal('SIGKILL');
    }, this.#graceMs);
    pod.gone = pod.gone.then(() => clearTimeout(kill));
  }

  async #httpOk(pod: Pod, probe: ProbeSpec): Promise<boolean> {
    try {
      const res = await fetch(`http://127.0.0.1:${pod.port}${probe.path}`, {
        signal: AbortSignal.timeout(this.#ms(probe.timeoutSeconds)),
      });
      await res.body?.cancel();
      return res.status >= 200 && res.status < 400;
    } catch {
      // Refused (not listening yet) or timed out: that is what a failed probe is.
      return false;
    }
  }

  async #kubelet(pod: Pod): Promise<void> {
    const signal = pod.probes.signal;
    const startup = this.#m.deployment.startupProbe;
    if (startup !== undefined) {
      for (let failures = 0; ;) {
        if (!(await pause(this.#ms(startup.periodSeconds), signal))) return;
        if (await this.#httpOk(pod, startup)) break;
        if (++failures >= startup.failureThreshold) {
          this.#record({ type: 'startup-failed', pod: pod.name });
          this.#delete(pod, 'teardown', 0);
          return;
        }
      }
    }
    const readiness = this.#m.deployment.readinessProbe;
    let successes = 0;
    let failures = 0;
    while (await pause(this.#ms(readiness.periodSeconds), signal)) {
      const ok = await this.#httpOk(pod, readiness);
      if (signal.aborted) return;
      successes = ok ? successes + 1 : 0;
      failures = ok ? 0 : failures + 1;
      if (!pod.ready && successes >= readiness.successThreshold) {
        pod.ready = true;
        this.#record({ type: 'ready', pod: pod.name });
      } else if (pod.ready && failures >= readiness.failureThreshold) {
        pod.ready = false;
        this.#record({ type: 'unready', pod: pod.name });
      }
    }
  }

  /**
   * `kubectl drain`: cordon the node, then evict each of its pods through the eviction API,
   * retrying a refused eviction (429) every 5 s, and wait until they are gone.
   */
  async drain(node: string): Promise<void> {
    this.#cordoned.add(node);
    this.#record({ type: 'cordon', node });
    const victims = [...this.#pods.values()].filter((p) => p.node === node && !p.terminating);
    await Promise.all(
      victims.map(async (pod) => {
        while (!pod.terminating) {
          const counts = this.#counts();
          const status = pdbStatus(this.#m.pdb, {
            expected: this.#replicas,
            pods: counts.live,
            healthy: counts.ready,
          });
          const allowed = evictionAllowed(status, {
            healthy: counts.ready,
            podHealthy: pod.ready,
          });
          this.#record({
            type: allowed ? 'evicted' : 'eviction-refused',
            pod: pod.name,
            healthy: counts.ready,
            ...status,
          });
          if (allowed) this.#delete(pod, 'eviction', 0);
          else await sleep(this.#ms(5));
        }
        await pod.gone;
      }),
    );
  }

  uncordon(node: string): void {
    this.#cordoned.delete(node);
    this.#record({ type: 'uncordon', node });
  }

  /** Nodes and the live pods on them. */
  nodes(): Map<string, string[]> {
    return new Map(
      this.#nodes.map((n) => [
        n,
        this.pods()
          .filter((p) => p.node === n && !p.terminating)
          .map((p) => p.name),
      ]),
    );
  }

  /** Applies the ScaledObject: KEDA's HPA starts syncing every pollingInterval. */
  startAutoscaler(): void {
    this.#hpaAbort = new AbortController();
    this.#loops.push(this.#guard(this.#hpa(this.#hpaAbort.signal)));
  }

  stopAutoscaler(): void {
    this.#hpaAbort?.abort();
  }

  /** The ScaledObject's query over every running pod's /metrics, labelled by the PodMonitor. */
  async queryMetric(): Promise<number | undefined> {
    const targets = [...this.#pods.values()];
    const scraped = await Promise.all(
      targets.map(async (pod) => {
        try {
          const res = await fetch(`http://127.0.0.1:${pod.port}${this.#m.metricsPath}`, {
            signal: AbortSignal.timeout(2000),
          });
          return parseMetrics(await res.text()).map((s) => ({
            ...s,
            labels: { ...this.#m.scrapeLabels, ...s.labels },
          }));
        } catch {
          // A target that does not answer (starting, exiting) is down for this scrape, as in
          // Prometheus: it contributes no series.
          return [];
        }
      }),
    );
    return evaluateQuery(this.#m.scaledObject.query, scraped.flat());
  }

  async #hpa(signal: AbortSignal): Promise<void> {
    const so = this.#m.scaledObject;
    let memory: HpaMemory = initialHpaMemory(this.#replicas, this.now());
    // A fixed cadence, as the controller's resync: the scrape's own time is not added to it, and
    // a sync that ran late is not followed by catch-up syncs.
    let next = performance.now();
    for (;;) {
      next = Math.max(next + this.#ms(so.pollingInterval), performance.now());
      if (!(await pause(Math.max(0, next - performance.now()), signal))) return;
      const metric = await this.queryMetric();
      // No series: KEDA reads 0 with ignoreNullValues, else the sync fails and nothing changes.
      if (metric === undefined && !so.ignoreNullValues) continue;
      const from = this.#replicas;
      const raw = hpaRawDesired({
        metric: metric ?? 0,
        threshold: so.threshold,
        currentReplicas: from,
      });
      const decision = hpaDecide({
        now: this.now(),
        current: from,
        raw,
        min: so.minReplicaCount,
        max: so.maxReplicaCount,
        behavior: so.behavior,
        memory,
      });
      memory = decision.memory;
      this.#replicas = decision.replicas;
      this.#record({
        type: 'hpa',
        metric: metric ?? null,
        raw,
        stabilized: decision.stabilized,
        from,
        to: decision.replicas,
      });
    }
  }

  /**
   * Stops the controllers, then deletes the remaining pods one at a time (gracefully), calling
   * `between` with the pods still running after each is gone.
   */
  async deleteAll(between: (remaining: string[]) => Promise<void>): Promise<void> {
    this.stopAutoscaler();
    this.#abort.abort();
    for (const pod of [...this.#pods.values()].sort((a, b) => a.createdAt - b.createdAt)) {
      this.#delete(pod, 'teardown', 0);
      await pod.gone;
      const remaining = [...this.#pods.keys()].sort();
      if (remaining.length > 0) await between(remaining);
    }
    await Promise.all(this.#loops);
    this.check();
  }

  /** Teardown after a failure: stop the loops and SIGKILL whatever still runs. */
  async dispose(): Promise<void> {
    this.stopAutoscaler();
    this.#abort.abort();
    for (const pod of this.#pods.values()) {
      pod.probes.abort();
      pod.process.signal('SIGKILL');
    }
    await Promise.all([...this.#pods.values()].map((p) => p.gone));
    await Promise.all(this.#loops);
  }
}
