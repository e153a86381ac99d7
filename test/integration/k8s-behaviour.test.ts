// Acceptance: the Kubernetes behaviour the manifests specify, played out with real processes
// (no Kubernetes here, and containers would make CI too slow). The rendered worker Deployment,
// PodDisruptionBudget, PodMonitor and KEDA ScaledObject of k8s/overlays/example drive a small
// simulator (test/support/kube-cluster.ts): pods are `node bin/order-fleet.js worker` processes
// with the ConfigMap's env, probed on the real /healthz and /readyz, deleted with SIGTERM then
// SIGKILL after the grace period. Under a continuous publisher, in order:
// - a rolling update (`kubectl rollout restart`) by the Deployment's maxSurge/maxUnavailable,
//   gated on readiness;
// - a node drain through the eviction API, which the PDB refuses while a disruption is not
//   allowed (the drained node holds two pods, so the second eviction must wait);
// - the ScaledObject's HPA on the fleet-wide lag scraped from the pods' /metrics: a burst
//   scales up, its end scales back down to minReplicaCount after the stabilization window.
// Then every customer's state equals the model, nothing was applied twice or replayed, every
// pod exited 0 on its SIGTERM (no SIGKILL), and the event log shows each decision kept its rule.

import { describe, expect, it, onTestFailed } from 'vitest';
import {
  field,
  linesOf,
  numberField,
  settled,
  settledOwners,
  startFleetScenario,
  startLoad,
  useTeardown,
  type BackgroundLoad,
} from '../support/fleet-scenarios.js';
import { eventually, readStoredStates } from '../support/fleet.js';
import { KubeCluster, type SimEvent } from '../support/kube-cluster.js';
import {
  pdbStatus,
  readWorkerManifests,
  resolveFenceposts,
  type WorkerManifests,
} from '../support/kube-sim.js';
import { kustomizeCommand, renderKustomization } from '../support/manifests.js';
import { diffStates, lostCustomers, modelFromPublished } from '../support/model.js';

/**
 * The one time factor: a manifest second lasts 80 ms here. It applies to every duration the
 * manifests give that paces a decision (probe periods and timeouts, KEDA's polling interval, the
 * HPA's stabilization windows and policy periods, kubectl drain's retry) and to the env duration
 * that must stay consistent with them (FLEET_GAUGES_INTERVAL_MS below the polling interval).
 * Not scaled: the grace period and SHUTDOWN_GRACE_MS (upper bounds: a clean handoff takes well
 * under a second, so scaling them saves nothing and would turn a busy moment into a forced
 * exit; every pod must still exit 0 on its SIGTERM, before the kubelet's SIGKILL), and
 * LEASE_TTL_MS (graceful paths never wait for a lease to expire).
 */
const TIME_SCALE = 0.08;
const SCALED_ENV = ['FLEET_GAUGES_INTERVAL_MS'];
/**
 * Fewer partitions than the ConfigMap's 32 (a setup-time choice, not a pod setting) keep the
 * 2-core machine's load down; every rule under test is per pod, not per partition.
 */
const PARTITIONS = 8;
const CUSTOMERS = 1000;

const teardown = useTeardown();
const kustomize = kustomizeCommand();
const describeK8s = 'missing' in kustomize ? describe.skip : describe;
if ('missing' in kustomize)
  console.warn(`SKIPPING k8s behaviour test: no kustomize renderer (${kustomize.missing})`);

type EventOf<T extends SimEvent['type']> = SimEvent & { readonly type: T };
function of<T extends SimEvent['type']>(events: readonly SimEvent[], type: T): EventOf<T>[] {
  return events.filter((e): e is EventOf<T> => e.type === type);
}

