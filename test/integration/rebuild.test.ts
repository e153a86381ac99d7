// `order-fleet rebuild` with real servers, worker processes, a notifier and the CLI:
// - the state bucket deleted under a running fleet, `setup`, `rebuild`: every customer equals
//   the model and the notifier delivered no summary twice;
// - a customer's snapshot changed in KV behind the fleet's back, `rebuild --partition`: fixed;
// - a stream whose head was removed: `rebuild` refuses with the documented message and changes
//   nothing.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../src/contract/partition.js';
import { customerKey } from '../../src/state/keys.js';
import {
  CLI,
  REPO_ROOT,
  eventually,
  readStoredStates,
  runCli,
  spawnWorker,
  waitReady,
  type TestDeployment,
} from '../support/fleet.js';
import { settled, startFleetScenario, useTeardown } from '../support/fleet-scenarios.js';
import { diffStates, generateLoad, modelFromPublished, publishAll } from '../support/model.js';
import { indexedTimers, readNotifications } from '../support/summaries.js';

const teardown = useTeardown();
const LEASE_TTL_MS = 2000;
/** What provision() set up: `setup` run from the CLI must not change it. */
const SETUP_ENV = {
  ORDERS_MAX_AGE_MS: '0',
  ORDERS_DUPLICATE_WINDOW_MS: '120000',
  LEASE_TTL_MS: String(LEASE_TTL_MS),
  NOTIFICATIONS_DUPLICATE_WINDOW_MS: '3600000',
  NOTIFICATIONS_MAX_AGE_MS: '0',
};
const SUMMARIES = { SUMMARY_QUIET_MS: '300', SUMMARY_MAX_MS: '60000', TIMER_TICK_MS: '50' };

async function fleet(workers: number) {
  // The index layout: a rebuild must also clear the timer index it does not recreate (the state
  // layout keeps none, and is otherwise the same replay).
  const scenario = await startFleetScenario(teardown, {
    partitions: 4,
    leaseTtlMs: LEASE_TTL_MS,
    timerLayout: 'index',
  });
  const ws = Array.from({ length: workers }, (_, i) => {
    const w = spawnWorker(scenario.dep, `rebuild-w${i + 1}`, SUMMARIES);
    scenario.workers.push(w);
    return w;
  });
  await Promise.all(ws.map((w) => waitReady(w)));
  return { ...scenario, ws };
}

function startNotifier(dep: TestDeployment, file: string): void {
  const child = spawn(process.execPath, [CLI, 'notifier', '--sink', 'file', '--file', file], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...dep.env },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  teardown.push(async () => {
    child.kill('SIGKILL');
    await exited;
  });
}

function delivered(file: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!existsSync(file)) return out;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const { summaryId } = JSON.parse(line) as { summaryId: string };
    out.set(summaryId, (out.get(summaryId) ?? 0) + 1);
  }
  return out;
}

async function publishLoad(dep: TestDeployment, seed: number) {
  const events = generateLoad(12, 300, seed, `rb${seed}`);
  const results = await publishAll(dep, events, { maxInFlight: 64 });
  return { events, results };
}

