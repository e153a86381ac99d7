// `npm run demo`: the original article's story on an embedded server, with no infrastructure.
// John and Karan order, three workers share the partitions, John's owner is stopped with SIGTERM
// (handoff: nothing lost, nothing replayed), then the new owner is killed with SIGKILL (crash:
// replay from the watermark recovers what was only in memory). Exits 0 only if every check held.

import { startNatsServer, type NatsServerHandle } from '../test/support/nats-server.js';
import {
  eventually,
  provision,
  runCli,
  spawnWorker,
  waitReady,
  type TestDeployment,
  type WorkerProcess,
} from '../test/support/fleet.js';
import { describeError } from '../src/errors.js';

const say = (text: string): void => {
  process.stdout.write(`${text}\n`);
};
const step = (n: number, text: string): void => say(`\n[${n}] ${text}`);

let failures = 0;
function check(ok: boolean, what: string): void {
  if (!ok) failures++;
  say(`    ${ok ? 'ok  ' : 'FAIL'} ${what}`);
}

interface Contents {
  customerId: string;
  items: number[];
  stale: boolean;
  owner?: string;
}

async function contents(dep: TestDeployment, customerId: string): Promise<Contents> {
  const result = await runCli(dep, ['contents', customerId, '--json']);
  if (result.code !== 0) throw new Error(`contents ${customerId} failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as Contents;
}

async function publish(dep: TestDeployment, ...args: string[]): Promise<void> {
  const result = await runCli(dep, ['publish', ...args]);
  if (result.code !== 0) throw new Error(`publish ${args.join(' ')} failed: ${result.stderr}`);
  say(`    publish ${args.join(' ').padEnd(28)} → ${result.stdout.trim()}`);
}

async function main(): Promise<void> {
  let server: NatsServerHandle | undefined;
  const workers: WorkerProcess[] = [];
  let dep: TestDeployment | undefined;
  try {
    step(1, 'NATS');
    let url = process.env['NATS_URL'];
    if (url === undefined || url === '') {
      try {
        server = await startNatsServer();
      } catch (err) {
        say(
          '    No NATS_URL and no nats-server binary found. Install one (Debian: apt-get install nats-server)',
        );
        say('    or set NATS_URL to a server with JetStream enabled.');
        throw err;
      }
      url = server.url;
      say(`    started nats-server ${server.version} on ${url} with a temporary store`);
    } else {
      say(`    using NATS_URL=${url} (resources under a unique namespace)`);
    }

    step(2, 'setup: ORDERS stream, dead-letter stream, KV buckets, 8 partitions');
    // Checkpoints are rare here on purpose, so that the crash in step 6 has something to replay.
    const d = await provision(url, {
      partitions: 8,
      leaseTtlMs: 3000,
      env: {
        LOG_LEVEL: 'info',
        CHECKPOINT_INTERVAL_MS: '600000',
        CHECKPOINT_IDLE_MS: '0',
        CHECKPOINT_EVERY_EVENTS: '100000',
      },
    });
    dep = d;
    say(
      `    partitions ${d.partitions}, lease TTL 3 s${d.namespace === '' ? '' : `, namespace ${d.namespace}`}`,
    );

    step(3, 'three workers join the fleet');
    for (const id of ['worker-a', 'worker-b', 'worker-c']) {
      const w = spawnWorker(d, id);
      workers.push(w);
      await waitReady(w);
    }
    await eventually(async () => {
      const status = await runCli(d, ['status', '--json']);
      const parsed = JSON.parse(status.stdout) as {
        members: { id: string; partitions: number[] }[];
      };
      return parsed.members.length === 3 && parsed.members.every((m) => m.partitions.length > 0)
        ? parsed
        : undefined;
    });
    const status = await runCli(d, ['status']);
    say(
      status.stdout
        .split('\n')
        .slice(0, 5)
        .map((l) => `    ${l}`)
        .join('\n'),
    );

    step(4, "the article's orders");
    await publish(d, 'John', 'order.created');
    await publish(d, 'Karan', 'order.created');
    await publish(d, 'Karan', 'items.added', '2', '3');
    await publish(d, 'John', 'items.added', '1', '2');
    const john = await eventually(async () => {
      const c = await contents(d, 'John');
      return c.items.length === 2 ? c : undefined;
    });
    const karan = await contents(d, 'Karan');
    say(`    contents John  = [${john.items.join(', ')}] answered by ${john.owner ?? '?'}`);
    say(`    contents Karan = [${karan.items.join(', ')}] answered by ${karan.owner ?? '?'}`);
    check(
      JSON.stringify(john.items) === '[1,2]' && !john.stale,
      'John has [1, 2], answered by his owner',
    );
    check(
      JSON.stringify(karan.items) === '[2,3]' && !karan.stale,
      'Karan has [2, 3], answered by his owner',
    );

    step(5, `SIGTERM ${john.owner ?? '?'} (John's owner): graceful handoff`);
    const first = workers.find((w) => w.id === john.owner);
    if (first === undefined) throw new Error('no owner for John');
    const exit = await first.stop('SIGTERM');
    say(`    ${first.id} exited with code ${String(exit.code)}`);
    check(exit.code === 0, 'the stopped worker exited 0 after its final checkpoint');
    const moved = await eventually(async () => {
      const c = await contents(d, 'John');
      return !c.stale && c.owner !== first.id ? c : undefined;
    });
    say(`    contents John  = [${moved.items.join(', ')}] now answered by ${moved.owner ?? '?'}`);
    check(JSON.stringify(moved.items) === '[1,2]', "John's contents survived the handoff");
    const newOwner = workers.find((w) => w.id === moved.owner);
    const handoffReplays = newOwner
      ?.logs()
      .filter((l) => l.msg === 'partition caught up')
      .reduce((n, l) => n + (typeof l['replayed'] === 'number' ? l['replayed'] : 0), 0);
    check(
      handoffReplays === 0,
      `the new owner replayed ${String(handoffReplays)} events for the handoff`,
    );

    step(6, `SIGKILL ${moved.owner ?? '?'} right after John adds more: crash, then replay`);
    await publish(d, 'John', 'items.added', '7');
    await eventually(async () => {
      const c = await contents(d, 'John');
      return c.items.length === 3 ? c : undefined;
    });
    say('    John = [1, 2, 7] in memory only (no checkpoint yet)');
    if (newOwner === undefined) throw new Error('no new owner');
    await newOwner.stop('SIGKILL');
    say(`    ${newOwner.id} killed; its lease expires, the survivor takes over and replays`);
    const survivor = workers.find((w) => w !== first && w !== newOwner);
    const recovered = await eventually(
      async () => {
        const c = await contents(d, 'John');
        return !c.stale && c.owner === survivor?.id ? c : undefined;
      },
      30_000,
      200,
    );
    say(
      `    contents John  = [${recovered.items.join(', ')}] answered by ${recovered.owner ?? '?'}`,
    );
    check(
      JSON.stringify(recovered.items) === '[1,2,7]',
      'replay from the watermark recovered John exactly once',
    );
    const replayed = survivor
      ?.logs()
      .filter((l) => l.msg === 'partition starting' && l['cleanHandoff'] === false).length;
    check(
      (replayed ?? 0) > 0,
      'the survivor recovered the crashed partitions from their watermarks',
    );
    const karanAfter = await contents(d, 'Karan');
    check(JSON.stringify(karanAfter.items) === '[2,3]', 'Karan is untouched: [2, 3]');
  } finally {
    step(7, 'clean up');
    for (const w of workers) await w.stop('SIGTERM');
    await dep?.close();
    await server?.cleanup();
    say('    workers stopped, server and temporary store removed');
  }
  say(
    failures === 0
      ? '\nDemo passed: nothing lost, nothing doubled.'
      : `\nDemo FAILED: ${failures} check(s) did not hold.`,
  );
  process.exitCode = failures === 0 ? 0 : 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${describeError(err)}\n`);
  process.exitCode = 1;
});
