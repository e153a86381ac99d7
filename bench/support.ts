// Shared helpers for the benchmarks in bench/: environment knobs, summary statistics, a plain
// text table, and JSON results written to bench/results/<name>.json (git-ignored).

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DEFAULT_TIMER_LAYOUT,
  TimerLayoutSchema,
  type TimerLayout,
} from '../src/nats/deployment.js';

export const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

/** A positive integer from the environment, or `fallback` when unset; throws on a bad value. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/u.test(raw) || Number(raw) < 1) {
    throw new Error(`${name} must be a positive whole number, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

/**
 * The timer layout the bench's deployments are set up with: BENCH_TIMER_LAYOUT=index measures the
 * layout of deployments created before layouts existed (one index entry per window), the default
 * is what setup gives a new deployment.
 */
export function benchTimerLayout(): TimerLayout {
  return TimerLayoutSchema.parse(process.env['BENCH_TIMER_LAYOUT'] ?? DEFAULT_TIMER_LAYOUT);
}

export interface Summary {
  readonly min: number;
  readonly median: number;
  readonly max: number;
  readonly mean: number;
}

/** Min, median, max and mean of a non-empty list. */
export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) throw new Error('summarize needs at least one value');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 === 1
      ? (sorted[mid] ?? 0)
      : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return {
    min: sorted[0] ?? 0,
    median,
    max: sorted[sorted.length - 1] ?? 0,
    mean: sorted.reduce((sum, v) => sum + v, 0) / sorted.length,
  };
}

/** `12345.6` → `12,346` (or with `digits` decimals). */
export function formatNumber(value: number, digits = 0): string {
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** `0.934` → `93.4%`. */
export function formatPercent(ratio: number, digits = 1): string {
  return `${(ratio * 100).toFixed(digits)}%`;
}

export type Cell = string | number;

/** Renders rows as an aligned text table (numbers right-aligned, formatted with separators). */
export function renderTable(
  headers: readonly string[],
  rows: readonly (readonly Cell[])[],
): string {
  const text = rows.map((row) => row.map((c) => (typeof c === 'number' ? formatNumber(c) : c)));
  const widths = headers.map((h, i) =>
    Math.max(h.length, ...text.map((row) => (row[i] ?? '').length)),
  );
  const numeric = headers.map((_, i) => rows.some((row) => typeof row[i] === 'number'));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (numeric[i] === true ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...text.map(line)].join('\n');
}

export function printTable(headers: readonly string[], rows: readonly (readonly Cell[])[]): void {
  process.stdout.write(`${renderTable(headers, rows)}\n`);
}

/** Writes `data` as pretty JSON to bench/results/<name>.json and returns the path. */
export async function writeResults(name: string, data: unknown): Promise<string> {
  if (!/^[A-Za-z0-9_-]+$/u.test(name)) throw new Error(`bad results name ${JSON.stringify(name)}`);
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.json`);
  await writeFile(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}
