// One chaos run, end to end: a 3-node NATS cluster on loopback, `setup` with R3, workers behind
// relays, a notifier delivering to a local webhook, a publisher at a steady rate; then the seeded
// faults; then settle and check every invariant against the model. Returns the report; the CLI
// (main.ts) prints it and sets the exit code, tests call `runChaos` directly.

import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { resourceNames } from '../../src/contract/names.js';
import { describeError } from '../../src/errors.js';
import { loadDeployment } from '../../src/nats/deployment.js';
import { CLI, REPO_ROOT } from '../../test/support/fleet.js';
import { rng } from '../../test/support/model.js';
import { startNatsCluster, type NatsCluster } from '../../test/support/nats-cluster.js';
import { FaultRunner, type FaultRecord } from './faults.js';
import { KvWatchers, type WatchReport } from './kv-watchers.js';
import { loadModel, type ChaosModel, type ModelPublisher, type StoredCustomer } from './model.js';
import { ManagedProcess } from './processes.js';
import { planFaults, type FaultKind, type PlannedFault } from './schedule.js';
import { waitForSettle, type SettleResult } from './settle.js';
import { readStream } from './streams.js';
import { Timeline, type TimelineEvent } from './timeline.js';
import { VIOLATION_NAMES, type Violation } from './violations.js';
import { WebhookReceiver } from './webhook-receiver.js';
import { WorkerFleet, type ChaosWorker } from './worker-fleet.js';

export interface ChaosOptions {
  readonly seed: number;
  /** Length of the fault phase (the publisher runs through it). */
  readonly durationMs: number;
  readonly workers: number;
  readonly minWorkers: number;
  readonly maxWorkers: number;
  readonly faults: readonly FaultKind[];
  /** Faults per minute, on average. */
  readonly rate: number;
  readonly eventsPerSecond: number;
  readonly customers: number;
  readonly partitions: number;
  readonly leaseTtlMs: number;
  /** Fraction of webhook requests the receiver refuses with 503 (exercises retries). */
  readonly webhookFailureRate: number;
  readonly settleTimeoutMs: number;
  /** Wait for a node to be healthy, a new worker to be ready, a worker to be free. */
  readonly recoveryTimeoutMs: number;
  readonly shutdownGraceMs: number;
  /** Where logs and the report go; default a new directory under the OS temp dir. */
  readonly outDir: string | undefined;
  /** Also write the JSON report here. */
  readonly reportPath: string | undefined;
  /** Shell commands replacing the defaults (`node bin/order-fleet.js worker|notifier|setup`). */
  readonly workerCmd: string | undefined;
  readonly notifierCmd: string | undefined;
  readonly setupCmd: string | undefined;
  /** Module exporting createModel(options); default: the order model. */
  readonly modelPath: string | undefined;
  readonly natsServerBinary: string | undefined;
  readonly print: (line: string) => void;
}

export interface ChaosReport {
  readonly verdict: 'pass' | 'fail' | 'error';
  readonly seed: number;
  readonly options: Record<string, unknown>;
  readonly startedAt: string;
  readonly wallMs: number;
  readonly natsVersion: string | undefined;
  readonly model: string;
  readonly outDir: string;
  readonly plan: readonly PlannedFault[];
  readonly faults: readonly FaultRecord[];
  readonly faultsByKind: Readonly<Record<string, Record<FaultRecord['outcome'], number>>>;
  readonly events: {
    readonly published: number;
    readonly stored: number;
    readonly notStored: number;
    readonly perSecond: number;
  };
  readonly counts: Readonly<Record<string, number>>;
  readonly watch: WatchReport | undefined;
  readonly settle: SettleResult | undefined;
  readonly processes: readonly {
    readonly id: string;
    readonly startedAtMs: number;
    readonly exit?: { code: number | null; signal: string | null; atMs: number; expected: boolean };
    readonly log: string;
  }[];
  readonly violations: readonly Violation[];
  readonly timeline: readonly TimelineEvent[];
  readonly error?: string;
}

