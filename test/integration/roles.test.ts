// Least privilege on a real nats-server started with the config `order-fleet auth init` wrote
// (with and without --tls): every role does its whole job through the real CLI and real worker
// and notifier processes, connecting with nothing but its own files; then each role is refused,
// one by one, everything else that matters, and each refusal is the server's permission error
// (not a timeout). Last, nothing any process printed (logs, status, errors, /metrics) holds a
// generated secret.

import { spawn } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { jetstream, jetstreamManager, AckPolicy, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { AuthorizationError, headers, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inboxPrefix, ROLES, type Role } from '../../src/auth/roles.js';
import { partitionOf } from '../../src/contract/partition.js';
import { OrderPublisher } from '../../src/publisher/order-publisher.js';
import {
  CLI,
  REPO_ROOT,
  eventually,
  readStoredStates,
  silentLogger,
  spawnWorker,
  waitReady,
  type CliResult,
  type TestDeployment,
  type WorkerProcess,
} from '../support/fleet.js';
import { freePort } from '../support/ports.js';
import { diffStates, generateLoad, modelFromPublished } from '../support/model.js';
import {
  deploymentAs,
  expectDenied,
  expectSubscribeDenied,
  probeServer,
  runCliWith,
  startAuthFixture,
  type AuthFixture,
} from '../support/roles.js';
import { readStream } from '../support/summaries.js';
import { VerifyingReceiver } from '../support/webhook-receiver.js';

const PARTITIONS = 8;
const SETUP_ENV = { LEASE_TTL_MS: '3000' };
const TIMING = { SUMMARY_QUIET_MS: '300', SUMMARY_MAX_MS: '2000', TIMER_TICK_MS: '50' };

interface Printed {
  readonly what: string;
  readonly text: string;
}

describe.each([{ tls: false }, { tls: true }])('roles (tls: $tls)', ({ tls }) => {
  let fx: AuthFixture;
  let dep: TestDeployment;
  const printed: Printed[] = [];
  const workers: WorkerProcess[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  async function cli(role: Role, args: readonly string[], extra: Record<string, string> = {}) {
    const result = await runCliWith(args, { ...fx.env(role), ...extra });
    printed.push({
      what: `${role}: order-fleet ${args.join(' ')}`,
      text: result.stdout + result.stderr,
    });
    return result;
  }

  function ok(result: CliResult, what: string): string {
    expect(result.code, `${what}\n${result.stderr}`).toBe(0);
    return result.stdout;
  }

  beforeAll(async () => {
    fx = await startAuthFixture({ tls });
    ok(
      await cli('admin', ['setup', '--partitions', String(PARTITIONS)], { LEASE_TTL_MS: '3000' }),
      'setup',
    );
    dep = await deploymentAs(fx, PARTITIONS);
  });

  afterAll(async () => {
    for (const w of workers) {
      await w.stop('SIGKILL');
      printed.push({ what: `worker ${w.id}`, text: w.output() });
    }
    for (const c of cleanups.splice(0).reverse()) await c();
    await dep?.close();
    await fx?.close();
  });

  it('admin: setup is idempotent and the streams refuse rollups, purges and deletes', async () => {
    const again = JSON.parse(
      ok(await cli('admin', ['setup', '--json'], SETUP_ENV), 'setup again'),
    ) as {
      resources: { name: string; action: string }[];
    };
    expect(again.resources.map((r) => r.action)).toEqual(again.resources.map(() => 'unchanged'));
    const jsm = await jetstreamManager(dep.nc);
    for (const stream of [
      dep.names.ordersStream,
      dep.names.deadLetterStream,
      dep.names.notificationsStream,
    ]) {
      const config = (await jsm.streams.info(stream)).config;
      expect(config, stream).toMatchObject({
        // Dead letters can be deleted one by one (`dlq purge`, admin only).
        deny_delete: stream !== dep.names.deadLetterStream,
        deny_purge: true,
        allow_rollup_hdrs: false,
      });
    }
    for (const bucket of [
      dep.names.stateBucket,
      dep.names.metaBucket,
      dep.names.leaseBucket,
      dep.names.memberBucket,
    ]) {
      const config = (await jsm.streams.info(`KV_${bucket}`)).config;
      expect(config, bucket).toMatchObject({ deny_delete: true, allow_rollup_hdrs: false });
    }
  });

  it('every role does its whole job: publish, a worker applying and handing off, notifier, status, contents', async () => {
    const secret = (await readFile(path.join(fx.dir, 'webhook-secret'), 'utf8')).trim();
    const receiver = new VerifyingReceiver([secret]);
    await receiver.start();
    cleanups.push(() => receiver.close());

    const metricsPort = await freePort();
    const w1 = spawnWorker(dep, 'roles-w1', {
      ...fx.env('worker'),
      ...TIMING,
      ADMIN_PORT: String(metricsPort),
      ADMIN_HOST: '127.0.0.1',
    });
    workers.push(w1);
    await waitReady(w1);

    const notifier = spawn(
      process.execPath,
      [CLI, 'notifier', '--sink', 'webhook', '--url', receiver.url],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env['PATH'] ?? '', ...fx.env('notifier'), LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let notifierOutput = '';
    notifier.stdout.setEncoding('utf8').on('data', (c: string) => (notifierOutput += c));
    notifier.stderr.setEncoding('utf8').on('data', (c: string) => (notifierOutput += c));
    const notifierExit = new Promise<number | null>((resolve) =>
      notifier.on('exit', (code) => resolve(code)),
    );
    cleanups.push(async () => {
      if (notifier.exitCode === null) notifier.kill('SIGKILL');
      await notifierExit;
      printed.push({ what: 'notifier', text: notifierOutput });
    });

    // The publisher: the CLI, and the SDK on a connection made from publisher.env alone.
    ok(
      await cli('publisher', ['publish', 'John', 'items.added', '1', '2', '--id', 'roles-john-1']),
      'publish',
    );
    const pubNc = await fx.connectAs('publisher');
    cleanups.push(() => pubNc.drain());
    const publisher = await OrderPublisher.connect(pubNc, {
      names: fx.names,
      limits: { maxPayloadBytes: 16 * 1024, maxItemsPerEvent: 1000 },
      maxInFlight: 256,
      maxAttempts: 30,
      timeoutMs: 5000,
      log: silentLogger,
    });
    const load = generateLoad(60, 400, 11, 'roles');
    const results = await Promise.all(load.map((e) => publisher.publish(e.customerId, e.event)));
    const expected = new Map(modelFromPublished(load, results).expected());
    expected.set('John', [1, 2]);

    const converged = async (): Promise<true | undefined> =>
      diffStates(expected, await readStoredStates(dep)).length === 0 ? true : undefined;
    await eventually(converged, 60_000, 200);

    // The observer: contents answered by the owner, status from the fleet's buckets.
    const john = JSON.parse(
      ok(await cli('observer', ['contents', 'John', '--json']), 'contents'),
    ) as { items: number[]; owner?: string; stale: boolean };
    expect(john).toMatchObject({ items: [1, 2], owner: 'roles-w1', stale: false });
    const status = JSON.parse(ok(await cli('observer', ['status', '--json']), 'status')) as {
      members: { id: string }[];
      table: { owner: string | null }[];
    };
    expect(status.members.map((m) => m.id)).toEqual(['roles-w1']);
    expect(status.table.every((t) => t.owner === 'roles-w1')).toBe(true);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    printed.push({ what: 'metrics', text: metrics });
    expect(metrics).toContain('order_fleet_applied_total');

    // Handoff: a second worker joins, the first leaves on SIGTERM; nothing is lost.
    const w2 = spawnWorker(dep, 'roles-w2', { ...fx.env('worker'), ...TIMING });
    workers.push(w2);
    await waitReady(w2);
    expect(await w1.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const more = generateLoad(60, 200, 12, 'roles');
    const moreResults = await Promise.all(
      more.map((e) => publisher.publish(e.customerId, e.event)),
    );
    await publisher.close();
    const all = modelFromPublished([...load, ...more], [...results, ...moreResults]).expected();
    expected.clear();
    for (const [k, v] of all) expected.set(k, v);
    expected.set('John', [1, 2]);
    await eventually(converged, 60_000, 200);
    const after = JSON.parse(
      ok(await cli('observer', ['contents', 'John', '--json']), 'contents'),
    ) as { owner?: string };
    expect(after.owner).toBe('roles-w2');
    printed.push({
      what: 'status after handoff',
      text: ok(await cli('observer', ['status']), 'status'),
    });

    // Every summary in NOTIFICATIONS reaches the receiver, signed, and verifies.
    const stored = await eventually(
      async () => {
        const notifications = await readStream(dep.nc, dep.names.notificationsStream);
        const ids = new Set(receiver.verified().map((d) => d.headers['webhook-id']));
        return notifications.length > 0 &&
          notifications.every((n) => ids.has(n.header('Nats-Msg-Id') ?? ''))
          ? notifications
          : undefined;
      },
      60_000,
      250,
    );
    expect(stored.length).toBeGreaterThan(0);
    expect(receiver.received.filter((d) => d.rejected !== undefined)).toEqual([]);
    for (const d of receiver.received)
      expect(d.headers['idempotency-key']).toBe(d.headers['webhook-id']);
    notifier.kill('SIGTERM');
    expect(await notifierExit).toBe(0);
  }, 300_000);

  it('the CLI run as the wrong role fails with the permission error', async () => {
    const asPublisher = await cli('publisher', ['setup']);
    expect(asPublisher.code).toBe(1);
    expect(asPublisher.stderr).toMatch(/Permissions Violation/iu);
    const asObserver = await cli('observer', ['publish', 'John', 'items.added', '9']);
    expect(asObserver.code).toBe(1);
    expect(asObserver.stderr).toMatch(/Permissions Violation/iu);
  });

  describe('refusals, one by one', () => {
    const conns = new Map<Role, NatsConnection>();
    const as = async (role: Role): Promise<NatsConnection> => {
      const existing = conns.get(role);
      if (existing !== undefined) return existing;
      const nc = await fx.connectAs(role);
      conns.set(role, nc);
      return nc;
    };
    afterAll(async () => {
      for (const nc of conns.values()) await nc.close();
    });

    const customer = 'John';
    const p = (): number => partitionOf(customer, PARTITIONS);

    async function jsmOf(role: Role): Promise<JetStreamManager> {
      return jetstreamManager(await as(role), { checkAPI: false });
    }

    /** Things only the fleet's own processes may do to its state. */
    async function expectNoFleetState(role: Role): Promise<void> {
      const nc = await as(role);
      const js = jetstream(nc);
      const n = dep.names;
      for (const [bucket, key] of [
        [n.stateBucket, `c.${p()}.${customer}`],
        [n.stateBucket, `t.${p()}.${customer}`],
        [n.metaBucket, `wm.${p()}`],
        [n.metaBucket, 'deployment'],
        [n.leaseBucket, `p.${p()}`],
        [n.memberBucket, 'm.intruder'],
      ] as const) {
        await expectDenied(
          `${role}: put ${bucket}/${key}`,
          js.publish(`$KV.${bucket}.${key}`, '{}'),
          { operation: 'publish', subject: `$KV.${bucket}.${key}` },
        );
        const del = headers();
        del.set('KV-Operation', 'DEL');
        await expectDenied(
          `${role}: delete ${bucket}/${key}`,
          js.publish(`$KV.${bucket}.${key}`, '', { headers: del }),
        );
      }
      const kvm = new Kvm(nc);
      await expectDenied(`${role}: kv.put state`, async () =>
        (await kvm.open(n.stateBucket)).put(`c.${p()}.${customer}`, '{}'),
      );
    }

    async function expectNoReads(role: Role): Promise<void> {
      const jsm = await jsmOf(role);
      const n = dep.names;
      for (const bucket of [n.stateBucket, n.metaBucket, n.leaseBucket, n.memberBucket]) {
        await expectDenied(
          `${role}: read ${bucket}`,
          jsm.streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.>` }),
        );
      }
      await expectDenied(
        `${role}: direct-get a watermark`,
        jsm.direct.getMessage(`KV_${n.metaBucket}`, {
          last_by_subj: `$KV.${n.metaBucket}.wm.${p()}`,
        }),
      );
      await expectDenied(
        `${role}: direct-get a customer`,
        jsm.direct.getMessage(`KV_${n.stateBucket}`, {
          last_by_subj: `$KV.${n.stateBucket}.c.${p()}.${customer}`,
        }),
      );
      await expectDenied(`${role}: watch members`, async () =>
        (await new Kvm(await as(role)).open(n.memberBucket)).watch(),
      );
    }

    async function expectNoAdministration(role: Role): Promise<void> {
      const jsm = await jsmOf(role);
      const n = dep.names;
      const current = (await (await jetstreamManager(dep.nc)).streams.info(n.ordersStream)).config;
      await expectDenied(
        `${role}: create a stream`,
        jsm.streams.add({ name: `${n.ordersStream}_EVIL`, subjects: ['evil.>'] }),
      );
      await expectDenied(
        `${role}: update ORDERS`,
        jsm.streams.update(n.ordersStream, { ...current, max_age: 1_000_000_000 }),
      );
      for (const stream of [
        n.ordersStream,
        n.notificationsStream,
        n.deadLetterStream,
        `KV_${n.stateBucket}`,
      ]) {
        await expectDenied(`${role}: purge ${stream}`, jsm.streams.purge(stream));
        await expectDenied(`${role}: delete ${stream}`, jsm.streams.delete(stream));
        await expectDenied(
          `${role}: delete a message of ${stream}`,
          jsm.streams.deleteMessage(stream, 1),
        );
      }
    }

    async function expectNoConsumers(role: Role, streams: readonly string[]): Promise<void> {
      const jsm = await jsmOf(role);
      for (const stream of streams) {
        await expectDenied(
          `${role}: create a consumer on ${stream}`,
          jsm.consumers.add(stream, { durable_name: 'evil', ack_policy: AckPolicy.None }),
        );
        await expectDenied(
          `${role}: create partition-0 on ${stream}`,
          jsm.consumers.add(stream, { durable_name: 'partition-0', ack_policy: AckPolicy.All }),
        );
        await expectDenied(
          `${role}: delete a consumer on ${stream}`,
          jsm.consumers.delete(stream, 'partition-0'),
        );
      }
    }

    it('publisher: order events only', async () => {
      const nc = await as('publisher');
      const js = jetstream(nc);
      const n = dep.names;
      // What it may do: an event on the customer's subject.
      expect(
        (
          await js.publish(
            `${n.ordersPrefix}.${p()}.${customer}`,
            JSON.stringify({ id: 'roles-ok-1', type: 'order.created' }),
            { msgID: 'roles-ok-1' },
          )
        ).seq,
      ).toBeGreaterThan(0);
      for (const subject of [
        `${n.ordersPrefix}.${p()}.${customer}.timer`,
        `${n.ordersPrefix}.${p()}.${customer}.anything`,
        `${n.deadLetterPrefix}.${p()}`,
        n.deadLetterNotifications,
        `${n.notificationsPrefix}.${customer}`,
        `${n.queryPrefix}.${p()}`,
      ]) {
        await expectDenied(`publisher: publish ${subject}`, js.publish(subject, '{}'), {
          operation: 'publish',
          subject,
        });
      }
      await expectNoFleetState('publisher');
      await expectNoReads('publisher');
      await expectNoAdministration('publisher');
      await expectNoConsumers('publisher', [
        n.ordersStream,
        n.notificationsStream,
        n.deadLetterStream,
      ]);
      // Notifications: neither through JetStream nor by listening on the subjects.
      const jsm = await jsmOf('publisher');
      await expectDenied(
        'publisher: read NOTIFICATIONS',
        jsm.streams.getMessage(n.notificationsStream, { seq: 1 }),
      );
      await expectDenied('publisher: ordered consumer on NOTIFICATIONS', async () =>
        (await jetstream(nc).consumers.get(n.notificationsStream)).next(),
      );
      await expectSubscribeDenied(nc, `${n.notificationsPrefix}.>`);
      await expectSubscribeDenied(nc, `${n.ordersPrefix}.>`);
      await expectSubscribeDenied(nc, `${n.queryPrefix}.*`);
      // Another role's replies.
      await expectSubscribeDenied(nc, `${inboxPrefix('observer', n)}.>`);
      await expectSubscribeDenied(nc, '_INBOX.>');
      // A rollup header passes the permissions (they cannot see headers); the stream refuses it.
      const rollup = headers();
      rollup.set('Nats-Rollup', 'all');
      const refused = await js
        .publish(`${n.ordersPrefix}.${p()}.${customer}`, '{}', { headers: rollup })
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      expect(refused).toMatchObject({ name: 'JetStreamApiError' });
    });

    it('notifier: no order events, no fleet state, no other streams', async () => {
      const nc = await as('notifier');
      const js = jetstream(nc);
      const n = dep.names;
      for (const subject of [
        `${n.ordersPrefix}.${p()}.${customer}`,
        `${n.ordersPrefix}.${p()}.${customer}.timer`,
        `${n.notificationsPrefix}.${customer}`,
        `${n.deadLetterPrefix}.0`,
      ]) {
        await expectDenied(`notifier: publish ${subject}`, js.publish(subject, '{}'), {
          operation: 'publish',
          subject,
        });
      }
      await expectNoFleetState('notifier');
      await expectNoReads('notifier');
      await expectNoAdministration('notifier');
      await expectNoConsumers('notifier', [n.ordersStream, n.deadLetterStream]);
      await expectSubscribeDenied(nc, `${n.notificationsPrefix}.>`);
    });

    it('observer: reads, never writes', async () => {
      const nc = await as('observer');
      const js = jetstream(nc);
      const n = dep.names;
      for (const subject of [
        `${n.ordersPrefix}.${p()}.${customer}`,
        `${n.ordersPrefix}.${p()}.${customer}.timer`,
        `${n.notificationsPrefix}.${customer}`,
        `${n.deadLetterPrefix}.0`,
      ]) {
        await expectDenied(`observer: publish ${subject}`, js.publish(subject, '{}'), {
          operation: 'publish',
          subject,
        });
      }
      await expectNoFleetState('observer');
      await expectNoAdministration('observer');
      await expectNoConsumers('observer', [
        n.ordersStream,
        n.notificationsStream,
        n.deadLetterStream,
      ]);
      await expectSubscribeDenied(nc, `${n.queryPrefix}.*`);
    });

    it('worker: fleet state yes, stream configuration and the deployment record no', async () => {
      const nc = await as('worker');
      const js = jetstream(nc);
      const n = dep.names;
      await expectDenied(
        'worker: publish an order event',
        js.publish(`${n.ordersPrefix}.${p()}.${customer}`, '{}'),
      );
      await expectDenied(
        'worker: overwrite the deployment',
        js.publish(`$KV.${n.metaBucket}.deployment`, '{}'),
      );
      await expectNoAdministration('worker');
      await expectNoConsumers('worker', [n.notificationsStream, n.deadLetterStream]);
      await expectSubscribeDenied(nc, `${n.ordersPrefix}.>`);
      await expectSubscribeDenied(nc, `${inboxPrefix('observer', n)}.>`);
      // A rollup on a KV key would wipe the bucket: the bucket refuses it.
      const rollup = headers();
      rollup.set('Nats-Rollup', 'all');
      const refused = await js
        .publish(`$KV.${n.stateBucket}.c.${p()}.${customer}`, '{}', { headers: rollup })
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      expect(refused).toMatchObject({ name: 'JetStreamApiError' });
    });

    it('admin: never deletes or purges', async () => {
      const jsm = await jsmOf('admin');
      for (const stream of [dep.names.ordersStream, `KV_${dep.names.stateBucket}`]) {
        await expectDenied(`admin: purge ${stream}`, jsm.streams.purge(stream));
        await expectDenied(`admin: delete ${stream}`, jsm.streams.delete(stream));
      }
    });

    it('nobody gets in without the files: no credentials, a foreign key, or (with TLS) no valid client certificate', async () => {
      const other = await startAuthFixtureFiles(tls);
      try {
        await expect(
          fx.connectAs('observer', {
            NATS_NKEY_SEED: other.env('observer')['NATS_NKEY_SEED'] ?? '',
          }),
        ).rejects.toBeInstanceOf(AuthorizationError);
        if (!tls) {
          const noCreds = await fx.connectAs('observer', { NATS_NKEY_SEED: '' }).then(
            (nc) => nc.close().then(() => 'connected'),
            (err: unknown) => err,
          );
          expect(noCreds).toBeInstanceOf(AuthorizationError);
        } else {
          const dir = fx.dir;
          const ca = path.join(dir, 'ca.pem');
          // With its own certificate a client gets past TLS to authentication (no key given here).
          const valid = await probeServer(fx.url, {
            ca,
            cert: path.join(dir, 'observer-cert.pem'),
            key: path.join(dir, 'observer-key.pem'),
          });
          expect(valid.outcome).toMatch(/^line -ERR 'Authorization Violation'/u);
          // No client certificate, or one from another CA: the server ends the handshake.
          const none = await probeServer(fx.url, { ca });
          const foreignEnv = other.env('observer');
          const foreign = await probeServer(fx.url, {
            ca,
            cert: foreignEnv['NATS_TLS_CERT'] ?? '',
            key: foreignEnv['NATS_TLS_KEY'] ?? '',
          });
          for (const refused of [none, foreign])
            expect(refused.outcome).toMatch(
              /^tls ERR_SSL_.*(BAD_CERTIFICATE|CERTIFICATE_REQUIRED|UNKNOWN_CA)/u,
            );
          // A client that does not speak TLS at all never gets an answer to its PING.
          const plain = await probeServer(fx.url, undefined);
          expect(plain.info['tls_required']).toBe(true);
          expect(plain.outcome).not.toMatch(/PONG/u);
        }
      } finally {
        await other.close();
      }
    });
  });

  it('auth init: secrets are 0600, never overwritten without --force', async () => {
    for (const role of ROLES) {
      expect((await stat(path.join(fx.dir, `${role}.env`))).mode & 0o777, role).toBe(0o600);
      if (tls) expect((await stat(path.join(fx.dir, `${role}-key.pem`))).mode & 0o777).toBe(0o600);
    }
    const before = await readFile(path.join(fx.dir, 'worker.env'), 'utf8');
    const again = await runCliWith(['auth', 'init', '--out', fx.dir], {});
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/refusing to overwrite/u);
    expect(await readFile(path.join(fx.dir, 'worker.env'), 'utf8')).toBe(before);
  });

  it('no generated secret appears in anything a process printed', async () => {
    // Stop everything so that its last words are included.
    for (const w of workers) {
      await w.stop('SIGTERM');
    }
    for (const c of cleanups.splice(0).reverse()) await c();
    for (const w of workers.splice(0)) printed.push({ what: `worker ${w.id}`, text: w.output() });
    const secrets = await fx.secrets();
    expect(secrets.length).toBeGreaterThan(5);
    const everything = printed.map((p) => p.text).join('\n');
    expect(everything.length).toBeGreaterThan(1000);
    const leaks = printed.flatMap((p) =>
      secrets.filter((s) => p.text.includes(s)).map(() => p.what),
    );
    expect(leaks).toEqual([]);
  });
});

/** Another fleet's files (not served by any server): a foreign key and a foreign CA. */
async function startAuthFixtureFiles(
  tls: boolean,
): Promise<{ env(role: Role): Record<string, string>; close(): Promise<void> }> {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const os = await import('node:os');
  const { parseEnv } = await import('node:util');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'order-fleet-foreign-'));
  const init = await runCliWith(['auth', 'init', '--out', dir, ...(tls ? ['--tls'] : [])], {});
  if (init.code !== 0) throw new Error(init.stderr);
  const envs = new Map<Role, Record<string, string>>();
  for (const role of ROLES) {
    const parsed = parseEnv(await readFile(path.join(dir, `${role}.env`), 'utf8'));
    envs.set(
      role,
      Object.fromEntries(
        Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string'),
      ),
    );
  }
  return {
    env: (role) => envs.get(role) ?? {},
    close: () => rm(dir, { recursive: true, force: true }),
  };
}
