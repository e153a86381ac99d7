// docker-compose.yml for real, with the locally built images: the 3-node NATS cluster, setup,
// workers and notifier come up; events go in through the CLI (and a publisher on the host);
// workers are `docker stop`ped and `docker kill`ed under load and scaled; every customer then
// equals the model; `down` leaves nothing behind.

import { connect } from '@nats-io/transport-node';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { resourceNames } from '../../src/contract/names.js';
import { loadDeployment } from '../../src/nats/deployment.js';
import type { FleetStatus } from '../../src/admin/status.js';
import { assignPartitions } from '../../src/fleet/assignment.js';
import { fleetStatusJson, startLoad, useTeardown } from '../support/fleet-scenarios.js';
import { eventually, readStoredStates, REPO_ROOT, type TestDeployment } from '../support/fleet.js';
import { diffStates, modelFromPublished } from '../support/model.js';
import { composeCommand, containerState, docker, testImages } from '../support/docker.js';
import { freePorts } from '../support/ports.js';

const run = promisify(execFile);
const images = testImages();
const teardown = useTeardown();
const project = `oftest${process.pid}`;
const [natsPort, monitorPort] = await freePorts(2);
const composeEnv = {
  ...process.env,
  ORDER_FLEET_IMAGE: images.app,
  NATS_IMAGE: images.nats,
  NATS_HOST_PORT: String(natsPort),
  NATS_MONITOR_HOST_PORT: String(monitorPort),
  SUMMARY_QUIET_MS: '1000',
};
const composeBin = await composeCommand();

async function compose(args: readonly string[], timeoutMs = 300_000): Promise<string> {
  const [bin, ...pre] = composeBin;
  try {
    const { stdout } = await run(bin ?? 'docker-compose', [...pre, '-p', project, ...args], {
      cwd: REPO_ROOT,
      env: composeEnv,
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout.trim();
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string };
    throw new Error(`compose ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}`, {
      cause: err,
    });
  }
}

async function workerIds(): Promise<string[]> {
  return (await compose(['ps', '-q', 'worker'])).split('\n').filter((l) => l !== '');
}

/** Members are exactly `count` workers, each partition held by its assigned owner (and lag 0). */
async function settledOn(
  dep: TestDeployment,
  count: number,
  caughtUp = true,
): Promise<FleetStatus> {
  return eventually(
    async () => {
      const s = await fleetStatusJson(dep);
      const assignment = assignPartitions(
        s.members.map((m) => m.id),
        dep.partitions,
      );
      const ok =
        s.members.length === count &&
        s.table.every((t) => t.owner === assignment.get(t.partition) && (!caughtUp || t.lag === 0));
      return ok ? s : undefined;
    },
    180_000,
    1000,
  );
}

afterAll(async () => {
  // Whatever happened, nothing of this project is left running.
  await compose(['--profile', 'tools', 'down', '-v', '--remove-orphans', '-t', '5']);
});

describe('docker-compose.yml', () => {
  it('runs the fleet: CLI in, stop/kill/scale under load, every customer equals the model', async () => {
    const steps: string[] = [];
    const began = Date.now();
    const step = (name: string): void => void steps.push(`${name} @${Date.now() - began}ms`);
    onTestFailed(async () => {
      console.error(`steps: ${steps.join(' → ')}`);
      console.error(await compose(['logs', '--no-color', '--tail', '30']));
    });
    await compose(['up', '-d']);
    step('up');
    const url = `nats://127.0.0.1:${natsPort}`;
    // Only nats-1 is published to the host: ignore the cluster's gossip of nats-2/nats-3 addresses,
    // which resolve inside the compose network only.
    const nc = await connect({
      servers: url,
      maxReconnectAttempts: -1,
      ignoreClusterUpdates: true,
    });
    teardown.push(() => nc.close());
    const names = resourceNames('');
    const deployment = await loadDeployment(nc, names);
    const dep: TestDeployment = {
      url,
      namespace: '',
      names,
      partitions: deployment.partitions,
      nc,
      env: { NATS_URL: url, ORDER_FLEET_NAMESPACE: '' },
      close: () => Promise.resolve(),
    };
    expect(dep.partitions).toBe(32);
    // R3 on the 3-node cluster, fsync on every write.
    const varz = (await (await fetch(`http://127.0.0.1:${monitorPort}/varz`)).json()) as {
      version: string;
      jetstream: { config: { sync_always?: boolean } };
    };
    expect(varz.jetstream.config.sync_always).toBe(true);
    const info = await (await import('@nats-io/jetstream')).jetstreamManager(nc);
    expect((await info.streams.info(names.ordersStream)).config.num_replicas).toBe(3);
    await settledOn(dep, 3);
    step('settled on 3');

    // The CLI in the image on the compose network (what `docker compose run --rm cli` runs,
    // without compose's per-run overhead).
    const cli = (args: string[]): Promise<string> =>
      docker([
        'run',
        '--rm',
        '--read-only',
        '--network',
        `${project}_default`,
        '-e',
        'NATS_URL=nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222',
        '-e',
        'LOG_LEVEL=warn',
        images.app,
        ...args,
      ]);
    expect(JSON.parse(await cli(['publish', 'John', 'items.added', '1', '2']))).toMatchObject({
      duplicate: false,
    });
    await cli(['publish', 'John', 'items.removed', '1']);
    const john = await eventually(async () => {
      const out = JSON.parse(await cli(['contents', 'John', '--json'])) as {
        items: number[];
        stale?: boolean;
      };
      return out.items.length === 1 ? out : undefined;
    }, 60_000);
    expect(john.items).toEqual([2]);
    step('contents');
    // The notifier's visible sink: its log carries John's summary.
    await eventually(
      async () => {
        const logs = await compose(['logs', '--no-color', 'notifier']);
        return logs.includes('"customerId":"John"') ? true : undefined;
      },
      90_000,
      1000,
    );
    step('notifier sink');

    // Load from the host while workers are stopped, killed and scaled.
    const load = startLoad(teardown, dep, {
      customers: 300,
      minEvents: 5000,
      chunk: 250,
      pauseMs: 50,
      prefix: 'compose',
    });
    const [first, second] = await workerIds();
    if (first === undefined || second === undefined) throw new Error('workers missing');
    while (load.published < 1500) await new Promise((r) => setTimeout(r, 200));
    await docker(['stop', '-t', '35', first], 120_000);
    expect(await containerState(first)).toMatchObject({ running: false, exitCode: 0 });
    // The two others own everything (still under load, so lag is not 0 yet).
    await settledOn(dep, 2, false);
    await docker(['kill', second]);
    step('killed');
    expect((await containerState(second)).running).toBe(false);
    await compose(['up', '-d', '--no-recreate', '--scale', 'worker=4', 'worker']);
    await load.finish();
    step('load finished');
    const final = await settledOn(dep, 4);
    step('settled on 4');
    expect(final.members).toHaveLength(4);

    const model = modelFromPublished(load.events, load.results);
    const stored = await readStoredStates(dep);
    const expected = new Map(model.expected());
    expected.set('John', [2]);
    expect(diffStates(expected, stored)).toEqual([]);
    expect(expected.size).toBeGreaterThanOrEqual(300);

    await nc.drain();
    await compose(['--profile', 'tools', 'down', '-v', '--remove-orphans', '-t', '35']);
    expect(
      await docker(['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`]),
    ).toBe('');
    expect(
      await docker([
        'volume',
        'ls',
        '-q',
        '--filter',
        `label=com.docker.compose.project=${project}`,
      ]),
    ).toBe('');
  });
});
