// `npm run chaos -- [options]`: one seeded chaos run against a 3-node NATS cluster on loopback.
// Exit code 0: every invariant held. 1: a violation (named in the output and the report).
// 2: bad options or a harness failure (no verdict).

import { Command, InvalidArgumentError } from 'commander';
import { describeError } from '../../src/errors.js';
import { formatEvent } from './timeline.js';
import { FAULT_DESCRIPTIONS, FAULT_KINDS, parseFaultKinds } from './schedule.js';
import { runChaos, type ChaosReport } from './run.js';

const int =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (value: string): number => {
    if (!/^\d+$/u.test(value)) throw new InvalidArgumentError('must be a whole decimal number');
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`must be between ${min} and ${max}`);
    return n;
  };
const num =
  (min: number, max: number) =>
  (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max)
      throw new InvalidArgumentError(`must be a number between ${min} and ${max}`);
    return n;
  };
const kinds = (value: string): string => {
  try {
    parseFaultKinds(value);
  } catch (err) {
    throw new InvalidArgumentError(describeError(err));
  }
  return value;
};

interface Flags {
  seed?: number;
  duration: number;
  workers: number;
  minWorkers?: number;
  maxWorkers?: number;
  faults: string;
  rate: number;
  eventsPerSec: number;
  customers: number;
  partitions: number;
  leaseTtl: number;
  webhookFailureRate: number;
  settleTimeout: number;
  recoveryTimeout: number;
  grace: number;
  report?: string;
  outDir?: string;
  workerCmd?: string;
  notifierCmd?: string;
  setupCmd?: string;
  model?: string;
  natsServer?: string;
}

const program = new Command('chaos')
  .description(
    'Seeded chaos run: a 3-node NATS cluster on loopback (R3), workers, a notifier delivering to a local webhook and a steady publisher; random faults, then settle and check every invariant against an independent model.',
  )
  .option(
    '--seed <n>',
    'seed of the fault schedule and the load (default: random, printed)',
    int(0, 2 ** 31),
  )
  .option('--duration <s>', 'seconds of faults (the publisher runs through them)', int(1), 120)
  .option('--workers <n>', 'workers at the start', int(1, 20), 3)
  .option(
    '--min-workers <n>',
    'scale-down never goes below (default workers - 1, at least 1)',
    int(1, 20),
  )
  .option('--max-workers <n>', 'scale-up never goes above (default workers + 2)', int(1, 30))
  .option(
    '--faults <kinds>',
    `comma-separated fault kinds, or all / none: ${FAULT_KINDS.join(', ')}`,
    kinds,
    'all',
  )
  .option('--rate <n>', 'faults per minute, on average', num(0, 600), 12)
  .option('--events-per-sec <n>', 'publisher rate', int(1, 100_000), 100)
  .option('--customers <n>', 'customers the load spreads over', int(1, 10_000_000), 200)
  .option('--partitions <n>', 'partitions of the deployment', int(1, 4096), 32)
  .option('--lease-ttl <ms>', 'LEASE_TTL_MS of the deployment', int(500, 600_000), 4000)
  .option(
    '--webhook-failure-rate <f>',
    'fraction of webhook requests refused with 503',
    num(0, 0.9),
    0.05,
  )
  .option(
    '--settle-timeout <s>',
    'seconds to wait for the fleet to settle after the faults',
    int(1),
    300,
  )
  .option(
    '--recovery-timeout <s>',
    'seconds to wait for a node to be healthy or a worker ready',
    int(1),
    120,
  )
  .option('--grace <ms>', 'SHUTDOWN_GRACE_MS of the workers', int(100), 10_000)
  .option('--report <path>', 'also write the JSON report here')
  .option('--out-dir <dir>', 'logs and report.json (default: a new directory under the temp dir)')
  .option(
    '--worker-cmd <cmd>',
    'shell command of one worker (default: node bin/order-fleet.js worker)',
  )
  .option(
    '--notifier-cmd <cmd>',
    'shell command of the notifier (default: node bin/order-fleet.js notifier)',
  )
  .option(
    '--setup-cmd <cmd>',
    'shell command provisioning the deployment (default: node bin/order-fleet.js setup)',
  )
  .option(
    '--model <path>',
    'module exporting createModel(options): the load and the checks (default: orders)',
  )
  .option('--nats-server <path>', 'nats-server binary (default: NATS_SERVER_BIN, PATH, /usr/sbin)')
  .addHelpText(
    'after',
    `\nFault kinds:\n${FAULT_KINDS.map((k) => `  ${k.padEnd(16)} ${FAULT_DESCRIPTIONS[k]}`).join('\n')}\n\nExit codes: 0 all invariants held, 1 a violation (named), 2 bad options or a harness error.`,
  )
  .showHelpAfterError()
  .exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

