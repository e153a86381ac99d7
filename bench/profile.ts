// Summarises a V8 CPU profile (node --cpu-prof; `npm run bench:matrix -- --cpu-prof DIR` writes
// one per worker process): self time by category and the top functions, as a share of the
// profile and in microseconds per event when `--events N` is given.
//
//   npx tsx bench/profile.ts DIR/CPU.*.cpuprofile [--events 100000] [--top 30]

import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly children?: readonly number[];
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

const { values, positionals } = parseArgs({
  options: { events: { type: 'string' }, top: { type: 'string', default: '30' } },
  allowPositionals: true,
});
const file = positionals[0];
if (file === undefined) throw new Error('usage: tsx bench/profile.ts FILE.cpuprofile');
const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
const events = values.events === undefined ? undefined : Number(values.events);

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map<number, number>();
profile.samples.forEach((id, i) =>
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)),
);
const total = [...self.values()].reduce((a, b) => a + b, 0);

function where(n: ProfileNode): string {
  const url = n.callFrame.url.replace(/^file:\/\//u, '').replace(/^.*node_modules\//u, 'npm:');
  return url.replace(/^.*\/(dist|src)\//u, '$1/');
}

/** The first frame up the stack that names a category, else the frame's own. */
function category(id: number): string {
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const n = byId.get(at);
    if (n === undefined) break;
    const { functionName, url } = n.callFrame;
    if (functionName === '(garbage collector)') return 'garbage collection';
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(program)') return 'program (native, unattributed)';
    if (url.includes('/zod/')) return 'zod';
    if (functionName === 'parse' && url === '') return 'JSON.parse';
    if (functionName === 'stringify' && url === '') return 'JSON.stringify';
    if (url.includes('@nats-io/kv')) return 'nats kv client';
    if (url.includes('@nats-io/jetstream')) return 'nats jetstream client';
    if (url.includes('@nats-io/')) return 'nats core client (protocol, sockets)';
    if (url.includes('pino') || url.includes('sonic-boom')) return 'logging';
    if (url.includes('lru-cache')) return 'lru-cache';
    if (url.includes('/orders/')) return 'aggregator and decoder (src/orders)';
    if (url.includes('/contract/')) return 'contract (validation, subjects)';
    if (url.includes('/state/')) return 'state stores (src/state)';
    if (url.includes('/fleet/')) return 'partition runner and fleet (src/fleet)';
    if (url.startsWith('node:')) return 'node core';
  }
  return 'other';
}

const categories = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, t] of self) {
  const n = byId.get(id);
  if (n === undefined) continue;
  const cat = category(id);
  categories.set(cat, (categories.get(cat) ?? 0) + t);
  const name = `${n.callFrame.functionName || '(anonymous)'} ${where(n)}:${n.callFrame.lineNumber + 1}`;
  functions.set(name, (functions.get(name) ?? 0) + t);
}

const busy = total - (categories.get('idle') ?? 0);
const line = (name: string, t: number): string =>
  `${((t / total) * 100).toFixed(1).padStart(5)} %  ${((t / busy) * 100).toFixed(1).padStart(5)} % of busy` +
  `${events === undefined ? '' : `  ${(t / events).toFixed(2).padStart(6)} µs/event`}  ${name}`;

process.stdout.write(
  `${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy` +
    `${events === undefined ? '' : `, ${(busy / events).toFixed(2)} µs busy per event`}\n\nby category:\n`,
);
for (const [name, t] of [...categories].sort((a, b) => b[1] - a[1])) {
  process.stdout.write(`${line(name, t)}\n`);
}
process.stdout.write(`\ntop functions (self time):\n`);
for (const [name, t] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
  process.stdout.write(`${line(name, t)}\n`);
}
