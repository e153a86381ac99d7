// Builds one report from whatever bench/results/*.json the benches wrote: a Markdown table
// (bench/results/report.md) and a chart of throughput against customers
// (bench/results/throughput.svg, hand-rolled SVG: no network, no dependencies).
//
//   npm run bench:report      (npm run bench runs every bench, then this)
//
// Every figure is shown with its raw baseline from the same run and the ratio, and with the
// machine's load average where the bench recorded it.

import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { RESULTS_DIR, formatNumber, formatPercent } from './support.js';

type Json = unknown;

/** `get(x, 'a', 'b')` = x.a.b, or undefined. */
function get(value: Json, ...keys: (string | number)[]): Json {
  let at: Json = value;
  for (const key of keys) {
    if (typeof at !== 'object' || at === null) return undefined;
    at = (at as Record<string | number, Json>)[key];
  }
  return at;
}
function num(value: Json): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}
function n(value: Json, digits = 0): string {
  const v = num(value);
  return v === undefined ? '–' : formatNumber(v, digits);
}
function pct(value: Json): string {
  const v = num(value);
  return v === undefined ? '–' : formatPercent(v);
}
function ratio(a: Json, b: Json): string {
  const x = num(a);
  const y = num(b);
  return x === undefined || y === undefined || y === 0 ? '–' : formatPercent(x / y);
}

