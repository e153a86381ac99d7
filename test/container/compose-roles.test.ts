// docker-compose.roles.yml for real: `order-fleet auth init` writes the NKey users, the NATS
// nodes require them, and every service connects as its own role. The fleet comes up, the
// `publisher` service publishes, the `cli` service (observer) reads contents and status, and the
// observer is refused a publish: least privilege holds with compose itself, not only on paper.

import { execFile } from 'node:child_process';
import { chmod, cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { composeCommand, docker, testImages } from '../support/docker.js';
import { eventually, REPO_ROOT } from '../support/fleet.js';
import { freePorts } from '../support/ports.js';

const run = promisify(execFile);
const images = testImages();
const project = `oftestroles${process.pid}`;
const [natsPort, monitorPort] = await freePorts(2);
const composeBin = await composeCommand();
// A copy of the compose files and deploy/ with its own auth/: `auth init` never writes into the
// checkout, and relative paths in the files resolve against the copy.
const dir = await mkdtemp(join(tmpdir(), 'order-fleet-compose-roles-'));
const env = {
  ...process.env,
  ORDER_FLEET_IMAGE: images.app,
  NATS_IMAGE: images.nats,
  NATS_HOST_PORT: String(natsPort),
  NATS_MONITOR_HOST_PORT: String(monitorPort),
};

async function compose(
  args: readonly string[],
  timeoutMs = 300_000,
): Promise<{ code: number; out: string }> {
  const [bin, ...pre] = composeBin;
  const full = [
    ...pre,
    '-p',
    project,
    '-f',
    join(dir, 'docker-compose.yml'),
    '-f',
    join(dir, 'docker-compose.roles.yml'),
    ...args,
  ];
  try {
    const { stdout, stderr } = await run(bin ?? 'docker-compose', full, {
      cwd: dir,
      env,
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, out: `${stdout.trim()}${stderr.trim() === '' ? '' : `\n${stderr.trim()}`}` };
  } catch (err) {
    const e = err as { code?: number; stderr?: string; stdout?: string };
    return {
      code: typeof e.code === 'number' ? e.code : 1,
      out: `${e.stderr ?? ''}${e.stdout ?? ''}`,
    };
  }
}

async function composeOk(args: readonly string[]): Promise<string> {
  const r = await compose(args);
  if (r.code !== 0) throw new Error(`compose ${args.join(' ')} exited ${r.code}: ${r.out}`);
  return r.out;
}

afterAll(async () => {
  try {
    await compose(['--profile', 'tools', 'down', '-v', '--remove-orphans', '-t', '5']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

describe('docker-compose.roles.yml', () => {
  it('every service connects as its own role; the observer may read but not publish', async () => {
    for (const f of ['docker-compose.yml', 'docker-compose.roles.yml', 'deploy'])
      await cp(join(REPO_ROOT, f), join(dir, f), { recursive: true });
    await run(
      process.execPath,
      [
        join(REPO_ROOT, 'bin/order-fleet.js'),
        'auth',
        'init',
        '--out',
        join(dir, 'auth'),
        '--client-dir',
        '/etc/order-fleet/nats',
        '--server-dir',
        '/etc/nats/auth',
      ],
      { env: { ...process.env, LOG_LEVEL: 'warn' } },
    );
    // The directory is 0700 for its owner; this NATS image runs as uid 1000 and must read the
    // (public) server include. The role env files stay 0600: compose reads them on the host.
    await chmod(join(dir, 'auth'), 0o755);
    onTestFailed(async () => {
      console.error((await compose(['logs', '--no-color', '--tail', '30'])).out);
    });

    await composeOk(['up', '-d']);
    const published = await eventually(
      async () => {
        const r = await compose([
          'run',
          '--rm',
          'publisher',
          'publish',
          'Roles',
          'items.added',
          '4',
          '5',
        ]);
        return r.code === 0 ? r.out : undefined;
      },
      120_000,
      2000,
    );
    expect(published).toContain('"duplicate":false');

    const contents = await eventually(
      async () => {
        const r = await compose(['run', '--rm', 'cli', 'contents', 'Roles', '--json']);
        if (r.code !== 0) return undefined;
        const line = r.out.split('\n').find((l) => l.startsWith('{'));
        const parsed = JSON.parse(line ?? '{}') as { items?: number[] };
        return parsed.items?.length === 2 ? parsed : undefined;
      },
      120_000,
      2000,
    );
    expect(contents.items).toEqual([4, 5]);

    const status = JSON.parse(
      (await composeOk(['run', '--rm', 'cli', 'status', '--json']))
        .split('\n')
        .find((l) => l.startsWith('{')) ?? '{}',
    ) as { members?: unknown[] };
    expect(status.members).toHaveLength(3);

    // The observer role has no publish permission on the orders subjects: refused by the server
    // (its permission error, as in roles.test.ts), not failing for some other reason.
    const refused = await compose(['run', '--rm', 'cli', 'publish', 'Roles', 'items.added', '6']);
    expect(refused.code).not.toBe(0);
    expect(refused.out).toMatch(/Permissions Violation/iu);

    await composeOk(['--profile', 'tools', 'down', '-v', '--remove-orphans', '-t', '35']);
    expect(
      await docker(['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`]),
    ).toBe('');
  });
});
