// `npm run bench`: every bench in turn (each prints its table and writes bench/results/<name>.json),
// the machine's load average before and after each, then one report (bench/report.ts).
// Flags after `--` go to the matrix (e.g. `npm run bench -- --customers 1k,10k --partitions 32`).
//
// Heavy: minutes per bench. The machine's load is recorded next to every figure; run it when the
// machine is quiet, and read the figures as ratios to the raw baselines of the same run.

import { spawn } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { writeResults } from './support.js';

const BENCHES = ['publish', 'worker', 'fleet', 'timers', 'matrix'] as const;
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const TSX = fileURLToPath(new URL('../node_modules/tsx/dist/cli.mjs', import.meta.url));

function runBench(name: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSX, `bench/${name}.ts`, ...args], {
      cwd: ROOT,
      stdio: 'inherit',
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
  });
}

const only = process.env['BENCH_ONLY']?.split(',').filter(Boolean);
const matrixArgs = process.argv.slice(2);
const benches: Record<string, unknown> = {};
let failed = 0;
for (const name of BENCHES) {
  if (only !== undefined && !only.includes(name)) continue;
  const before = os.loadavg();
  const started = Date.now();
  process.stdout.write(`\n=== bench:${name} (load average ${before[0]?.toFixed(1) ?? '?'})\n`);
  const code = await runBench(name, name === 'matrix' ? matrixArgs : []);
  if (code !== 0) failed++;
  benches[name] = {
    exitCode: code,
    ms: Date.now() - started,
    loadAverage: { before, after: os.loadavg() },
  };
}
await writeResults('bench-run', { at: new Date().toISOString(), cpus: os.cpus().length, benches });
const report = await runBench('report', []);
process.exitCode = failed > 0 || report !== 0 ? 1 : 0;