export function readResult(name: string): Json {
  const file = path.join(RESULTS_DIR, `${name}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Json) : undefined;
}

/** Load average recorded by `bench` (bench/all.ts) around each bench, else by the bench itself. */
function loadOf(name: string, own: Json): string {
  const runner = get(readResult('bench-run'), 'benches', name, 'loadAverage');
  const v = num(get(runner, 'after', 0)) ?? num(get(own, 0)) ?? num(own);
  const before = num(get(runner, 'before', 0));
  if (v === undefined) return '–';
  return before === undefined ? v.toFixed(1) : `${before.toFixed(1)} → ${v.toFixed(1)}`;
}

function row(cells: readonly string[]): string {
  return `| ${cells.join(' | ')} |`;
}
function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  return [row(headers), row(headers.map(() => '---')), ...rows.map(row)];
}

interface Cell {
  readonly partitions: number;
  readonly customers: number;
  readonly events: number;
  readonly rawEventsPerSec: number;
  readonly rawKvEventsPerSec: number;
  readonly workerEventsPerSec: number;
  readonly ratioToRaw: number;
  readonly ratioToRawKv: number;
  readonly bytesPerCustomer: number;
  readonly loadAverage: number;
  readonly stalledRounds?: number;
  readonly restarts?: number;
}

function cellsOf(matrix: Json): Cell[] {
  const cells = get(matrix, 'cells');
  return Array.isArray(cells) ? (cells as Cell[]) : [];
}

export function matrixTable(matrix: Json): string[] {
  const cells = cellsOf(matrix);
  if (cells.length === 0) return ['_No matrix results (run `npm run bench:matrix`)._'];
  return table(
    [
      'partitions',
      'customers',
      'events',
      'raw consume+ack /s',
      'raw + KV put per customer /s',
      'worker /s',
      'worker / raw',
      'worker / raw+KV',
      'heap bytes per resident customer',
      'load avg',
      'stalled rounds',
      'partition restarts',
    ],
    cells.map((c) => [
      String(c.partitions),
      formatNumber(c.customers),
      formatNumber(c.events),
      formatNumber(c.rawEventsPerSec),
      formatNumber(c.rawKvEventsPerSec),
      formatNumber(c.workerEventsPerSec),
      formatPercent(c.ratioToRaw),
      formatPercent(c.ratioToRawKv),
      formatNumber(c.bytesPerCustomer),
      c.loadAverage.toFixed(1),
      String(c.stalledRounds ?? 0),
      c.restarts === undefined ? '–' : String(c.restarts),
    ]),
  );
}

export function benchTable(): string[] {
  const rows: string[][] = [];
  const publish = readResult('publish');
  if (publish !== undefined) {
    rows.push([
      '`bench:publish`',
      'OrderPublisher, pipelined',
      `${n(get(publish, 'sdk', 'medianMsgsPerSec'))} events/s`,
      `raw \`js.publish\` ${n(get(publish, 'raw', 'medianMsgsPerSec'))}/s`,
      pct(get(publish, 'ratio', 'median')),
      '≥ 90 %',
      loadOf('publish', get(publish, 'environment', 'loadAverage', 'after')),
    ]);
  }
  const worker = readResult('worker');
  if (worker !== undefined) {
    rows.push([
      '`bench:worker`',
      `worker end to end, ${n(get(worker, 'environment', 'events'))} events over ${n(get(worker, 'environment', 'customers'))} customers`,
      `${n(get(worker, 'throughput', 'workerEventsPerSec'))} events/s`,
      `consume + ack ${n(get(worker, 'throughput', 'rawEventsPerSec'))}/s`,
      pct(get(worker, 'throughput', 'ratio')),
      '≥ 80 %',
      loadOf('worker', get(worker, 'environment', 'loadAverage')),
    ]);
    rows.push([
      '`bench:worker`',
      'replay after SIGKILL',
      `${n(get(worker, 'replay', 'eventsPerSec'))} events/s`,
      `consume + ack ${n(get(worker, 'throughput', 'rawEventsPerSec'))}/s`,
      ratio(get(worker, 'replay', 'eventsPerSec'), get(worker, 'throughput', 'rawEventsPerSec')),
      '≥ 50 % of raw read',
      loadOf('worker', get(worker, 'environment', 'loadAverage')),
    ]);
  }
  const fleet = readResult('fleet');
  if (fleet !== undefined) {
    const s = get(fleet, 'graceful', 'summary');
    rows.push([
      '`bench:fleet`',
      `SIGTERM of a worker holding ${n(get(fleet, 'settings', 'customers'))} customers → its partitions serving elsewhere`,
      `p50 ${n(get(s, 'handoffMs', 'p50'))} ms, p99 ${n(get(s, 'handoffMs', 'p99'))} ms`,
      `recreate consumers ${n(get(s, 'rawMoveMs', 'p50'))} ms; read the crash path ${n(get(s, 'rawTimerIndexMs', 'p50'))} ms`,
      ratio(get(s, 'handoffMs', 'p99'), get(s, 'rawMoveMs', 'p50')),
      'p99 < 1 s',
      loadOf('fleet', get(fleet, 'loadAverage')),
    ]);
    const c = get(fleet, 'crash', 'summary');
    rows.push([
      '`bench:fleet`',
      'SIGKILL → caught up on the survivor',
      `p50 ${n(get(c, 'totalMs', 'p50'))} ms (replay ${n(get(c, 'replayMs', 'p50'))} ms)`,
      `read the same ranges ${n(get(c, 'rawConsumeMs', 'p50'))} ms`,
      ratio(get(c, 'rawConsumeMs', 'p50'), get(c, 'replayMs', 'p50')),
      'replay ≥ 50 % of raw read',
      loadOf('fleet', get(fleet, 'loadAverage')),
    ]);
  }
  const timers = readResult('timers');
  if (timers !== undefined) {
    const d = get(timers, 'delay');
    rows.push([
      '`bench:timers`',
      `${n(get(d, 'windows'))} windows closing at once`,
      `deadline → summary p50 ${n(get(d, 'deadlineToSummaryMs', 'p50'))} ms, p99 ${n(get(d, 'deadlineToSummaryMs', 'p99'))} ms; ${n(get(d, 'closingPerSecond'))} windows/s`,
      get(timers, 'rawPublishPerSecond') === undefined
        ? '–'
        : `pipelined \`js.publish\` ${n(get(timers, 'rawPublishPerSecond'))}/s`,
      get(timers, 'rawPublishPerSecond') === undefined
        ? '–'
        : ratio(get(d, 'closingPerSecond'), get(timers, 'rawPublishPerSecond')),
      '≥ 50 % of raw publish rate',
      loadOf('timers', get(timers, 'loadAverage')),
    ]);
    const t = get(timers, 'throughput');
    rows.push([
      '`bench:timers`',
      'throughput, windows closing vs idle',
      `${n(get(t, 'timersFiring', 'eventsPerSecond'))} vs ${n(get(t, 'timersIdle', 'eventsPerSecond'))} events/s`,
      `consume + ack ${n(get(t, 'raw', 'eventsPerSecond'))}/s`,
      `${ratio(get(t, 'timersFiring', 'eventsPerSecond'), get(t, 'raw', 'eventsPerSecond'))} / ${ratio(get(t, 'timersIdle', 'eventsPerSecond'), get(t, 'raw', 'eventsPerSecond'))}`,
      '–',
      loadOf('timers', get(timers, 'loadAverage')),
    ]);
  }
  if (rows.length === 0) return ['_No bench results yet._'];
  return table(
    ['bench', 'what', 'figure', 'raw baseline, same run', 'ratio', 'goal', 'load avg'],
    rows,
  );
}

// ---------------------------------------------------------------------------------------------
// chart
// ---------------------------------------------------------------------------------------------

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];

function escapeXml(text: string): string {
  return text.replace(/&/gu, '&amp;').replace(/</gu, '&lt;').replace(/>/gu, '&gt;');
}

