// Carries out the plan. NATS faults run one after another in their own lane (never two nodes down
// at once); fleet faults run in order in theirs, each starting at its planned time or when the
// previous one has been applied, whichever is later. A fault's recovery (SIGCONT, heal, restart)
// runs in the background while the lane moves on, so faults overlap as they would in production.
// Every background task is tracked and awaited before the fleet is asked to settle.

import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../../src/errors.js';
import type { NatsCluster } from '../../test/support/nats-cluster.js';
import { waitForJetStream, type NatsServerHandle } from '../../test/support/nats-server.js';
import { laneOf, pickTarget, type FaultKind, type PlannedFault } from './schedule.js';
import type { Timeline } from './timeline.js';
import { VIOLATION_NAMES, type Violation } from './violations.js';
import type { ChaosWorker, WorkerFleet } from './worker-fleet.js';

export interface FaultRecord {
  readonly n: number;
  readonly kind: FaultKind;
  readonly plannedAtMs: number;
  startedAtMs?: number;
  endedAtMs?: number;
  target?: string;
  outcome: 'pending' | 'applied' | 'skipped' | 'failed';
  note?: string;
}

export interface FaultRunnerOptions {
  readonly fleet: WorkerFleet;
  readonly cluster: NatsCluster;
  readonly timeline: Timeline;
  readonly violation: (v: Violation) => void;
  /** Worker SIGTERM grace (SHUTDOWN_GRACE_MS); a worker still running after it plus a margin hung. */
  readonly shutdownGraceMs: number;
  /** How long to wait for a NATS node to be healthy again, or a new worker to be ready. */
  readonly recoveryTimeoutMs: number;
}

/** On top of the worker's own grace: process exit, drain, a loaded machine. */
const SHUTDOWN_MARGIN_MS = 15_000;
const POLL_MS = 250;
/**
 * A lane that fell behind (a rolling restart, a wait for a free worker or a healthy cluster)
 * catches up with at least this gap between faults instead of firing its backlog all at once.
 */
const MIN_GAP_MS = 1_000;
/** A rolling restart waits this long at most for each new worker to be ready (Kubernetes waits too). */
const ROLLING_READY_MS = 60_000;

export class FaultRunner {
  readonly records: FaultRecord[] = [];
  readonly #background = new Set<Promise<void>>();
  #stopping = false;

  constructor(private readonly o: FaultRunnerOptions) {}

  /** Runs the plan from `t0` (Date.now() based) until every fault started before `endAtMs`. */
  async run(plan: readonly PlannedFault[], phaseStart: number, phaseEnd: number): Promise<void> {
    const lanes = { nats: [] as PlannedFault[], fleet: [] as PlannedFault[] };
    for (const f of plan) {
      lanes[laneOf(f.kind)].push(f);
      this.records.push({ n: f.n, kind: f.kind, plannedAtMs: f.atMs, outcome: 'pending' });
    }
    await Promise.all([
      this.#lane(lanes.nats, phaseStart, phaseEnd),
      this.#lane(lanes.fleet, phaseStart, phaseEnd),
    ]);
    await this.drain();
  }

  /** Waits for every background recovery (each bounded). */
  async drain(): Promise<void> {
    while (this.#background.size > 0) await Promise.all([...this.#background]);
  }

  /** No new faults; faults in progress finish and recover. */
  stop(): void {
    this.#stopping = true;
  }

  async #lane(
    faults: readonly PlannedFault[],
    phaseStart: number,
    phaseEnd: number,
  ): Promise<void> {
    let previous = 0;
    for (const f of faults) {
      const at = Math.max(phaseStart + f.atMs, previous + MIN_GAP_MS);
      if (at > Date.now()) await sleep(at - Date.now());
      previous = Date.now();
      const record = this.records.find((r) => r.n === f.n);
      if (record === undefined) continue;
      if (this.#stopping || Date.now() >= phaseEnd) {
        record.outcome = 'skipped';
        record.note = 'fault phase over';
        continue;
      }
      record.startedAtMs = this.o.timeline.now();
      try {
        await this.#apply(f, record);
        if (record.outcome === 'pending') record.outcome = 'applied';
      } catch (err) {
        record.outcome = 'failed';
        record.note = describeError(err);
        this.o.timeline.add('note', `${f.kind} failed in the harness: ${record.note}`, f.n);
      }
    }
  }

