// What the web console costs the servers it watches. The measure is the one that made the cost
// visible (see the notes on 2.9.10): a worker's catch-up of a pre-published backlog, on a
// nats-server this script starts (never the shared one), with a real worker process. Scenarios,
// each on a fresh deployment, in one run:
//
//   baseline   nothing watches the fleet;
//   console    `order-fleet console` with BENCH_SESSIONS browser sessions (SSE streams) open,
//              default settings (consumer info every 15 s);
//   naive      a watcher that polls the 32 partitions' consumer info ten times a second (what
//              a status page that polls `order-fleet status` would do) — for contrast.
//
//   npm run bench:console   (BENCH_EVENTS=100000, BENCH_CUSTOMERS=1000, BENCH_PARTITIONS=32,
//                            BENCH_SESSIONS=10, BENCH_ROUNDS=1)

import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  provision,
  spawnWorker,
  waitReady,
  type LogLine,
  type TestDeployment,
  type WorkerProcess,
} from '../test/support/fleet.js';
import { startConsole, type ConsoleProcess } from '../test/support/console.js';
import { generateLoad, publishAll } from '../test/support/model.js';
import { startNatsServer } from '../test/support/nats-server.js';
import {
  envInt,
  formatNumber,
  formatPercent,
  printTable,
  summarize,
  writeResults,
  benchTimerLayout,
} from './support.js';

const EVENTS = envInt('BENCH_EVENTS', 100_000);
const CUSTOMERS = envInt('BENCH_CUSTOMERS', 1_000);
const PARTITIONS = envInt('BENCH_PARTITIONS', 32);
const SESSIONS = envInt('BENCH_SESSIONS', 10);
const ROUNDS = envInt('BENCH_ROUNDS', 1);
const NO_SUMMARY_TIMERS = { SUMMARY_QUIET_MS: '3600000', SUMMARY_MAX_MS: '3600000' };

type Scenario = 'baseline' | 'console' | 'naive';

const at = (line: LogLine): number => Date.parse(String(line['time']));

/** Opens `n` SSE sessions; returns how many snapshots they received, and a stop function. */
function openSessions(url: string, n: number): { frames: () => number; stop: () => Promise<void> } {
  const ac = new AbortController();
  let frames = 0;
  const readers = Array.from({ length: n }, async () => {
    try {
      const res = await fetch(`${url}/events`, { signal: ac.signal });
      const decoder = new TextDecoder();
      for await (const chunk of res.body ?? []) {
        frames += (decoder.decode(chunk as Uint8Array).match(/event: snapshot/gu) ?? []).length;
      }
    } catch (err) {
      if (!ac.signal.aborted) throw err;
    }
  });
  return {
    frames: () => frames,
    stop: async () => {
      ac.abort();
      await Promise.all(readers);
    },
  };
}

/** Polls every partition's consumer info ten times a second until stopped. */
function naivePoller(d: TestDeployment): { polls: () => number; stop: () => Promise<void> } {
  let stopped = false;
  let polls = 0;
  const loop = (async () => {
    const jsm = await jetstreamManager(d.nc);
    while (!stopped) {
      const began = Date.now();
      await Promise.all(
        Array.from({ length: PARTITIONS }, (_, p) =>
          jsm.consumers.info(d.names.ordersStream, `partition-${p}`).then(
            () => polls++,
            // Before the worker created it: nothing to count yet.
            () => undefined,
          ),
        ),
      );
      await sleep(Math.max(0, 100 - (Date.now() - began)));
    }
  })();
  return {
    polls: () => polls,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

async function run(
  url: string,
  scenario: Scenario,
): Promise<{ catchUpMs: number; frames: number; polls: number }> {
  const d = await provision(url, {
    timerLayout: benchTimerLayout(),
    partitions: PARTITIONS,
    isolate: true,
    leaseTtlMs: 8000,
    env: NO_SUMMARY_TIMERS,
  });
  let worker: WorkerProcess | undefined;
  let consoleProc: ConsoleProcess | undefined;
  let sessions: ReturnType<typeof openSessions> | undefined;
  let poller: ReturnType<typeof naivePoller> | undefined;
  try {
    await publishAll(d, generateLoad(CUSTOMERS, EVENTS, 7, 'bench'), { maxInFlight: 1024 });
    if (scenario === 'console') {
      consoleProc = await startConsole(d);
      sessions = openSessions(consoleProc.url, SESSIONS);
      await sleep(1000); // sessions connected, first polls done
    }
    if (scenario === 'naive') poller = naivePoller(d);
    worker = spawnWorker(d, `bench-${scenario}`);
    const ready = await waitReady(worker, 600_000);
    const first = Math.min(
      ...worker
        .logs()
        .filter((l) => l.msg === 'partition starting')
        .map(at),
    );
    return {
      catchUpMs: at(ready) - first,
      frames: sessions?.frames() ?? 0,
      polls: poller?.polls() ?? 0,
    };
  } finally {
    await poller?.stop();
    await sessions?.stop();
    await consoleProc?.stop();
    await worker?.stop('SIGKILL');
    await d.close();
  }
}

async function main(): Promise<void> {
  const server = await startNatsServer();
  const results: Record<Scenario, number[]> = { baseline: [], console: [], naive: [] };
  const extra: Record<string, number> = { frames: 0, polls: 0 };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const scenario of ['baseline', 'console', 'naive'] as const) {
        const r = await run(server.url, scenario);
        results[scenario].push(r.catchUpMs);
        extra['frames'] = (extra['frames'] ?? 0) + r.frames;
        extra['polls'] = (extra['polls'] ?? 0) + r.polls;
        process.stderr.write(`round ${round + 1} ${scenario}: ${r.catchUpMs} ms\n`);
      }
    }
  } finally {
    await server.cleanup();
  }
  const base = summarize(results.baseline).median;
  const rows = (['baseline', 'console', 'naive'] as const).map((s) => {
    const m = summarize(results[s]).median;
    return [
      s === 'console'
        ? `console, ${SESSIONS} sessions`
        : s === 'naive'
          ? 'consumer info 10/s'
          : 'nothing watching',
      formatNumber(m),
      formatPercent(m / base),
    ];
  });
  process.stdout.write(
    `worker catch-up of ${formatNumber(EVENTS)} events, ${PARTITIONS} partitions (median of ${ROUNDS})\n`,
  );
  printTable(['watcher', 'catch-up ms', 'vs baseline'], rows);
  process.stdout.write(
    `console sessions received ${formatNumber(extra['frames'] ?? 0)} snapshots; the naive watcher made ${formatNumber(extra['polls'] ?? 0)} consumer-info calls\n`,
  );
  await writeResults('console', {
    events: EVENTS,
    partitions: PARTITIONS,
    sessions: SESSIONS,
    results,
    ...extra,
  });
}

await main();
