// Proves the test harness itself: real nats-server processes that survive
// SIGKILL + restart on the same store, honour extra config, and form a
// JetStream cluster that tolerates losing a node.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  jetstream,
  jetstreamManager,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type PubAck,
} from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import {
  acquireNats,
  freePort,
  NatsServerBinaryMissingError,
  NatsServerStartError,
  startNatsCluster,
  startNatsServer,
  uniqueName,
  waitForJetStream,
  type NatsCluster,
  type NatsServerHandle,
} from '../support/index.js';

/** Everything a test started; torn down in afterEach even when the test fails. */
const teardown: (() => Promise<void>)[] = [];

function track<T extends { cleanup(): Promise<void> }>(resource: T): T {
  teardown.push(() => resource.cleanup());
  return resource;
}

async function connectTracked(servers: string | string[]): Promise<NatsConnection> {
  const nc = await connect({
    servers,
    // Keep reconnecting across kills/restarts instead of giving up after 10 tries.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 50,
  });
  teardown.push(async () => {
    if (!nc.isClosed()) await nc.close();
  });
  return nc;
}

afterEach(async () => {
  // Reverse order: close clients before killing the servers they talk to.
  const tasks = teardown.splice(0).reverse();
  for (const task of tasks) await task();
});

/** Retries `fn` until it succeeds; for operations that fail while a leader is being elected. */
async function eventually<T>(what: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      // Expected during failover (503, timeouts); give up only at the deadline.
      if (Date.now() > deadline) throw new Error(`${what} did not succeed in time`, { cause: err });
    }
    await sleep(50);
  }
}

async function publishMany(
  js: JetStreamClient,
  subject: string,
  from: number,
  to: number,
): Promise<PubAck[]> {
  const acks: PubAck[] = [];
  for (let i = from; i <= to; i++) {
    // msgID makes retried publishes idempotent (stream duplicate window).
    acks.push(
      await eventually(`publish #${i}`, () =>
        js.publish(subject, `msg-${i}`, { msgID: `${subject}-${i}`, timeout: 2_000 }),
      ),
    );
  }
  return acks;
}

async function streamMessages(jsm: JetStreamManager, stream: string): Promise<number> {
  return (await jsm.streams.info(stream)).state.messages;
}

describe('startNatsServer', () => {
  it('keeps a file-backed stream across SIGKILL and restart on the same port and store', async () => {
    const server = track(await startNatsServer());
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(server.version).toMatch(/^\d+\.\d+\.\d+/);
    const firstPid = server.pid();
    expect(firstPid).toBeGreaterThan(0);
    expect(existsSync(server.storeDir)).toBe(true);

    const nc = await connectTracked(server.url);
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const stream = uniqueName('harness');
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], storage: StorageType.File });
    const acks = await publishMany(js, `${stream}.orders`, 1, 100);
    expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(await streamMessages(jsm, stream)).toBe(100);

    // Watch for the client noticing the crash and coming back.
    const statuses: string[] = [];
    const reconnected = (async () => {
      for await (const s of nc.status()) {
        statuses.push(s.type);
        if (s.type === 'reconnect') return;
      }
    })();

    await server.kill();
    expect(server.pid()).toBeUndefined();
    await server.restart();
    expect(server.pid()).toBeGreaterThan(0);
    expect(server.pid()).not.toBe(firstPid);
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);

    await reconnected;
    expect(statuses).toContain('disconnect');
    expect(statuses).toContain('reconnect');

    const info = await jsm.streams.info(stream);
    expect(info.state.messages).toBe(100);
    expect(info.state.last_seq).toBe(100);
    expect(info.config.storage).toBe(StorageType.File);
    const last = await jsm.streams.getMessage(stream, { seq: 100 });
    expect(last?.string()).toBe('msg-100');
    // The restarted server keeps appending after the recovered sequence.
    expect((await js.publish(`${stream}.orders`, 'after-restart')).seq).toBe(101);
  });

  it('stop() exits gracefully and cleanup() removes the temp dir idempotently', async () => {
    const server = track(await startNatsServer());
    const storeDir = server.storeDir;
    await server.stop();
    expect(server.pid()).toBeUndefined();
    await server.stop(); // no-op when not running
    await server.cleanup();
    await server.cleanup();
    expect(existsSync(storeDir)).toBe(false);
    await expect(server.restart()).rejects.toMatchObject({ code: 'NATS_SERVER_NOT_RUNNING' });
  });

  it('pause() freezes the server and resume() brings it back', async () => {
    const server = track(await startNatsServer());
    const nc = await connectTracked(server.url);
    nc.subscribe('echo', {
      callback: (_err, msg) => {
        msg.respond(msg.data);
      },
    });
    await nc.flush();
    expect((await nc.request('echo', 'a', { timeout: 2_000 })).string()).toBe('a');

    server.pause();
    await expect(nc.request('echo', 'b', { timeout: 300 })).rejects.toThrow();
    server.resume();
    expect((await nc.request('echo', 'c', { timeout: 5_000 })).string()).toBe('c');
  });

  it('applies configText (subject mappings)', async () => {
    const server = track(
      await startNatsServer({ configText: 'mappings = { "a.*": "b.{{wildcard(1)}}" }' }),
    );
    const nc = await connectTracked(server.url);
    const sub = nc.subscribe('b.*', { max: 1 });
    await nc.flush();
    nc.publish('a.hello', 'mapped');
    const received = await (async () => {
      for await (const m of sub) return { subject: m.subject, data: m.string() };
      return undefined;
    })();
    expect(received).toEqual({ subject: 'b.hello', data: 'mapped' });
  });

  it('honours a fixed port and server name', async () => {
    const port = await freePort();
    const name = uniqueName('fixed');
    const server = track(await startNatsServer({ port, serverName: name }));
    expect(server.port).toBe(port);
    expect(server.name).toBe(name);
    const nc = await connectTracked(server.url);
    expect(nc.info?.server_name).toBe(name);
  });

  it('reports a missing binary with a stable error code', async () => {
    const err: unknown = await startNatsServer({ binary: '/nonexistent/nats-server' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NatsServerBinaryMissingError);
    expect(err).toMatchObject({ code: 'NATS_SERVER_BINARY_MISSING' });
  });

  it('includes the server output tail when startup fails', async () => {
    const err: unknown = await startNatsServer({ configText: 'this is { not valid' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NatsServerStartError);
    expect(err).toMatchObject({ code: 'NATS_SERVER_START_FAILED' });
    expect((err as NatsServerStartError).outputTail).not.toBe('');
    expect((err as NatsServerStartError).message).toContain('nats-server output');
  });
});