  #track(task: () => Promise<void>, record: FaultRecord): void {
    const p: Promise<void> = task()
      .catch((err: unknown) => {
        record.outcome = 'failed';
        record.note = describeError(err);
        this.o.timeline.add('note', `${record.kind} recovery failed: ${record.note}`, record.n);
      })
      .finally(() => {
        record.endedAtMs ??= this.o.timeline.now();
        this.#background.delete(p);
      });
    this.#background.add(p);
  }

  /** A member no fault holds, chosen by the plan's pick; waits (bounded) when all are held. */
  async #target(f: PlannedFault, record: FaultRecord): Promise<ChaosWorker | undefined> {
    const deadline = Date.now() + this.o.recoveryTimeoutMs;
    for (;;) {
      const eligible = this.o.fleet.available.sort((a, b) => a.n - b.n);
      const target = pickTarget(eligible, f.pick);
      if (target !== undefined) {
        record.target = target.id;
        return target;
      }
      if (Date.now() > deadline) {
        record.outcome = 'skipped';
        record.note = 'no worker free to take the fault';
        this.o.timeline.add('note', `${f.kind} skipped: no worker free`, f.n);
        return undefined;
      }
      await sleep(POLL_MS);
    }
  }

  async #apply(f: PlannedFault, record: FaultRecord): Promise<void> {
    const tl = this.o.timeline;
    switch (f.kind) {
      case 'worker-kill': {
        const w = await this.#target(f, record);
        if (w === undefined) return;
        w.busy = f.kind;
        w.leaving = true;
        w.process.terminate('SIGKILL');
        tl.add('fault', `SIGKILL ${w.id}; replacement in ${f.durationMs} ms`, f.n);
        this.#track(async () => {
          await w.process.exited;
          await sleep(f.durationMs);
          const next = await this.o.fleet.spawn();
          tl.add('recover', `started ${next.id} to replace ${w.id}`, f.n);
        }, record);
        return;
      }
      case 'worker-term': {
        const w = await this.#target(f, record);
        if (w === undefined) return;
        tl.add('fault', `SIGTERM ${w.id}; replacement ${f.durationMs} ms after it exits`, f.n);
        this.#track(async () => {
          await this.#terminate(w, f.kind, record);
          await sleep(f.durationMs);
          const next = await this.o.fleet.spawn();
          tl.add('recover', `started ${next.id} to replace ${w.id}`, f.n);
        }, record);
        return;
      }
      case 'scale-down': {
        const w = await this.#target(f, record);
        if (w === undefined) return;
        tl.add('fault', `scale down: SIGTERM ${w.id}`, f.n);
        this.#track(() => this.#terminate(w, f.kind, record), record);
        return;
      }
      case 'scale-up': {
        const w = await this.o.fleet.spawn();
        record.target = w.id;
        record.endedAtMs = tl.now();
        tl.add('fault', `scale up: started ${w.id}`, f.n);
        return;
      }
      case 'worker-stop': {
        const w = await this.#target(f, record);
        if (w === undefined) return;
        w.busy = f.kind;
        w.process.pause();
        tl.add('fault', `SIGSTOP ${w.id} for ${f.durationMs} ms`, f.n);
        this.#track(async () => {
          await sleep(f.durationMs);
          w.process.resume();
          w.busy = undefined;
          tl.add('recover', `SIGCONT ${w.id}`, f.n);
        }, record);
        return;
      }
      case 'net-cut': {
        const w = await this.#target(f, record);
        if (w === undefined) return;
        w.busy = f.kind;
        w.relay.cut();
        tl.add('fault', `network cut of ${w.id} from every NATS node for ${f.durationMs} ms`, f.n);
        this.#track(async () => {
          await sleep(f.durationMs);
          w.relay.heal();
          w.busy = undefined;
          tl.add('recover', `network of ${w.id} healed`, f.n);
        }, record);
        return;
      }
      case 'rolling-restart':
        await this.#rollingRestart(f, record);
        return;
      case 'nats-kill':
      case 'nats-stall':
        await this.#natsFault(f, record);
        return;
    }
  }

  /** SIGTERM and wait; an exit past the grace (plus a margin) is a hung shutdown. */
  async #terminate(w: ChaosWorker, why: string, record: FaultRecord): Promise<void> {
    w.busy = why;
    w.leaving = true;
    const { exit, forced } = await w.process.stop(this.o.shutdownGraceMs + SHUTDOWN_MARGIN_MS);
    if (forced) {
      this.o.violation({
        name: VIOLATION_NAMES.shutdownHung,
        detail: `${w.id} did not exit within ${this.o.shutdownGraceMs + SHUTDOWN_MARGIN_MS} ms of SIGTERM (SIGKILLed)`,
        data: { worker: w.id, fault: record.n, log: w.process.tail(20) },
      });
    }
    this.o.timeline.add(
      'recover',
      `${w.id} exited after SIGTERM (code ${String(exit.code)}${exit.signal === null ? '' : `, signal ${exit.signal}`})`,
      record.n,
    );
  }

  async #rollingRestart(f: PlannedFault, record: FaultRecord): Promise<void> {
    const tl = this.o.timeline;
    const old = this.o.fleet.members.sort((a, b) => a.n - b.n);
    record.target = old.map((w) => w.id).join(',');
    tl.add('fault', `rolling restart of ${record.target}`, f.n);
    // A rolling restart that has begun runs to the end, even past the fault phase: stopping
    // halfway would leave the fleet half replaced, which is a different fault.
    for (const w of old) {
      // Wait for a fault on this worker to end (a stop, a cut) before replacing it.
      const deadline = Date.now() + this.o.recoveryTimeoutMs;
      while (w.busy !== undefined && w.running && Date.now() < deadline) await sleep(POLL_MS);
      if (!w.running || w.leaving || w.busy !== undefined) continue;
      w.busy = f.kind;
      const next = await this.o.fleet.spawn();
      const ready = await this.#waitReady(
        next,
        Math.min(ROLLING_READY_MS, this.o.recoveryTimeoutMs),
      );
      tl.add(
        'recover',
        `started ${next.id}${ready ? ' (ready)' : ' (not ready in time, going on)'}; SIGTERM ${w.id}`,
        f.n,
      );
      await this.#terminate(w, f.kind, record);
    }
    record.endedAtMs = tl.now();
  }

  async #waitReady(w: ChaosWorker, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && w.running) {
      if (await w.ready()) return true;
      await sleep(500);
    }
    return false;
  }

  async #natsFault(f: PlannedFault, record: FaultRecord): Promise<void> {
    const tl = this.o.timeline;
    const servers = this.o.cluster.servers;
    // One node at a time: the previous one must be back and current first.
    await this.#clusterHealthy(f);
    const node = pickTarget(servers, f.pick);
    if (node === undefined) return;
    record.target = node.name;
    if (f.kind === 'nats-kill') {
      await node.kill('SIGKILL');
      tl.add(
        'fault',
        `kill -9 NATS node ${nodeLabel(servers, node)}; down for ${f.durationMs} ms`,
        f.n,
      );
      await sleep(f.durationMs);
      await node.restart({ readiness: 'listening' });
      tl.add('recover', `restarted NATS node ${nodeLabel(servers, node)}`, f.n);
    } else {
      node.pause();
      tl.add('fault', `SIGSTOP NATS node ${nodeLabel(servers, node)} for ${f.durationMs} ms`, f.n);
      await sleep(f.durationMs);
      node.resume();
      tl.add('recover', `SIGCONT NATS node ${nodeLabel(servers, node)}`, f.n);
    }
    const healthy = await this.#clusterHealthy(f);
    record.endedAtMs = tl.now();
    if (!healthy) record.note = 'cluster not healthy within the recovery timeout';
  }

  /** Every node answers /healthz OK (JetStream current), or the recovery timeout passed. */
  async #clusterHealthy(f: PlannedFault): Promise<boolean> {
    try {
      await Promise.all(
        this.o.cluster.servers.map((s) => waitForJetStream(s, this.o.recoveryTimeoutMs)),
      );
      return true;
    } catch (err) {
      this.o.timeline.add(
        'note',
        `NATS cluster not healthy: ${describeError(err).slice(0, 200)}`,
        f.n,
      );
      return false;
    }
  }
}

function nodeLabel(servers: readonly NatsServerHandle[], node: NatsServerHandle): string {
  return `n${servers.indexOf(node) + 1} (:${node.port})`;
}
