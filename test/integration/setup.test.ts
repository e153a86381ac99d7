// Acceptance: the real CLI (`node bin/order-fleet.js`, built into dist/) against a real
// nats-server. `setup` is idempotent and refuses to change the partition count, bad
// configuration is refused before anything is touched, `publish` prints the stream sequence and
// the duplicate flag and rejects bad input, and `--help` works however the binary is launched.

import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resourceNames } from '../../src/contract/names.js';
import { partitionOf } from '../../src/contract/partition.js';
import { DEFAULT_PARTITIONS, DEPLOYMENT_KEY } from '../../src/nats/deployment.js';
import type { SetupAction, SetupReport } from '../../src/nats/provision.js';
import {
  CLI,
  REPO_ROOT,
  runCli,
  spawnCli,
  type CliResult,
  type TestDeployment,
} from '../support/fleet.js';
import { startNatsCluster } from '../support/nats-cluster.js';
import { startOwnNats } from '../support/nats.js';

type Teardown = (() => Promise<void>)[];
/** What one test started; torn down after it, even when it fails. */
const teardown: Teardown = [];
/** What a group of tests shares (a server that only sees refused commands); torn down at the end. */
const suiteTeardown: Teardown = [];

// Reverse order: close clients before killing the servers they talk to.
afterEach(async () => {
  for (const task of teardown.splice(0).reverse()) await task();
});
afterAll(async () => {
  for (const task of suiteTeardown.splice(0).reverse()) await task();
});

const NAMES = resourceNames('');
const STREAMS = [NAMES.ordersStream, NAMES.deadLetterStream, NAMES.notificationsStream] as const;
const BUCKETS = [NAMES.stateBucket, NAMES.metaBucket, NAMES.leaseBucket, NAMES.memberBucket];

interface Target {
  /** What runCli needs: the environment pointing the CLI at this test's own server. */
  readonly dep: TestDeployment;
  readonly jsm: JetStreamManager;
}

/**
 * A fresh server that nobody has provisioned: the CLI's `setup` does it. Settings that may be
 * set in the developer's shell are blanked (empty means unset) so they cannot leak into runs.
 */
async function startTarget(cleanup: Teardown = teardown): Promise<Target> {
  // Binary by default; a container in CI's container stage (the testcontainers path).
  const server = await startOwnNats();
  cleanup.push(() => server.release());
  const nc = await connect({ servers: server.url });
  cleanup.push(() => nc.close());
  const dep: TestDeployment = {
    url: server.url,
    namespace: '',
    names: NAMES,
    partitions: DEFAULT_PARTITIONS, // not provisioned yet; tests read the real value back
    nc,
    env: {
      NATS_URL: server.url,
      ORDER_FLEET_NAMESPACE: '',
      PARTITIONS: '',
      ORDERS_REPLICAS: '',
      ORDERS_MAX_AGE_MS: '',
      ORDERS_DUPLICATE_WINDOW_MS: '',
      LEASE_TTL_MS: '',
      NATS_CREDS: '',
      NATS_USER: '',
      NATS_PASSWORD: '',
      NATS_TOKEN: '',
      NATS_TLS: '',
    },
    close: () => nc.close(),
  };
  return { dep, jsm: await jetstreamManager(nc) };
}

interface Snapshot {
  /** Every stream on the server with its full config (KV buckets are streams too). */
  readonly streams: Record<string, StreamConfig>;
  /** Revision and value of the deployment record, or null when there is none. */
  readonly deployment: { revision: number; value: string } | null;
}

async function snapshot(target: Target): Promise<Snapshot> {
  const streams: Record<string, StreamConfig> = {};
  for await (const info of target.jsm.streams.list()) streams[info.config.name] = info.config;
  let deployment: Snapshot['deployment'] = null;
  if (streams[`KV_${NAMES.metaBucket}`] !== undefined) {
    const entry = await (await new Kvm(target.dep.nc).open(NAMES.metaBucket)).get(DEPLOYMENT_KEY);
    if (entry !== null) deployment = { revision: entry.revision, value: entry.string() };
  }
  return { streams, deployment };
}