/** True while `pid` is a live process (a zombie awaiting reaping counts as dead). */
function isAlive(pid: number): boolean {
  try {
    // Field 3 of /proc/<pid>/stat is the state; 'Z' = exited, not yet reaped by init.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch (err) {
    // ENOENT: the process is gone entirely.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Runs a separate Node process that starts a server via the support module,
 * prints `<pid> <storeDir>`, then runs `then` ('exit' → process.exit(0); 'hang').
 */
async function startServerInChildProcess(
  then: 'exit' | 'hang',
): Promise<{ serverPid: number; storeDir: string; child: ReturnType<typeof spawn> }> {
  const supportModule = fileURLToPath(new URL('../support/nats-server.ts', import.meta.url));
  const code = [
    `const { startNatsServer } = await import(${JSON.stringify(supportModule)});`,
    'const s = await startNatsServer();',
    'process.stdout.write(`${s.pid()} ${s.storeDir}\\n`);',
    then === 'exit' ? 'process.exit(0);' : 'setInterval(() => undefined, 1000);',
  ].join('\n');
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buf += chunk.toString();
      if (buf.includes('\n')) resolve(buf.trim());
    });
    child.once('error', reject);
    // 'close' (not 'exit'): fires only after all stdout has been delivered.
    child.once('close', (c) => reject(new Error(`child ended without output (code ${String(c)})`)));
  });
  const [pid, storeDir] = line.split(' ');
  return { serverPid: Number(pid), storeDir: storeDir ?? '', child };
}