/** Throughput (events/s, linear) against customers (log scale): worker, raw, raw+KV per P. */
export function throughputSvg(matrix: Json): string {
  const cells = cellsOf(matrix);
  const width = 760;
  const height = 420;
  const m = { left: 70, right: 200, top: 40, bottom: 50 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const customers = [...new Set(cells.map((c) => c.customers))].sort((a, b) => a - b);
  const partitions = [...new Set(cells.map((c) => c.partitions))].sort((a, b) => a - b);
  const maxY = Math.max(
    1,
    ...cells.flatMap((c) => [c.rawEventsPerSec, c.rawKvEventsPerSec, c.workerEventsPerSec]),
  );
  const niceMax =
    10 ** Math.floor(Math.log10(maxY)) * Math.ceil(maxY / 10 ** Math.floor(Math.log10(maxY)));
  const lo = Math.log10(customers[0] ?? 1);
  const hi = Math.log10(customers[customers.length - 1] ?? 10);
  const x = (c: number): number =>
    m.left + (hi === lo ? plotW / 2 : ((Math.log10(c) - lo) / (hi - lo)) * plotW);
  const y = (v: number): number => m.top + plotH - (v / niceMax) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${m.left}" y="22" font-size="15" font-weight="bold">Throughput against customers (events/s)</text>`,
    `<text x="${m.left}" y="36" fill="#555">solid: worker · dashed: raw consume + ack · dotted: raw + one KV put per customer</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = (niceMax / 5) * i;
    out.push(
      `<line x1="${m.left}" x2="${m.left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`,
      `<text x="${m.left - 8}" y="${y(v) + 4}" text-anchor="end">${escapeXml(formatNumber(v))}</text>`,
    );
  }
  for (const c of customers) {
    out.push(
      `<line x1="${x(c)}" x2="${x(c)}" y1="${m.top}" y2="${m.top + plotH}" stroke="#f0f0f0"/>`,
      `<text x="${x(c)}" y="${m.top + plotH + 18}" text-anchor="middle">${escapeXml(formatNumber(c))}</text>`,
    );
  }
  out.push(
    `<text x="${m.left + plotW / 2}" y="${height - 10}" text-anchor="middle">customers (log scale)</text>`,
    `<rect x="${m.left}" y="${m.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`,
  );
  partitions.forEach((p, i) => {
    const color = COLORS[i % COLORS.length] ?? '#000';
    const series = cells
      .filter((c) => c.partitions === p)
      .sort((a, b) => a.customers - b.customers);
    const line = (f: (c: Cell) => number, dash: string): void => {
      const points = series.map((c) => `${x(c.customers).toFixed(1)},${y(f(c)).toFixed(1)}`);
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="${dash === '' ? 2.5 : 1.5}"${dash === '' ? '' : ` stroke-dasharray="${dash}"`} points="${points.join(' ')}"/>`,
      );
      if (dash === '') {
        for (const c of series) {
          out.push(
            `<circle cx="${x(c.customers).toFixed(1)}" cy="${y(f(c)).toFixed(1)}" r="3.5" fill="${color}"/>`,
          );
        }
      }
    };
    line((c) => c.workerEventsPerSec, '');
    line((c) => c.rawEventsPerSec, '6 4');
    line((c) => c.rawKvEventsPerSec, '2 3');
    const ly = m.top + 10 + i * 40;
    out.push(
      `<line x1="${m.left + plotW + 15}" x2="${m.left + plotW + 45}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2.5"/>`,
      `<text x="${m.left + plotW + 52}" y="${ly + 4}">${p} partitions</text>`,
    );
  });
  const load = cells.map((c) => c.loadAverage);
  if (load.length > 0) {
    out.push(
      `<text x="${m.left + plotW + 15}" y="${m.top + plotH}" fill="#555">load avg ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)}</text>`,
    );
  }
  out.push('</svg>', '');
  return out.join('\n');
}

export function reportMarkdown(): string {
  const matrix = readResult('matrix');
  const at = get(matrix, 'at');
  const env = get(matrix, 'environment');
  const lines = [
    '# Benchmark report',
    '',
    `Generated by \`npm run bench:report\` from bench/results/*.json. Every figure is compared with a raw`,
    `JetStream baseline measured in the same run (medians of the rounds); machine load (1-minute`,
    `load average) is recorded next to each figure.`,
    '',
    '## Scale matrix (`bench:matrix`)',
    '',
    typeof at === 'string'
      ? `Run ${at}: ${n(get(env, 'rounds'))} rounds per cell, nats-server ${String(get(env, 'natsServer'))}, node ${String(get(env, 'node'))}, ${n(get(env, 'cpus'))} CPUs; every customer ends with a ${n(get(env, 'itemsPerCustomer'))}-item order.`
      : '',
    '',
    ...matrixTable(matrix),
    '',
    '![throughput against customers](throughput.svg)',
    '',
    ...(readResult('matrix-before') === undefined
      ? []
      : [
          'The same cells measured on the code before this change (`--name matrix-before`):',
          '',
          ...matrixTable(readResult('matrix-before')),
        ]),
    '',
    '## Other benches',
    '',
    ...benchTable(),
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const md = reportMarkdown();
  await writeFile(path.join(RESULTS_DIR, 'report.md'), md);
  await writeFile(path.join(RESULTS_DIR, 'throughput.svg'), throughputSvg(readResult('matrix')));
  process.stdout.write(md);
  process.stdout.write(`\nwrote ${path.join(RESULTS_DIR, 'report.md')} and throughput.svg\n`);
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  await main();
}