describeK8s('k8s behaviour from the rendered manifests', () => {
  // 60-100 s here (up to 4 min on a loaded machine): the scaling phase waits out two (scaled)
  // stabilization windows and the scale-in policy's steps, hence more than the default timeout.
  it(
    'rolls, drains and autoscales as the manifests say, with nothing lost and nothing replayed',
    { timeout: 360_000 },
    async () => {
      const m: WorkerManifests = readWorkerManifests(renderKustomization('k8s/overlays/example'));
      const { dep, workers, step } = await startFleetScenario(teardown, {
        partitions: PARTITIONS,
        leaseTtlMs: Number(m.deployment.env['LEASE_TTL_MS']),
      });
      const cluster = new KubeCluster(m, dep, {
        timeScale: TIME_SCALE,
        // Two nodes for three replicas: one of them holds two pods, so its drain meets the PDB.
        nodes: ['node-a', 'node-b'],
        scaledEnv: SCALED_ENV,
        scaleGracePeriod: false,
        onSpawn: (w) => workers.push(w),
      });
      teardown.push(() => cluster.dispose());
      // K8S_SIM_TRACE=1 prints the simulator's event log after a passing run too (for timings).
      if (process.env['K8S_SIM_TRACE'] === '1')
        teardown.push(() => {
          console.log(cluster.events.map((e) => JSON.stringify(e)).join('\n'));
          return Promise.resolve();
        });
      onTestFailed(() => {
        // Warnings and errors from the start (the scenario's trace prints only each pod's tail).
        for (const w of cluster.processes)
          console.error(
            `--- ${w.id} warnings\n${w
              .logs()
              .filter((l) => typeof l['level'] === 'number' && l['level'] >= 40)
              .slice(0, 15)
              .map((l) => JSON.stringify(l))
              .join('\n')}`,
          );
        console.error(
          `simulator events:\n${cluster.events.map((e) => JSON.stringify(e)).join('\n')}`,
        );
      });
      const loads: BackgroundLoad[] = [
        startLoad(teardown, dep, {
          customers: CUSTOMERS,
          minEvents: 10_000,
          // Light enough that its lag alone asks for the minimum replicas (ceil(lag / threshold)).
          chunk: 300,
          pauseMs: 50,
          prefix: 'k8s',
        }),
      ];
      const rolledOut = (): Promise<string[]> =>
        eventually(
          () => {
            cluster.check();
            return cluster.rolledOut();
          },
          // Generous: on the loaded CI machine one rollout (probes, startup, handoffs) took
          // close to a minute; a timeout here is a wait, not a speed check.
          120_000,
          100,
        );

      // The Deployment is applied: spec.replicas pods.
      cluster.start();
      const first = await rolledOut();
      expect(first).toHaveLength(m.deployment.replicas);
      await settledOwners(dep, first);
      step('applied');

      // Rolling update.
      const rollFrom = cluster.events.length;
      cluster.rolloutRestart();
      const second = await rolledOut();
      expect(second.every((p) => !first.includes(p))).toBe(true);
      await settledOwners(dep, second);
      const rollEvents = cluster.events.slice(rollFrom);
      step('rolled');

      // Node drain of the node holding the most pods, then uncordon.
      const [drained, onDrained] =
        [...cluster.nodes()].sort((a, b) => b[1].length - a[1].length)[0] ?? [];
      if (drained === undefined || onDrained === undefined) throw new Error('no node');
      expect(onDrained.length).toBeGreaterThanOrEqual(2);
      const drainFrom = cluster.events.length;
      await cluster.drain(drained);
      cluster.uncordon(drained);
      const third = await rolledOut();
      await settledOwners(dep, third);
      const drainEvents = cluster.events.slice(drainFrom);
      step('drained');

      // Autoscaling. The ScaledObject is applied: its HPA starts from the Deployment's replicas,
      // holds them for its scale-down stabilization window, then scales in to what the steady
      // load's lag asks for (the minimum). Bursts on top of the steady load then raise the fleet
      // lag past the threshold: the HPA scales up; when they end it scales back in to the
      // minimum, after the window again and at the policy's pace.
      const scaleFrom = cluster.events.length;
      const syncsSince = (): EventOf<'hpa'>[] => of(cluster.events.slice(scaleFrom), 'hpa');
      // Waits on the simulator's state only. Under a burst on a loaded machine readiness may flap
      // (a pod behind on its partitions is not ready), so no wait needs every pod ready at once.
      const until = (check: () => boolean): Promise<true> =>
        eventually(
          () => {
            cluster.check();
            return check() ? true : undefined;
          },
          120_000,
          100,
        );
      cluster.startAutoscaler();
      // The steady load alone asks for the minimum: after the window the HPA scales in to it
      // (unless the machine is so slow that the steady lag alone scaled it up).
      await until(
        () =>
          cluster.replicas === m.scaledObject.minReplicaCount ||
          syncsSince().some((s) => s.to > s.from),
      );
      step(`HPA at ${cluster.replicas}`);
      // More customers than the steady load, so the workers checkpoint more entries, as a real
      // burst of orders would (not too many: each closes a summary window 30 s later).
      const bursts = ['burst1', 'burst2'].map((prefix) =>
        startLoad(teardown, dep, {
          customers: 2 * CUSTOMERS,
          minEvents: 0,
          chunk: 4000,
          pauseMs: 0,
          prefix,
          maxInFlight: 512,
        }),
      );
      loads.push(...bursts);
      // Scaled up, and every pod the scale-up created turned ready (or is gone again).
      await until(() => {
        const up = syncsSince().find((s) => s.to > s.from);
        if (up === undefined) return false;
        const created = of(cluster.events, 'created').filter((e) => e.t >= up.t);
        return (
          created.length > 0 &&
          created.every((c) =>
            cluster.events.some(
              (e) => (e.type === 'ready' || e.type === 'exited') && e.pod === c.pod,
            ),
          )
        );
      });
      step(`scaled up to ${cluster.replicas}`);
      for (const b of bursts) await b.finish();
      step('bursts over');
      const upAt = syncsSince().find((s) => s.to > s.from)?.t ?? Infinity;
      await until(
        () =>
          cluster.replicas === m.scaledObject.minReplicaCount &&
          syncsSince().some((s) => s.t > upAt && s.to < s.from),
      );
      cluster.stopAutoscaler();
      const scaleEvents = cluster.events.slice(scaleFrom);
      step('scaled back in');

      for (const l of loads) await l.finish();
      const final = await rolledOut();
      await settled(dep, final);
      step('settled');

      // Every customer's state equals the model.
      const events = loads.flatMap((l) => l.events);
      const results = loads.flatMap((l) => l.results);
      const model = modelFromPublished(events, results);
      const stored = await readStoredStates(dep);
      expect(diffStates(model.expected(), stored)).toEqual([]);
      expect(lostCustomers(events, results, stored)).toEqual([]);

      // Stop the rest one at a time, so every runner reports its counters.
      await cluster.deleteAll((remaining) => settledOwners(dep, remaining).then(() => undefined));
      const all = cluster.processes;
      const stopped = all.flatMap((w) => linesOf(w, 'partition stopped'));
      expect(stopped.filter((l) => field(l, 'state') !== 'stopped')).toEqual([]);
      // Applied once each: every published event, plus the timer entries the fleet appended itself
      // (customers quiet for SUMMARY_QUIET_MS, 30 s unscaled, get one: this test runs longer).
      const applied = stopped.reduce((sum, l) => sum + numberField(l, 'applied'), 0);
      const timers = stopped.reduce((sum, l) => sum + numberField(l, 'timersFired'), 0);
      expect(applied - timers - new Set(results.map((r) => r.seq)).size).toBe(0);
      expect(stopped.reduce((sum, l) => sum + numberField(l, 'skipped'), 0)).toBe(0);
      // Every handoff was graceful and replayed nothing.
      const starts = all.flatMap((w) => linesOf(w, 'partition starting'));
      expect(starts.filter((l) => field(l, 'cleanHandoff') !== true)).toEqual([]);
      const caughtUp = all.flatMap((w) => linesOf(w, 'partition caught up'));
      expect(caughtUp.filter((l) => numberField(l, 'replayed') !== 0)).toEqual([]);
      expect(stopped.reduce((sum, l) => sum + numberField(l, 'replayed'), 0)).toBe(0);

      // From the simulator's event log. Every pod exited 0 on its SIGTERM; none was killed.
      const log = cluster.events;
      expect(of(log, 'killed')).toEqual([]);
      expect(of(log, 'startup-failed')).toEqual([]);
      expect(of(log, 'exited').filter((e) => !e.terminating || e.code !== 0)).toEqual([]);
      expect(of(log, 'exited')).toHaveLength(all.length);

      // Rolling update: surge and availability bounds at every decision, readiness-gated.
      const fence = resolveFenceposts(
        m.deployment.maxSurge,
        m.deployment.maxUnavailable,
        m.deployment.replicas,
      );
      const rollCreated = of(rollEvents, 'created');
      const rollDeleted = of(rollEvents, 'deleted');
      expect(rollCreated).toHaveLength(m.deployment.replicas);
      expect(rollDeleted.map((e) => e.reason)).toEqual(
        Array(m.deployment.replicas).fill('rollout'),
      );
      expect(rollCreated.filter((e) => e.live > e.desired + fence.maxSurge)).toEqual([]);
      expect(rollDeleted.filter((e) => e.ready < e.desired - fence.maxUnavailable)).toEqual([]);
      // Each old pod went only after a new pod turned ready: deletions never outrun readiness.
      for (const d of rollDeleted) {
        const newReady = rollEvents.filter(
          (e) => e.type === 'ready' && e.t <= d.t && rollCreated.some((c) => c.pod === e.pod),
        ).length;
        const deletedSoFar = rollDeleted.filter((x) => x.t <= d.t).length;
        expect(newReady, `ready new pods when ${d.pod} was deleted`).toBeGreaterThanOrEqual(
          deletedSoFar,
        );
      }

      // Drain: every eviction kept the budget, at least one was refused, each replacement came up.
      const evicted = of(drainEvents, 'evicted');
      expect(evicted.map((e) => e.pod).sort()).toEqual([...onDrained].sort());
      const budget = pdbStatus(m.pdb, {
        expected: m.deployment.replicas,
        pods: m.deployment.replicas,
        healthy: m.deployment.replicas,
      });
      expect(
        evicted.filter((e) => e.disruptionsAllowed < 1 || e.healthy - 1 < budget.desiredHealthy),
      ).toEqual([]);
      expect(of(drainEvents, 'eviction-refused').length).toBeGreaterThan(0);
      // While the node is cordoned nothing is scheduled on it. After the uncordon it is
      // schedulable again, and a replacement the controller creates then may land there
      // (as in Kubernetes: drain returns when the pods are gone, not when they are replaced).
      const uncordonAt = drainEvents.findIndex((e) => e.type === 'uncordon');
      expect(uncordonAt).toBeGreaterThan(0);
      const cordoned = drainEvents.slice(0, uncordonAt);
      const createdOnDrained = of(cordoned, 'created').filter((e) => e.node === drained);
      expect(createdOnDrained, 'pods scheduled on the cordoned node').toEqual([]);

      // Autoscaling: every sync follows the HPA formula within [min, max]; it went up, then back
      // in; scale-in stepped by the behavior's policies and waited for the stabilization
      // window (no recommendation within the window before a scale-in asked for more than it kept;
      // 0.2 s of slack for the log's rounding).
      const so = m.scaledObject;
      const syncs = of(scaleEvents, 'hpa');
      expect(syncs.filter((s) => s.to < so.minReplicaCount || s.to > so.maxReplicaCount)).toEqual(
        [],
      );
      const ups = syncs.filter((s) => s.to > s.from);
      const downs = syncs.filter((s) => s.to < s.from);
      for (const u of ups) expect(u.raw).toBe(Math.ceil((u.metric ?? 0) / so.threshold));
      const firstUp = ups[0];
      if (firstUp === undefined) throw new Error('never scaled up');
      expect(downs.filter((d) => d.t > firstUp.t).length).toBeGreaterThan(0);
      const window = so.behavior.scaleDown.stabilizationWindowSeconds;
      // The HPA began at the Deployment's replicas, so its first scale-in waited about a window
      // (a decision, not a timing: the slack is one sync of the HPA's cadence, which jitters on a
      // loaded machine; the exact rule is checked per scale-in below, from the recorded syncs).
      const began = syncs[0]?.t ?? 0;
      expect((downs[0]?.t ?? 0) - began).toBeGreaterThanOrEqual(window - 2 * so.pollingInterval);
      for (const d of downs) {
        const inWindow = syncs.filter((s) => s.t <= d.t && s.t > d.t - window + 0.2);
        expect(
          inWindow.filter((s) => s.raw > d.to),
          `window before ${JSON.stringify(d)}`,
        ).toEqual([]);
      }
      for (const p of so.behavior.scaleDown.policies.filter((x) => x.type === 'Pods'))
        for (const d of downs) {
          const inPeriod = downs.filter((x) => x.t <= d.t && x.t > d.t - p.periodSeconds + 0.2);
          expect(inPeriod.reduce((n, x) => n + x.from - x.to, 0)).toBeLessThanOrEqual(p.value);
        }
      // The scale-up started pods beyond the minimum, and they became ready.
      const upCreated = of(scaleEvents, 'created').filter((e) => e.t >= firstUp.t);
      expect(upCreated.length).toBeGreaterThan(0);
      expect(
        upCreated.every((c) => scaleEvents.some((e) => e.type === 'ready' && e.pod === c.pod)),
      ).toBe(true);
    },
  );
});