interface Published<E> {
  readonly customerId: string;
  readonly event: E;
  seq: number | undefined;
  error?: string;
}

const SETTLE_POLL_MS = 2_000;

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const startedAt = new Date();
  const outDir =
    o.outDir ??
    path.join(
      os.tmpdir(),
      `order-fleet-chaos-${o.seed}-${startedAt.toISOString().replace(/[:.]/gu, '-')}`,
    );
  await mkdir(outDir, { recursive: true });
  const timeline = new Timeline(o.print);
  const violations: Violation[] = [];
  const violation = (v: Violation): void => {
    const stamped = { ...v, atMs: v.atMs ?? timeline.now() };
    violations.push(stamped);
    timeline.add('violation', `${v.name}: ${v.detail}`);
  };
  const names = resourceNames('');
  const plan = planFaults({
    seed: o.seed,
    durationMs: o.durationMs,
    rate: o.rate,
    kinds: o.faults,
    leaseTtlMs: o.leaseTtlMs,
    workers: o.workers,
    minWorkers: o.minWorkers,
    maxWorkers: o.maxWorkers,
  });

  let cluster: NatsCluster | undefined;
  let nc: NatsConnection | undefined;
  let receiver: WebhookReceiver | undefined;
  let watchers: KvWatchers | undefined;
  let notifier: ManagedProcess | undefined;
  let fleet: WorkerFleet | undefined;
  let faults: FaultRunner | undefined;
  let settle: SettleResult | undefined;
  let tearingDown = false;
  const published: Published<unknown>[] = [];
  const processes: ManagedProcess[] = [];
  let counts: Record<string, number> = {};
  let modelName = 'orders';
  let error: string | undefined;
  let publishSeconds = 0;

  try {
    const model: ChaosModel = await loadModel(o.modelPath, {
      customers: o.customers,
      seed: o.seed,
    });
    modelName = model.name;
    timeline.add('phase', `model ${model.name}; ${plan.length} faults planned (seed ${o.seed})`);

    cluster = await startNatsCluster({
      size: 3,
      noAdvertise: true,
      // What production runs (the README's advice): acked writes survive a node's kill -9.
      syncAlways: true,
      ...(o.natsServerBinary === undefined ? {} : { binary: o.natsServerBinary }),
    });
    const c = cluster;
    timeline.add(
      'phase',
      `NATS cluster up: ${c.servers.map((s, i) => `n${i + 1} :${s.port}`).join(', ')} (nats-server ${c.servers[0]?.version ?? '?'})`,
    );

    const baseEnv = { LOG_LEVEL: 'info', ORDER_FLEET_NAMESPACE: '' };
    const setup = new ManagedProcess('setup', {
      argv: commandArgv(o.setupCmd, 'setup'),
      cwd: REPO_ROOT,
      env: {
        ...baseEnv,
        LOG_LEVEL: 'warn',
        NATS_URL: c.url,
        ORDERS_REPLICAS: '3',
        PARTITIONS: String(o.partitions),
        LEASE_TTL_MS: String(o.leaseTtlMs),
      },
      logFile: path.join(outDir, 'setup.log'),
    });
    processes.push(setup);
    const setupExit = await setup.exited;
    if (setupExit.code !== 0)
      throw new Error(
        `setup exited with code ${String(setupExit.code)}:\n${setup.tail(20).join('\n')}`,
      );
    timeline.add(
      'phase',
      `setup done: R3 streams and buckets, ${o.partitions} partitions, lease TTL ${o.leaseTtlMs} ms`,
    );

    const conn = await connect({
      servers: c.urls,
      name: 'order-fleet-chaos',
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    nc = conn;
    const deployment = await loadDeployment(conn, names);
    watchers = await KvWatchers.start(conn, names, timeline.t0);
    receiver = await WebhookReceiver.start({ failureRate: o.webhookFailureRate, seed: o.seed });
    const hook = receiver;

    const startNotifier = (): ManagedProcess => {
      const p = new ManagedProcess('notifier', {
        argv: commandArgv(o.notifierCmd, 'notifier'),
        cwd: REPO_ROOT,
        env: {
          ...baseEnv,
          NATS_URL: c.url,
          NOTIFIER_SINK: 'webhook',
          NOTIFIER_WEBHOOK_URL: hook.url,
          NOTIFIER_WEBHOOK_TIMEOUT_MS: '3000',
        },
        logFile: path.join(outDir, 'notifier.log'),
      });
      processes.push(p);
      void p.exited.then((exit) => {
        if (exit.expected || tearingDown) return;
        violation({
          name: VIOLATION_NAMES.notifierExited,
          detail: `the notifier exited on its own (code ${String(exit.code)}, signal ${String(exit.signal)}); restarted`,
          data: { log: p.tail(30) },
        });
        notifier = startNotifier();
      });
      return p;
    };
    notifier = startNotifier();

    const workerFleet = new WorkerFleet({
      argv: commandArgv(o.workerCmd, 'worker'),
      cwd: REPO_ROOT,
      env: {
        ...baseEnv,
        CHECKPOINT_INTERVAL_MS: '500',
        SHUTDOWN_GRACE_MS: String(o.shutdownGraceMs),
        ...model.workerEnv,
      },
      natsPorts: c.servers.map((s) => s.port),
      logDir: outDir,
      onExit: (w: ChaosWorker, exit) => {
        processes.push(w.process);
        if (exit.expected || tearingDown) return;
        violation({
          name: VIOLATION_NAMES.workerExited,
          detail: `${w.id} exited on its own (code ${String(exit.code)}, signal ${String(exit.signal)}); log ${w.logFile}`,
          data: { worker: w.id, code: exit.code, signal: exit.signal, log: w.process.tail(30) },
        });
        w.leaving = true;
        // Kubernetes would restart the pod; so does the harness, so the run still checks state.
        workerFleet.spawn().then(
          (next) => timeline.add('recover', `started ${next.id} to replace ${w.id}, which exited`),
          (err: unknown) =>
            timeline.add('note', `could not replace ${w.id}: ${describeError(err)}`),
        );
      },
    });
    fleet = workerFleet;
    for (let i = 0; i < o.workers; i++) await workerFleet.spawn();
    timeline.add('phase', `started ${o.workers} workers and the notifier; waiting until ready`);
    const readyBy = Date.now() + o.recoveryTimeoutMs;
    while (Date.now() < readyBy) {
      const states = await Promise.all(workerFleet.members.map((w) => w.ready()));
      if (states.every(Boolean)) break;
      await sleep(500);
    }

    // Publisher at a steady rate, for the whole fault phase.
    const publisher: ModelPublisher<unknown> = await model.openPublisher({
      nc: conn,
      names,
      partitions: deployment.partitions,
    });
    const random = rng((o.seed * 2654435761) >>> 0);
    const inFlight = new Set<Promise<void>>();
    let publishing = true;
    const publishStart = Date.now();
    const publishLoop = (async () => {
      let n = 0;
      while (publishing) {
        const due = Math.floor(((Date.now() - publishStart) / 1000) * o.eventsPerSecond);
        for (; n < due; n++) {
          const { customerId, event } = model.nextEvent(random, n);
          const record: Published<unknown> = { customerId, event, seq: undefined };
          published.push(record);
          const p: Promise<void> = publisher
            .publish(customerId, event)
            .then(
              (r) => {
                record.seq = r.seq;
              },
              (err: unknown) => {
                record.error = describeError(err);
              },
            )
            .finally(() => inFlight.delete(p));
          inFlight.add(p);
        }
        await sleep(50);
      }
    })();

    const runner = new FaultRunner({
      fleet: workerFleet,
      cluster: c,
      timeline,
      violation,
      shutdownGraceMs: o.shutdownGraceMs,
      recoveryTimeoutMs: o.recoveryTimeoutMs,
    });
    faults = runner;
    timeline.add(
      'phase',
      `faults for ${Math.round(o.durationMs / 1000)} s, publishing ${o.eventsPerSecond} events/s`,
    );
    const phaseStart = Date.now();
    const phaseEnd = phaseStart + o.durationMs;
    const stopTimer = setTimeout(() => runner.stop(), o.durationMs);
    await runner.run(plan, phaseStart, phaseEnd);
    clearTimeout(stopTimer);
    if (Date.now() < phaseEnd) await sleep(phaseEnd - Date.now());
    publishing = false;
    await publishLoop;
    publishSeconds = (Date.now() - publishStart) / 1000;
    timeline.add('phase', `faults over; waiting for ${inFlight.size} publishes to be acknowledged`);
    while (inFlight.size > 0) await Promise.all([...inFlight]);
    await publisher.close();

    timeline.add(
      'phase',
      'settling: all partitions owned, caught up, windows closed, notifier drained',
    );
    settle = await waitForSettle({
      nc: conn,
      names,
      cluster: c,
      fleet: workerFleet,
      deliveredKeys: () => hook.acceptedKeys().size,
      timeoutMs: o.settleTimeoutMs,
      pollMs: SETTLE_POLL_MS,
      progress: (text) => timeline.add('note', text),
    });
    if (settle.settled) timeline.add('phase', `settled in ${(settle.tookMs / 1000).toFixed(1)} s`);
    else
      violation({
        name: VIOLATION_NAMES.notSettled,
        detail: `not settled within ${o.settleTimeoutMs} ms; still waiting for: ${settle.waitingFor.join('; ')}`,
        data: { waitingFor: settle.waitingFor },
      });

    // The watches must have seen every write before their verdict counts.
    const w = watchers;
    const caughtUp = await waitFor(async () => {
      const revs = await w.bucketRevisions();
      const r = w.report();
      return r.stateRevision >= revs.state && r.metaRevision >= revs.meta;
    }, 60_000);
    if (!caughtUp)
      violation({
        name: VIOLATION_NAMES.watchIncomplete,
        detail: `the KV watches did not reach the buckets' last revisions (${JSON.stringify(w.report())})`,
      });
    await w.stop();
    for (const v of w.violations) violation(v);

    // Publishes that failed for good may still have been stored: look them up by id.
    const failed = published.filter((p) => p.seq === undefined);
    if (failed.length > 0) {
      const byId = new Map<string, number>();
      for (const m of await readStream(conn, names.ordersStream))
        if (m.msgId !== undefined) byId.set(m.msgId, m.seq);
      for (const p of failed) p.seq = byId.get(model.eventId(p.event));
    }

    const stored = await readStoredCustomers(conn, names.stateBucket);
    for (const [customerId, seen] of w.highestLastSeq()) {
      const final = stored.get(customerId);
      if (final !== undefined && final.lastSeq >= seen.lastSeq) continue;
      violation({
        name: VIOLATION_NAMES.kvWriteLost,
        detail: `${customerId}: the bucket holds lastSeq ${final?.lastSeq ?? 'nothing'}, but the watch saw revision ${seen.revision} write lastSeq ${seen.lastSeq}`,
        data: { customerId, final: final?.lastSeq, seen },
      });
    }
    const check = await model.check({
      published,
      stored,
      deliveries: hook.deliveries,
      readStream: (stream) => readStream(conn, stream),
      names,
      writes: w.writes,
    });
    counts = { ...check.counts };
    for (const v of check.violations) violation(v);
  } catch (err) {
    error = describeError(err);
    timeline.add('note', `harness error: ${error}`);
  } finally {
    tearingDown = true;
    faults?.stop();
    await faults
      ?.drain()
      .catch((err: unknown) => timeline.add('note', `drain: ${describeError(err)}`));
    await fleet?.stopAll(o.shutdownGraceMs + 5_000);
    await notifier?.stop(10_000);
    await watchers?.stop();
    await receiver?.close();
    await nc?.close().catch((err: unknown) => timeline.add('note', `close: ${describeError(err)}`));
    await cluster?.cleanup();
  }

  const stored = published.filter((p) => p.seq !== undefined).length;
  const faultsByKind: Record<string, Record<FaultRecord['outcome'], number>> = {};
  for (const r of faults?.records ?? []) {
    const k = (faultsByKind[r.kind] ??= { pending: 0, applied: 0, skipped: 0, failed: 0 });
    k[r.outcome]++;
  }
  const verdict = error !== undefined ? 'error' : violations.length > 0 ? 'fail' : 'pass';
  const report: ChaosReport = {
    verdict,
    seed: o.seed,
    options: optionsForReport(o),
    startedAt: startedAt.toISOString(),
    wallMs: Date.now() - startedAt.getTime(),
    natsVersion: cluster?.servers[0]?.version,
    model: modelName,
    outDir,
    plan,
    faults: faults?.records ?? [],
    faultsByKind,
    events: {
      published: published.length,
      stored,
      notStored: published.length - stored,
      perSecond: publishSeconds > 0 ? Math.round(published.length / publishSeconds) : 0,
    },
    counts,
    watch: watchers?.report(),
    settle,
    processes: [...new Set([...processes, ...(fleet?.all.map((w) => w.process) ?? [])])].map(
      (p) => ({
        id: p.id,
        startedAtMs: p.startedAtMs - timeline.t0,
        ...(p.exit === undefined
          ? {}
          : {
              exit: {
                code: p.exit.code,
                signal: p.exit.signal,
                atMs: p.exit.atMs - timeline.t0,
                expected: p.exit.expected,
              },
            }),
        log: path.join(outDir, `${p.id}.log`),
      }),
    ),
    violations,
    timeline: timeline.events,
    ...(error === undefined ? {} : { error }),
  };
  const json = `${JSON.stringify(report, null, 2)}\n`;
  await writeFile(path.join(outDir, 'report.json'), json);
  if (o.reportPath !== undefined) {
    await mkdir(path.dirname(path.resolve(o.reportPath)), { recursive: true });
    await writeFile(o.reportPath, json);
  }
  return report;
}

/** The default command (`node bin/order-fleet.js <sub>`), or the user's through /bin/sh. */
function commandArgv(custom: string | undefined, sub: string): string[] {
  // `exec` so the shell is replaced and signals reach the command itself.
  return custom === undefined ? [process.execPath, CLI, sub] : ['/bin/sh', '-c', `exec ${custom}`];
}

async function readStoredCustomers(
  nc: NatsConnection,
  bucket: string,
): Promise<Map<string, StoredCustomer>> {
  const kv = await new Kvm(nc).open(bucket);
  const keys: string[] = [];
  for await (const key of await kv.keys('c.>')) keys.push(key);
  const out = new Map<string, StoredCustomer>();
  for (const key of keys) {
    const entry = await kv.get(key);
    if (entry === null || entry.operation !== 'PUT') continue;
    const value = entry.json<{ customerId?: unknown; lastSeq?: unknown; state?: unknown }>();
    if (typeof value.customerId !== 'string' || typeof value.lastSeq !== 'number') continue;
    out.set(value.customerId, {
      customerId: value.customerId,
      lastSeq: value.lastSeq,
      state: value.state,
    });
  }
  return out;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await check()) return true;
    } catch (err) {
      // A transient NATS error while reading status: poll again.
      void err;
    }
    await sleep(500);
  }
  return false;
}

function optionsForReport(o: ChaosOptions): Record<string, unknown> {
  const { print: _print, ...rest } = o;
  return { ...rest };
}
