// Helpers for integration tests of the fleet: provision a deployment on a real server, spawn real
// worker processes (`node bin/order-fleet.js worker`), run the CLI, publish load, read back state.
// Tests compare final state with an independent model of what was published.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { resourceNames, type ResourceNames } from '../../src/contract/names.js';
import { setupDeployment } from '../../src/nats/provision.js';
import type { TimerLayout } from '../../src/nats/deployment.js';
import { customerIdFromKey } from '../../src/state/keys.js';
import { describeError } from '../../src/errors.js';
import { uniqueName } from './nats.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = fileURLToPath(new URL('../../bin/order-fleet.js', import.meta.url));

export const silentLogger = pino({ level: 'silent' });

export interface TestDeployment {
  readonly url: string;
  readonly namespace: string;
  readonly names: ResourceNames;
  readonly partitions: number;
  readonly nc: NatsConnection;
  /** Environment for child processes (worker, CLI) pointing at this deployment. */
  readonly env: Readonly<Record<string, string>>;
  close(): Promise<void>;
}

export interface ProvisionOptions {
  readonly partitions?: number;
  readonly leaseTtlMs?: number;
  readonly replicas?: number;
  /** Timer layout of the new deployment (default: what `setup` gives a new one, `state`). */
  readonly timerLayout?: TimerLayout;
  /** Use a unique namespace (needed when sharing a server, e.g. NATS_URL). Default: true when NATS_URL is set. */
  readonly isolate?: boolean;
  /** Extra environment for every child process. */
  readonly env?: Readonly<Record<string, string>>;
}

/** Runs `setup` (in-process) against a real server and returns what tests need to use it. */
export async function provision(url: string, opts: ProvisionOptions = {}): Promise<TestDeployment> {
  const isolate = opts.isolate ?? (process.env['NATS_URL'] ?? '') !== '';
  const namespace = isolate ? uniqueName('t').replace(/_/gu, '').slice(0, 24) : '';
  const names = resourceNames(namespace);
  const nc = await connect({
    servers: url.split(','),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
    // As the fleet's own connections (src/nats/connection.ts): the benches' raw baselines run on
    // this connection, and must not pay for an Error with a stack per request that ours skip.
    noAsyncTraces: true,
  });
  const report = await setupDeployment(
    nc,
    names,
    {
      partitions: opts.partitions ?? 8,
      timerLayout: opts.timerLayout,
      replicas: opts.replicas ?? 1,
      maxAgeMs: 0,
      duplicateWindowMs: 120_000,
      leaseTtlMs: opts.leaseTtlMs ?? 3000,
      notificationsDuplicateWindowMs: 3_600_000,
      notificationsMaxAgeMs: 0,
    },
    silentLogger,
  );
  const env: Record<string, string> = {
    NATS_URL: url,
    ORDER_FLEET_NAMESPACE: namespace,
    // TEST_WORKER_LOG_LEVEL=debug (with TEST_TRACE_DIR, see traceOnFailure) to diagnose a failure.
    LOG_LEVEL: process.env['TEST_WORKER_LOG_LEVEL'] ?? 'info',
    HEARTBEAT_MS: '250',
    CHECKPOINT_INTERVAL_MS: '200',
    ...opts.env,
  };
  return {
    url,
    namespace,
    names,
    partitions: report.deployment.partitions,
    nc,
    env,
    close: async () => {
      await nc.drain();
    },
  };
}

export interface LogLine {
  readonly msg?: string;
  readonly [key: string]: unknown;
}

export interface WorkerProcess {
  readonly id: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Parsed JSON log lines so far. */
  logs(): readonly LogLine[];
  /** Raw output (stdout + stderr) so far, for failure messages. */
  output(): string;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Sends a signal and waits for exit; returns the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  signal(signal: NodeJS.Signals): void;
}

const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/**
 * Spawns a real worker process for the deployment. `args` replaces the CLI arguments (the kube
 * simulator passes a manifest's container args and sets WORKER_ID from the pod name instead).
 */
export function spawnWorker(
  dep: TestDeployment,
  id: string,
  env: Readonly<Record<string, string>> = {},
  args: readonly string[] = ['worker', '--worker-id', id],
): WorkerProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...dep.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveChildren.add(child);
  const lines: LogLine[] = [];
  let raw = '';
  const waiters = new Set<{ predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  let partial = '';
  // TEST_WORKER_LOG_TEE_DIR: every worker's log also goes to <dir>/<id>.jsonl as it is written
  // (to watch a long bench or a hanging test while it runs).
  const teeDir = process.env['TEST_WORKER_LOG_TEE_DIR'];
  const tee =
    teeDir === undefined || teeDir === ''
      ? undefined
      : createWriteStream(path.join(teeDir, `${id}.jsonl`), { flags: 'a' });
  child.on('exit', () => tee?.end());
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    tee?.write(chunk);
    raw += chunk;
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const part of parts) {
      if (part.trim() === '') continue;
      let line: LogLine;
      try {
        line = JSON.parse(part) as LogLine;
      } catch {
        // Not a log line (should not happen: workers log JSON only); keep it in raw output.
        continue;
      }
      lines.push(line);
      for (const w of waiters) {
        if (w.predicate(line)) {
          waiters.delete(w);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    raw += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      liveChildren.delete(child);
      resolve({ code, signal });
    });
  });
  const waitForLog = (predicate: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> => {
    const found = lines.find(predicate);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise<LogLine>((resolve, reject) => {
      const waiter = { predicate, resolve: (l: LogLine) => (clearTimeout(timer), resolve(l)) };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`worker ${id}: timed out waiting for a log line\n${raw.slice(-4000)}`));
      }, timeoutMs);
      waiters.add(waiter);
    });
  };
  return {
    id,
    child,
    exited,
    logs: () => lines,
    output: () => raw,
    waitForLog,
    signal: (signal) => {
      child.kill(signal);
    },
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Waits until the worker logged that every partition it was given runs and caught up. */
export function waitReady(worker: WorkerProcess, timeoutMs = 30_000): Promise<LogLine> {
  return worker.waitForLog((l) => l.msg === 'worker ready', timeoutMs);
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `order-fleet <args>` as a real process against the deployment. */
export function runCli(
  dep: TestDeployment,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<CliResult> {
  return spawnCli(args, { ...process.env, ...dep.env, LOG_LEVEL: 'warn', ...env });
}

/** Runs `order-fleet <args>` as a real process with exactly this environment. */
export function spawnCli(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Every customer's stored state in KV: id → { items, lastSeq }. */
export async function readStoredStates(
  dep: TestDeployment,
): Promise<Map<string, { items: number[]; lastSeq: number }>> {
  const kv = await new Kvm(dep.nc).open(dep.names.stateBucket);
  const out = new Map<string, { items: number[]; lastSeq: number }>();
  const keys: string[] = [];
  for await (const key of await kv.keys('c.>')) keys.push(key);
  await Promise.all(
    keys.map(async (key) => {
      const entry = await kv.get(key);
      const id = customerIdFromKey(key);
      if (entry === null || entry.operation !== 'PUT' || id === undefined) return;
      const value = entry.json<{ lastSeq: number; state: { items: number[] } }>();
      out.set(id, { items: value.state.items, lastSeq: value.lastSeq });
    }),
  );
  return out;
}

/** Polls `check` until it returns a value other than undefined. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `condition not met within ${timeoutMs} ms${lastError === undefined ? '' : `: ${describeError(lastError)}`}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