async function main(): Promise<void> {
  program.parse(process.argv);
  const f = program.opts<Flags>();
  const seed = f.seed ?? Math.floor(Math.random() * 2 ** 31);
  const minWorkers = f.minWorkers ?? Math.max(1, f.workers - 1);
  const maxWorkers = f.maxWorkers ?? f.workers + 2;
  if (minWorkers > f.workers || maxWorkers < f.workers) {
    process.stderr.write('chaos: need --min-workers <= --workers <= --max-workers\n');
    process.exitCode = 2;
    return;
  }
  const print = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  print(
    `order-fleet chaos: seed ${seed}, ${f.duration} s of faults (${f.faults}) at ${f.rate}/min`,
  );
  print(
    `repeat with: npm run chaos -- --seed ${seed} --duration ${f.duration} --faults ${f.faults} --rate ${f.rate} --workers ${f.workers}`,
  );
  // Ctrl-C: exit at once; the exit hooks SIGKILL every child (workers, notifier, nats-server) and
  // remove the servers' temporary stores. No report is written for an interrupted run.
  process.once('SIGINT', () => {
    print('interrupted: killing every process of the run');
    process.exit(130);
  });
  const report = await runChaos({
    seed,
    durationMs: f.duration * 1000,
    workers: f.workers,
    minWorkers,
    maxWorkers,
    faults: parseFaultKinds(f.faults),
    rate: f.rate,
    eventsPerSecond: f.eventsPerSec,
    customers: f.customers,
    partitions: f.partitions,
    leaseTtlMs: f.leaseTtl,
    webhookFailureRate: f.webhookFailureRate,
    settleTimeoutMs: f.settleTimeout * 1000,
    recoveryTimeoutMs: f.recoveryTimeout * 1000,
    shutdownGraceMs: f.grace,
    outDir: f.outDir,
    reportPath: f.report,
    workerCmd: f.workerCmd,
    notifierCmd: f.notifierCmd,
    setupCmd: f.setupCmd,
    modelPath: f.model,
    natsServerBinary: f.natsServer,
    print,
  });
  print(summarize(report));
  process.exitCode = report.verdict === 'pass' ? 0 : report.verdict === 'fail' ? 1 : 2;
}

function summarize(r: ChaosReport): string {
  const lines: string[] = ['', 'FAULT TIMELINE'];
  for (const e of r.timeline)
    if (e.kind === 'fault' || e.kind === 'recover' || e.kind === 'exit' || e.kind === 'violation')
      lines.push(formatEvent(e));
  lines.push('', 'FAULTS BY KIND');
  for (const [kind, c] of Object.entries(r.faultsByKind))
    lines.push(
      `  ${kind.padEnd(16)} applied ${c.applied}${c.skipped > 0 ? `, skipped ${c.skipped}` : ''}${c.failed > 0 ? `, failed ${c.failed}` : ''}`,
    );
  lines.push('', 'COUNTS');
  lines.push(
    `  events published ${r.events.published} (stored ${r.events.stored}, ~${r.events.perSecond}/s)`,
  );
  for (const [k, v] of Object.entries(r.counts)) lines.push(`  ${k} ${v}`);
  if (r.watch !== undefined)
    lines.push(
      `  watched: ${r.watch.stateEntries} customer writes, ${r.watch.watermarkEntries} watermark writes, ${r.watch.epochsSeen} epochs`,
    );
  if (r.settle !== undefined)
    lines.push(
      `  settle ${r.settle.settled ? 'ok' : 'FAILED'} in ${(r.settle.tookMs / 1000).toFixed(1)} s`,
    );
  lines.push('');
  if (r.verdict === 'pass') lines.push(`VERDICT: PASS (seed ${r.seed}): every invariant held`);
  else if (r.verdict === 'error') lines.push(`VERDICT: ERROR (seed ${r.seed}): ${r.error ?? ''}`);
  else {
    const byName = new Map<string, number>();
    for (const v of r.violations) byName.set(v.name, (byName.get(v.name) ?? 0) + 1);
    lines.push(
      `VERDICT: FAIL (seed ${r.seed}): ${[...byName].map(([n, c]) => `${n} ×${c}`).join(', ')}`,
    );
    if (r.settle !== undefined && !r.settle.settled)
      lines.push(
        '  (the fleet never settled: state and delivery checks ran anyway, so their mismatches may be work not yet done)',
      );
    for (const v of r.violations.slice(0, 30))
      lines.push(
        `  ${v.name}${v.atMs === undefined ? '' : ` @+${(v.atMs / 1000).toFixed(1)}s`}: ${v.detail}`,
      );
  }
  lines.push(`report: ${r.outDir}/report.json; logs in ${r.outDir}`);
  return lines.join('\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`chaos failed: ${describeError(err)}\n`);
  process.exitCode = 2;
});