function expectExit(result: CliResult, code: number): void {
  expect(result.code, `exit code; stdout:\n${result.stdout}\nstderr:\n${result.stderr}`).toBe(code);
}

async function setupJson(target: Target, args: readonly string[] = []): Promise<SetupReport> {
  const result = await runCli(target.dep, ['setup', '--json', ...args]);
  expectExit(result, 0);
  return JSON.parse(result.stdout) as SetupReport;
}

const allResources = (action: SetupAction): SetupReport['resources'] => [
  ...STREAMS.map((name) => ({ kind: 'stream' as const, name, action, changed: [] })),
  ...BUCKETS.map((name) => ({ kind: 'kv' as const, name, action, changed: [] })),
];

interface PublishOutput {
  readonly stream: string;
  readonly seq: number;
  readonly duplicate: boolean;
  readonly subject: string;
  readonly id: string;
}

async function publishCli(target: Target, args: readonly string[]): Promise<PublishOutput> {
  const result = await runCli(target.dep, ['publish', ...args]);
  expectExit(result, 0);
  return JSON.parse(result.stdout) as PublishOutput;
}

async function storedMessages(target: Target): Promise<number> {
  return (await target.jsm.streams.info(NAMES.ordersStream)).state.messages;
}

describe('order-fleet setup', () => {
  it('creates everything once; a second run reports everything unchanged and changes nothing', async () => {
    const target = await startTarget();
    expect((await snapshot(target)).streams).toEqual({});

    const first = await setupJson(target);
    expect(first.resources).toEqual(allResources('created'));
    expect(first.deployment).toMatchObject({
      version: 1,
      partitions: DEFAULT_PARTITIONS,
      timerLayout: 'state',
    });
    const afterFirst = await snapshot(target);
    expect(Object.keys(afterFirst.streams).sort()).toEqual(
      [...STREAMS, ...BUCKETS.map((b) => `KV_${b}`)].sort(),
    );
    expect(afterFirst.streams[NAMES.ordersStream]).toMatchObject({
      subjects: Array.from({ length: 32 }, (_, p) => `orders.${p}.>`),
      storage: 'file',
      retention: 'limits',
      discard: 'old',
      num_replicas: 1,
      duplicate_window: 2 * 60 * 1e9,
      max_age: 7 * 24 * 3600 * 1e9,
    });

    const second = await setupJson(target);
    expect(second.resources).toEqual(allResources('unchanged'));
    expect(second.deployment).toEqual(first.deployment);
    expect(await snapshot(target)).toEqual(afterFirst);

    // The human-readable report says the same.
    const plain = await runCli(target.dep, ['setup']);
    expectExit(plain, 0);
    const lines = plain.stdout.trim().split('\n');
    expect(lines).toHaveLength(STREAMS.length + BUCKETS.length + 2);
    for (const name of [...STREAMS, ...BUCKETS]) {
      expect(lines).toContainEqual(
        expect.stringMatching(new RegExp(`^\\w+\\s+${name}\\s+unchanged$`)),
      );
    }
    expect(lines.slice(-2)).toEqual([`partitions ${DEFAULT_PARTITIONS}`, 'timer-layout state']);
    expect(await snapshot(target)).toEqual(afterFirst);
  });

  it('converges when two setups race on a fresh server: one deployment, both succeed', async () => {
    const target = await startTarget();
    const [a, b] = await Promise.all([
      runCli(target.dep, ['setup', '--json', '--partitions', '16']),
      runCli(target.dep, ['setup', '--json', '--partitions', '16']),
    ]);
    expectExit(a, 0);
    expectExit(b, 0);
    const reportA = JSON.parse(a.stdout) as SetupReport;
    const reportB = JSON.parse(b.stdout) as SetupReport;
    expect(reportA.deployment).toEqual(reportB.deployment);
    expect(reportA.deployment.partitions).toBe(16);
    const state = await snapshot(target);
    expect(state.deployment?.revision).toBe(1);
    expect((await setupJson(target)).resources).toEqual(allResources('unchanged'));
    expect(await snapshot(target)).toEqual(state);
  });

  it('accepts the stored partition count again', async () => {
    const target = await startTarget();
    await setupJson(target, ['--partitions', '12']);
    const before = await snapshot(target);
    const again = await setupJson(target, ['--partitions', '12']);
    expect(again.deployment.partitions).toBe(12);
    expect(again.resources).toEqual(allResources('unchanged'));
    const keep = await setupJson(target); // unset: keep what is stored
    expect(keep.deployment.partitions).toBe(12);
    expect(await snapshot(target)).toEqual(before);
  });

  it.each([
    ['the --partitions flag', ['--partitions', '16'], {}],
    ['PARTITIONS', [], { PARTITIONS: '16' }],
  ])(
    'refuses to change the partition count of a 32-partition deployment (%s): exit 2, explained, nothing changed',
    async (_how, args, env) => {
      const target = await startTarget();
      expect((await setupJson(target)).deployment.partitions).toBe(32);
      const before = await snapshot(target);

      const result = await runCli(target.dep, ['setup', ...args], env);
      expectExit(result, 2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/refusing to change the partition count from 32 to 16/);
      expect(result.stderr).toMatch(/PARTITIONS/);
      expect(result.stderr).toMatch(/ORDER_FLEET_NAMESPACE/);
      expect(await snapshot(target)).toEqual(before);
    },
  );

  // A refused `setup` must not apply any other changed setting (here the duplicate window).
  it('refuses a partition change before applying any other change', async () => {
    const target = await startTarget();
    await setupJson(target);
    const before = await snapshot(target);

    const result = await runCli(target.dep, ['setup', '--partitions', '16'], {
      ORDERS_DUPLICATE_WINDOW_MS: '60000',
    });
    expectExit(result, 2);
    expect(result.stderr).toMatch(/refusing to change the partition count from 32 to 16/);
    expect(await snapshot(target)).toEqual(before);
  });

  describe('with bad configuration', () => {
    // Refused runs must not touch the server, so they can share one.
    let unprovisioned: Target;
    beforeAll(async () => {
      unprovisioned = await startTarget(suiteTeardown);
    });

    it.each([
      ['PARTITIONS=abc', [], { PARTITIONS: 'abc' }, 'PARTITIONS'],
      ['PARTITIONS=0', [], { PARTITIONS: '0' }, 'PARTITIONS'],
      ['PARTITIONS=1e3', [], { PARTITIONS: '1e3' }, 'PARTITIONS'],
      ['--partitions abc', ['--partitions', 'abc'], {}, 'PARTITIONS'],
      ['ORDERS_REPLICAS=three', [], { ORDERS_REPLICAS: 'three' }, 'ORDERS_REPLICAS'],
      ['LOG_LEVEL=loud', [], { LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
      ['ORDER_FLEET_NAMESPACE=a.b', [], { ORDER_FLEET_NAMESPACE: 'a.b' }, 'ORDER_FLEET_NAMESPACE'],
    ])(
      'rejects bad configuration (%s) with exit 2 naming the variable, touching nothing',
      async (_name, args, env, variable) => {
        const result = await runCli(unprovisioned.dep, ['setup', ...args], env);
        expectExit(result, 2);
        expect(result.stdout).toBe('');
        expect(result.stderr).toContain(variable);
        expect(result.stderr).toMatch(/invalid configuration/);
        expect(await snapshot(unprovisioned)).toEqual({ streams: {}, deployment: null });
      },
    );
  });
});

describe('order-fleet setup on a cluster that is still forming', () => {
  // A compose `up` or a Helm install starts the setup Job next to NATS nodes that are still
  // joining: R3 placement is refused ("no suitable peers") until the last one is current.
  it('waits until the missing node is back, then places every stream and bucket on 3 peers', async () => {
    const cluster = await startNatsCluster();
    teardown.push(() => cluster.cleanup());
    const missing = cluster.servers[2];
    if (missing === undefined) throw new Error('a 3-node cluster has a third node');
    await missing.stop();
    const run = spawnCli(['setup', '--json', '--replicas', '3'], {
      PATH: process.env['PATH'] ?? '',
      LOG_LEVEL: 'warn',
      NATS_URL: cluster.urls.slice(0, 2).join(','),
      SETUP_WAIT_MS: '90000',
    });
    const nc = await connect({ servers: cluster.urls.slice(0, 2) });
    teardown.push(() => nc.close());
    // No account-info probe, and a long timeout: if the stopped node led the JetStream meta
    // group, the other two are still electing a leader, and nats.js's 5 s probe timed out once.
    const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 20_000 });
    // Nothing can be placed with one node of three down; give setup time to be refused.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const placedMeanwhile: string[] = [];
    for await (const info of jsm.streams.list()) placedMeanwhile.push(info.config.name);
    expect(placedMeanwhile.filter((n) => STREAMS.includes(n))).toEqual([]);
    await missing.restart();
    const result = await run;
    expectExit(result, 0);
    const report = JSON.parse(result.stdout) as SetupReport;
    expect(report.resources.map((r) => r.name).sort()).toEqual([...STREAMS, ...BUCKETS].sort());
    for (const name of [...STREAMS, ...BUCKETS.map((b) => `KV_${b}`)]) {
      const info = await jsm.streams.info(name);
      expect(info.config.num_replicas, name).toBe(3);
    }
  }, 150_000);
});

