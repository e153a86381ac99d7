// A short seeded run of the shipped chaos harness (`npm run chaos`): a 3-node cluster with R3
// streams and buckets, real worker processes behind relays, the notifier delivering to a local
// webhook, a steady publisher; random faults, then settle and check every invariant against the
// independent model. The verdict is on state only; no timing is asserted.
//
// CHAOS_SEED, CHAOS_DURATION_S and CHAOS_FAULTS override the defaults, e.g.
//   CHAOS_FAULTS=all CHAOS_SEED=13 npx vitest run test/integration/chaos.test.ts

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatEvent } from '../../scripts/chaos/timeline.js';
import { runChaos } from '../../scripts/chaos/run.js';
import { parseFaultKinds } from '../../scripts/chaos/schedule.js';

// The default run keeps to the faults of workers and their network (kill, term, stop past the
// TTL, network cuts, scaling, rolling restarts) on the default server: NATS node kills and stalls
// under R3 meet server bugs on both 2.9.10 (nats-server#4320) and 2.10.27 (acknowledged KV
// writes lost; see the README's chaos findings). CHAOS_FAULTS=all and NATS_CLUSTER_SERVER_BIN
// run the rest.
const CLUSTER_BINARY = process.env['NATS_CLUSTER_SERVER_BIN'];
const DEFAULT_FAULTS =
  'worker-kill,worker-term,worker-stop,net-cut,scale-up,scale-down,rolling-restart';

describe('chaos harness', () => {
  it('a short seeded run under faults keeps every invariant', { timeout: 900_000 }, async () => {
    const lines: string[] = [];
    const outDir = await mkdtemp(path.join(os.tmpdir(), 'order-fleet-chaos-test-'));
    const report = await runChaos({
      seed: Number(process.env['CHAOS_SEED'] ?? 2),
      durationMs: Number(process.env['CHAOS_DURATION_S'] ?? 40) * 1000,
      workers: 3,
      minWorkers: 2,
      maxWorkers: 5,
      faults: parseFaultKinds(process.env['CHAOS_FAULTS'] ?? DEFAULT_FAULTS),
      rate: 15,
      eventsPerSecond: 40,
      customers: 100,
      partitions: 16,
      leaseTtlMs: 4000,
      webhookFailureRate: 0.05,
      // Generous: a loaded 2-core machine; nothing here is a timing assertion.
      settleTimeoutMs: 300_000,
      recoveryTimeoutMs: 120_000,
      shutdownGraceMs: 10_000,
      outDir,
      reportPath: undefined,
      workerCmd: undefined,
      notifierCmd: undefined,
      setupCmd: undefined,
      modelPath: undefined,
      natsServerBinary: CLUSTER_BINARY === '' ? undefined : CLUSTER_BINARY,
      print: (line) => lines.push(line),
    });
    const story = `${report.timeline.map(formatEvent).join('\n')}\nlogs: ${report.outDir}`;
    expect(report.error, story).toBeUndefined();
    expect(report.violations, story).toEqual([]);
    expect(report.verdict).toBe('pass');
    // The run exercised something: faults applied, events stored, summaries delivered.
    expect(report.faults.some((f) => f.outcome === 'applied')).toBe(true);
    expect(report.events.stored).toBe(report.events.published);
    expect(report.counts['lost']).toBe(0);
    expect(report.counts['doubled']).toBe(0);
    expect(report.counts['deliveredKeys']).toBe(report.counts['windows']);
    expect(report.settle?.settled).toBe(true);
    // Logs and the report stay behind only when something failed.
    await rm(outDir, { recursive: true, force: true });
  });
});