async function rebuild(dep: TestDeployment, args: readonly string[] = []) {
  const r = await runCli(dep, ['rebuild', '--yes', '--json', ...args], SUMMARIES);
  if (r.code !== 0) throw new Error(`rebuild exited ${r.code}: ${r.stderr}\n${r.stdout}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { event: string });
}

describe('order-fleet rebuild', () => {
  it('restores every customer after the state bucket is deleted, with no summary delivered twice', async () => {
    const { dep, ws, step } = await fleet(2);
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'rebuild-')), 'summaries.jsonl');
    startNotifier(dep, file);
    const first = await publishLoad(dep, 1);
    await settled(
      dep,
      ws.map((w) => w.id),
    );
    // Every window closed and delivered before the bucket goes.
    await eventually(async () => {
      const view = await readNotifications(dep);
      const sent = delivered(file);
      return view.summaries.length > 0 && view.summaries.every((s) => sent.has(s.summaryId))
        ? true
        : undefined;
    }, 60_000);
    step('summaries delivered');

    const jsm = await jetstreamManager(dep.nc);
    await jsm.streams.delete(`KV_${dep.names.stateBucket}`);
    step('state bucket deleted');
    const setup = await runCli(dep, ['setup', '--json'], SETUP_ENV);
    expect(setup.code, setup.stderr).toBe(0);
    expect(
      (JSON.parse(setup.stdout) as { resources: { name: string; action: string }[] }).resources
        .filter((r) => r.action !== 'unchanged')
        .map((r) => [r.name, r.action]),
    ).toEqual([[dep.names.stateBucket, 'created']]);
    const second = await publishLoad(dep, 2);

    const lines = await rebuild(dep);
    expect(lines.at(-1)?.event).toBe('done');
    step('rebuilt');
    const model = modelFromPublished(
      [...first.events, ...second.events],
      [...first.results, ...second.results],
    );
    await eventually(async () =>
      diffStates(model.expected(), await readStoredStates(dep)).length === 0 ? true : undefined,
    ).catch(async (err: unknown) => {
      throw new Error(
        `${String(err)}: ${diffStates(model.expected(), await readStoredStates(dep))
          .slice(0, 5)
          .join('; ')}`,
      );
    });
    await settled(
      dep,
      ws.map((w) => w.id),
    );
    // Summaries of the second load close as usual; none is stored or delivered twice.
    await eventually(async () => {
      const view = await readNotifications(dep);
      const sent = delivered(file);
      return view.summaries.every((s) => sent.has(s.summaryId)) ? true : undefined;
    }, 60_000);
    const view = await readNotifications(dep);
    expect([...view.copies].filter(([, n]) => n !== 1)).toEqual([]);
    expect([...delivered(file)].filter(([, n]) => n !== 1)).toEqual([]);
    // The rebuilt timer index lists only open windows (all closed by now, after the quiet period).
    const state = await new Kvm(dep.nc).open(dep.names.stateBucket);
    await eventually(async () => {
      const keys: string[] = [];
      for await (const k of await state.keys('t.>')) keys.push(k);
      return keys.length === 0 ? true : undefined;
    });
    // Running it again is safe: a new generation, the same state.
    expect((await rebuild(dep)).at(-1)?.event).toBe('done');
    await eventually(async () =>
      diffStates(model.expected(), await readStoredStates(dep)).length === 0 ? true : undefined,
    );
    expect([...(await readNotifications(dep)).copies].filter(([, n]) => n !== 1)).toEqual([]);
  });

  it('fixes a snapshot changed behind the fleet’s back, rebuilding only its partition', async () => {
    const { dep, ws } = await fleet(1);
    const load = await publishLoad(dep, 3);
    await settled(
      dep,
      ws.map((w) => w.id),
    );
    const model = modelFromPublished(load.events, load.results);
    const [victim] = [...model.expected().keys()];
    if (victim === undefined) throw new Error('no customer');
    const p = partitionOf(victim, dep.partitions);
    const state = await new Kvm(dep.nc).open(dep.names.stateBucket);
    const entry = await state.get(customerKey(p, victim));
    const stored = entry?.json<{ state: { items: number[] } }>();
    if (stored === undefined) throw new Error('no stored state');
    await state.put(
      customerKey(p, victim),
      JSON.stringify({ ...stored, state: { ...stored.state, items: [424242] } }),
    );
    expect(diffStates(model.expected(), await readStoredStates(dep))).not.toEqual([]);

    const meta = await new Kvm(dep.nc).open(dep.names.metaBucket);
    const epochs = async (): Promise<number[]> =>
      Promise.all(
        Array.from({ length: dep.partitions }, async (_, q) =>
          Number((await meta.get(`wm.${q}`))?.json<{ epoch: number }>().epoch ?? 0),
        ),
      );
    const before = await epochs();
    expect((await rebuild(dep, ['--partition', String(p)])).at(-1)?.event).toBe('done');
    await eventually(async () =>
      diffStates(model.expected(), await readStoredStates(dep)).length === 0 ? true : undefined,
    );
    // Only that partition was restarted (a new epoch: fenced like any takeover).
    const after = await epochs();
    expect(after.map((e, q) => (q === p ? e > (before[q] ?? 0) : e === before[q]))).toEqual(
      after.map(() => true),
    );
  });

  it('refuses when retention removed the head of the stream, and changes nothing', async () => {
    const { dep, ws } = await fleet(1);
    const load = await publishLoad(dep, 4);
    await settled(
      dep,
      ws.map((w) => w.id),
    );
    // Quiet first: a summary window still open would close meanwhile (its timer entry moves the
    // customer's lastSeq), and "changes nothing" could not be told from that.
    await eventually(async () => ((await indexedTimers(dep)).size === 0 ? true : undefined));
    await settled(
      dep,
      ws.map((w) => w.id),
    );
    const jsm = await jetstreamManager(dep.nc);
    // Retention drops the head (the stream refuses purges): keep all but the first 19 entries.
    const info = await jsm.streams.info(dep.names.ordersStream);
    await jsm.streams.update(dep.names.ordersStream, {
      max_msgs: info.state.messages - 19,
    });
    const statesBefore = await readStoredStates(dep);
    const meta = await new Kvm(dep.nc).open(dep.names.metaBucket);
    const r = await runCli(dep, ['rebuild', '--yes']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no longer holds the whole history');
    expect(r.stderr).toContain('nothing was changed');
    const rebuildKeys: string[] = [];
    for await (const k of await meta.keys('rebuild.>')) rebuildKeys.push(k);
    expect(rebuildKeys).toEqual([]);
    expect(await readStoredStates(dep)).toEqual(statesBefore);
    expect(load.results.length).toBeGreaterThan(20);
  });
});