async function waitUntilDead(pid: number, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

describe.skipIf(process.platform !== 'linux')('servers never outlive the test process', () => {
  it('kills the server and removes its temp dir when the process exits normally', async () => {
    const { serverPid, storeDir, child } = await startServerInChildProcess('exit');
    // The exit hook finishes (kill + rm) before the child process is gone.
    const exitCode = await new Promise<number | null>((resolve) => {
      if (child.exitCode !== null) resolve(child.exitCode);
      else child.once('exit', resolve);
    });
    expect(exitCode).toBe(0);
    expect(await waitUntilDead(serverPid)).toBe(true);
    expect(existsSync(storeDir)).toBe(false);
  });

  it('kills the server even when the test process is SIGKILLed (setpriv --pdeathsig)', async () => {
    const { serverPid, storeDir, child } = await startServerInChildProcess('hang');
    teardown.push(() => rm(dirname(storeDir), { recursive: true, force: true }));
    expect(isAlive(serverPid)).toBe(true);
    child.kill('SIGKILL');
    expect(await waitUntilDead(serverPid)).toBe(true);
  });
});

describe('uniqueName', () => {
  it('produces distinct names valid for streams and buckets', () => {
    const names = new Set(Array.from({ length: 50 }, () => uniqueName('orders.v1 *>')));
    expect(names.size).toBe(50);
    for (const n of names) expect(n).toMatch(/^[A-Za-z0-9_-]+$/);
  });
});

describe('acquireNats', () => {
  const saved = { url: process.env['NATS_URL'], bin: process.env['NATS_SERVER_BIN'] };
  afterEach(() => {
    restoreEnv('NATS_URL', saved.url);
    restoreEnv('NATS_SERVER_BIN', saved.bin);
  });

  it('prefers NATS_URL without starting anything', async () => {
    // Never contacted: acquireNats only hands the URL through.
    process.env['NATS_URL'] = 'nats://127.0.0.1:1';
    const nats = await acquireNats();
    expect(nats).toMatchObject({ kind: 'env', url: 'nats://127.0.0.1:1' });
    expect(nats.server).toBeUndefined();
    await nats.release();
  });

  it('falls back to the local binary', async () => {
    delete process.env['NATS_URL'];
    const nats = await acquireNats();
    teardown.push(() => nats.release());
    expect(nats.kind).toBe('binary');
    const nc = await connectTracked(nats.url);
    const jsm = await jetstreamManager(nc);
    expect((await jsm.getAccountInfo()).streams).toBe(0);
    await nats.release();
    expect(nats.server?.pid()).toBeUndefined();
  });

  it('uses a container or fails clearly when neither binary nor Docker exists', async () => {
    delete process.env['NATS_URL'];
    process.env['NATS_SERVER_BIN'] = '/nonexistent/nats-server';
    const outcome = await acquireNats().then(
      async (nats) => {
        await nats.release();
        return { kind: nats.kind };
      },
      (err: unknown) => ({ err }),
    );
    if ('kind' in outcome) {
      expect(outcome.kind).toBe('container'); // a Docker engine is reachable here
    } else {
      expect(outcome.err).toMatchObject({ code: 'NATS_UNAVAILABLE' });
      expect(String(outcome.err)).toMatch(/NATS_URL.*Docker/s);
    }
  });
});

function restoreEnv(key: string, value: string | undefined): void {
  if (value === undefined) delete process.env[key];
  else process.env[key] = value;
}

describe('startNatsCluster', () => {
  it('keeps an R3 stream available when a node dies and catches the node up on restart', async () => {
    const cluster: NatsCluster = track(await startNatsCluster());
    expect(cluster.servers).toHaveLength(3);
    expect(cluster.url.split(',')).toEqual(cluster.urls);

    const nc = await connectTracked(cluster.urls);
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const stream = uniqueName('harness_r3');
    const subject = `${stream}.orders`;
    await jsm.streams.add({
      name: stream,
      subjects: [`${stream}.>`],
      storage: StorageType.File,
      num_replicas: 3,
    });
    await publishMany(js, subject, 1, 50);

    // Kill the stream leader: the worst case for availability.
    const leaderName = (await jsm.streams.info(stream)).cluster?.leader;
    const victim: NatsServerHandle | undefined = cluster.servers.find((s) => s.name === leaderName);
    expect(victim).toBeDefined();
    if (victim === undefined) return;
    await victim.kill();

    await publishMany(js, subject, 51, 100);
    // Generous bounds (not assertions): on 2.9.10 electing new meta and stream leaders after the
    // leader's node dies takes several seconds, more on a loaded CI machine.
    const afterFailover = await eventually(
      'stream info after failover',
      () => jsm.streams.info(stream),
      90_000,
    );
    expect(afterFailover.state.messages).toBe(100);
    expect(afterFailover.cluster?.leader).not.toBe(victim.name);

    // Read everything back through an ordered consumer on the surviving nodes.
    // Retried as a whole: right after a failover the meta/stream leaders may
    // still be settling (consumer create timeouts, missed idle heartbeats).
    const seen = await eventually(
      'read all messages after failover',
      async () => {
        const consumer = await js.consumers.get(stream);
        const batch = await consumer.fetch({ max_messages: 100, expires: 5_000 });
        const got: string[] = [];
        for await (const m of batch) got.push(m.string());
        if (got.length < 100) throw new Error(`only ${got.length} of 100 messages read`);
        return got;
      },
      90_000,
    );
    expect(seen).toEqual(Array.from({ length: 100 }, (_, i) => `msg-${i + 1}`));

    await victim.restart();
    await waitForJetStream(victim);
    const caughtUp = await eventually('restarted replica is current', async () => {
      const info = await jsm.streams.info(stream);
      const replicas = [info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((r) => r.name)];
      const lagging = (info.cluster?.replicas ?? []).filter(
        (r) => !r.current || r.offline === true,
      );
      if (!replicas.includes(victim.name) || lagging.length > 0) {
        throw new Error(`replicas not current yet: ${JSON.stringify(info.cluster)}`);
      }
      return info;
    });
    expect(caughtUp.state.messages).toBe(100);

    // A client pinned to the restarted node sees the full stream.
    const direct = await connectTracked(victim.url);
    expect(await streamMessages(await jetstreamManager(direct), stream)).toBe(100);
  }, 240_000);
});