describe('order-fleet publish', () => {
  it('prints the stream sequence and the duplicate flag; the same --id is stored once', async () => {
    const target = await startTarget();
    await setupJson(target, ['--partitions', '8']);

    const first = await publishCli(target, ['cust-1', 'items.added', '1', '2', '--id', 'ev-1']);
    expect(first).toEqual({
      stream: 'ORDERS',
      seq: 1,
      duplicate: false,
      subject: `orders.${partitionOf('cust-1', 8)}.cust-1`,
      id: 'ev-1',
    });
    const again = await publishCli(target, ['cust-1', 'items.added', '1', '2', '--id', 'ev-1']);
    expect(again).toEqual({ ...first, duplicate: true });
    expect(await storedMessages(target)).toBe(1);

    // A Unicode customer id, and a random id when --id is not given.
    const unicode = await publishCli(target, ['顧客-😀', 'order.created']);
    expect(unicode).toMatchObject({
      seq: 2,
      duplicate: false,
      subject: `orders.${partitionOf('顧客-😀', 8)}.顧客-😀`,
    });
    expect(unicode.id).toMatch(/^[0-9a-f-]{36}$/);
    const stored = await target.jsm.streams.getMessage(NAMES.ordersStream, { seq: 2 });
    expect(stored?.subject).toBe(unicode.subject);
    expect(stored?.json()).toEqual({ type: 'order.created', id: unicode.id });
    expect(await storedMessages(target)).toBe(2);
  });

  describe('with bad input', () => {
    // Refused publishes must store nothing, so they can share one deployment.
    let provisioned: Target;
    beforeAll(async () => {
      provisioned = await startTarget(suiteTeardown);
      await setupJson(provisioned);
    });

    it.each([
      ['a.b', 'no-dot'],
      ['a*', 'no-wildcard'],
      ['a b', 'no-whitespace'],
      ['', 'non-empty'],
      ['x'.repeat(129), 'max-bytes'],
    ])('rejects customer id %j with exit 2 (rule %s) and stores nothing', async (id, rule) => {
      const result = await runCli(provisioned.dep, ['publish', id, 'items.added', '1']);
      expectExit(result, 2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain('invalid customer id');
      expect(result.stderr).toContain(`rule ${rule}`);
      expect(await storedMessages(provisioned)).toBe(0);
    });

    it.each([
      ['a non-integer item', ['cust-1', 'items.added', 'x']],
      ['items on order.created', ['cust-1', 'order.created', '1']],
      ['no items on items.added', ['cust-1', 'items.added']],
      ['a bad --id', ['cust-1', 'order.created', '--id', 'has space']],
      ['a bad --at', ['cust-1', 'order.created', '--at', 'yesterday']],
      ['an unknown event type', ['cust-1', 'order.deleted']],
    ])('rejects %s with exit 2 and stores nothing', async (_name, args) => {
      const result = await runCli(provisioned.dep, ['publish', ...args]);
      expectExit(result, 2);
      expect(result.stdout).toBe('');
      expect(result.stderr).not.toBe('');
      expect(await storedMessages(provisioned)).toBe(0);
    });
  });

  it('explains that setup must run first on an unprovisioned server', async () => {
    const target = await startTarget();
    const result = await runCli(target.dep, ['publish', 'cust-1', 'order.created']);
    expectExit(result, 1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/not provisioned.*order-fleet setup/);
    expect((await snapshot(target)).streams).toEqual({});
  });
});

describe('order-fleet --help', () => {
  const COMMANDS = ['setup', 'publish', 'worker', 'contents', 'status'];

  function expectHelp(stdout: string): void {
    expect(stdout).toMatch(/^Usage: order-fleet \[options\] \[command\]/);
    for (const command of COMMANDS) expect(stdout).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
  }

  function exec(
    file: string,
    args: readonly string[],
    cwd: string,
    env: NodeJS.ProcessEnv = process.env,
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(file, args, { cwd, env, timeout: 60_000 }, (err, stdout, stderr) => {
        // A non-zero exit is an outcome to assert on, not an exception.
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout, stderr });
      });
    });
  }

  it('prints usage and every command, and per-command help', async () => {
    const target = await startTarget();
    const help = await runCli(target.dep, ['--help']);
    expectExit(help, 0);
    expectHelp(help.stdout);

    const publishHelp = await runCli(target.dep, ['publish', '--help']);
    expectExit(publishHelp, 0);
    expect(publishHelp.stdout).toMatch(
      /^Usage: order-fleet publish \[options\] <customerId> <type>/,
    );
    expect(publishHelp.stdout).toContain('--id <id>');

    const setupHelp = await runCli(target.dep, ['setup', '--help']);
    expectExit(setupHelp, 0);
    expect(setupHelp.stdout).toContain('--partitions <n>');
  });

  it('works through npx (npm exec of the package bin)', async () => {
    // Without scripts: npx installs this directory into its cache as a `file:` dependency, and
    // that install ran the package's `prepare` (tsc) over this checkout's dist/ while other test
    // files were starting workers from it (a worker then failed to import a half-written module).
    const result = await exec('npx', ['--no', '--', 'order-fleet', '--help'], REPO_ROOT, {
      ...process.env,
      npm_config_ignore_scripts: 'true',
    });
    expect(result.code, result.stderr).toBe(0);
    expectHelp(result.stdout);
  });

  it('works through a symlinked bin, as installed in node_modules/.bin, from another directory', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'order-fleet-bin-'));
    teardown.push(() => rm(dir, { recursive: true, force: true }));
    const binDir = path.join(dir, 'node_modules', '.bin');
    await mkdir(binDir, { recursive: true });
    const link = path.join(binDir, 'order-fleet');
    await symlink(CLI, link);
    const result = await exec(link, ['--help'], dir);
    expect(result.code, result.stderr).toBe(0);
    expectHelp(result.stdout);
  });
});
