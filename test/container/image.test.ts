// The image CI built: it runs as a non-root user with node as PID 1 on a read-only root, and
// `docker stop` (SIGTERM, SIGKILL after the timeout: what the kubelet does) makes a worker hand its
// partitions over cleanly and exit 0, under load, with every customer equal to the model.

import { afterAll, describe, expect, it } from 'vitest';
import {
  settled,
  settledOwners,
  startFleetScenario,
  startLoad,
  useTeardown,
} from '../support/fleet-scenarios.js';
import { readStoredStates } from '../support/fleet.js';
import { diffStates, modelFromPublished } from '../support/model.js';
import { docker, removeTestContainers, testImages, WorkerContainer } from '../support/docker.js';
import { freePorts } from '../support/ports.js';

const images = testImages();
const teardown = useTeardown();
afterAll(removeTestContainers);

describe('the order-fleet image', () => {
  it('carries OCI labels and a non-root user, and runs on a read-only root', async () => {
    const config = JSON.parse(
      await docker(['image', 'inspect', '-f', '{{json .Config}}', images.app]),
    ) as { User: string; Entrypoint: string[]; Labels: Record<string, string> };
    expect(config.User).toMatch(/^[1-9][0-9]*:[1-9][0-9]*$/u);
    expect(config.Entrypoint).toEqual(['node', '/app/bin/order-fleet.js']);
    expect(Object.keys(config.Labels)).toEqual(
      expect.arrayContaining([
        'org.opencontainers.image.title',
        'org.opencontainers.image.version',
        'org.opencontainers.image.revision',
        'org.opencontainers.image.source',
        'org.opencontainers.image.licenses',
      ]),
    );
    const help = await docker([
      'run',
      '--rm',
      '--read-only',
      '--cap-drop',
      'ALL',
      images.app,
      '--help',
    ]);
    expect(help).toMatch(/worker/u);
  });

  it('docker stop hands a worker over cleanly (exit 0, nothing replayed) under load', async () => {
    const { dep, step } = await startFleetScenario(teardown, { partitions: 8, leaseTtlMs: 3000 });
    const [portA, portB] = await freePorts(2);
    const env = { ...dep.env, SHUTDOWN_GRACE_MS: '25000' };
    const start = async (name: string, port: number | undefined): Promise<WorkerContainer> => {
      const c = await WorkerContainer.start({
        name,
        image: images.app,
        env,
        adminPort: port ?? 0,
      });
      teardown.push(() => c.remove());
      return c;
    };
    const suffix = String(process.pid);
    const a = await start(`img-a-${suffix}`, portA);
    const b = await start(`img-b-${suffix}`, portB);
    await settledOwners(dep, [a.name, b.name]);
    step('both containers own their partitions');

    // Non-root, and node itself is PID 1 (no shell in between to swallow SIGTERM).
    expect(await docker(['exec', a.name, 'node', '-p', 'process.getuid()'])).not.toBe('0');
    expect(await docker(['exec', a.name, 'cat', '/proc/1/cmdline'])).toMatch(/^node\0/u);
    expect(
      await docker(['exec', a.name, 'sh', '-c', 'touch /app/x 2>&1 || echo read-only']),
    ).toMatch(/read-only/u);

    const load = startLoad(teardown, dep, {
      customers: 300,
      minEvents: 6000,
      chunk: 300,
      pauseMs: 50,
      prefix: 'img',
    });
    while (load.published < 2000) await new Promise((r) => setTimeout(r, 100));
    const stopped = await a.stop(35);
    step('a stopped');
    expect(stopped).toEqual({ running: false, exitCode: 0, oomKilled: false });
    await load.finish();
    await settled(dep, [b.name]);
    step('b owns everything, caught up');

    // The clean handoff: the successor replayed nothing; a's runners all stopped cleanly.
    expect(await b.metric('order_fleet_replayed_total')).toBe(0);
    const aStops = (await a.logs()).filter((l) => l['msg'] === 'partition stopped');
    expect(aStops.length).toBeGreaterThan(0);
    expect(aStops.filter((l) => l['state'] !== 'stopped')).toEqual([]);

    const model = modelFromPublished(load.events, load.results);
    expect(diffStates(model.expected(), await readStoredStates(dep))).toEqual([]);
    expect(await b.stop(35)).toMatchObject({ exitCode: 0 });
  });
});
