// Least-privilege fixtures: run the real `order-fleet auth init`, start a real nats-server that
// includes the generated nats-auth.conf, and connect as a role from that role's files alone.

import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { expect } from 'vitest';
import { ROLES, type Role } from '../../src/auth/roles.js';
import { loadConfig } from '../../src/config/config.js';
import { resourceNames, type ResourceNames } from '../../src/contract/names.js';
import { connectNats } from '../../src/nats/connection.js';
import { spawnCli, type CliResult, type TestDeployment } from './fleet.js';
import { startNatsServer, type NatsServerHandle } from './nats-server.js';

export interface AuthFixture {
  readonly dir: string;
  readonly tls: boolean;
  readonly server: NatsServerHandle;
  readonly url: string;
  readonly names: ResourceNames;
  /** The variables of `<role>.env`, plus NATS_URL. */
  env(role: Role): Record<string, string>;
  /** Connects in process with nothing but the role's env file (and NATS_URL). */
  connectAs(role: Role, extra?: Record<string, string>): Promise<NatsConnection>;
  /** Every secret `auth init` generated: NKey seeds, the webhook secret, private keys. */
  secrets(): Promise<string[]>;
  close(): Promise<void>;
}

/** Runs `order-fleet <args>` as a real process with exactly the given environment (plus PATH). */
export function runCliWith(
  args: readonly string[],
  env: Record<string, string>,
): Promise<CliResult> {
  return spawnCli(args, { PATH: process.env['PATH'] ?? '', LOG_LEVEL: 'warn', ...env });
}

export async function startAuthFixture(
  opts: { tls: boolean; namespace?: string } = { tls: false },
): Promise<AuthFixture> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'order-fleet-auth-'));
  const namespace = opts.namespace ?? '';
  const init = await runCliWith(
    ['auth', 'init', '--out', dir, ...(opts.tls ? ['--tls', '--hosts', 'nats.fleet.test'] : [])],
    namespace === '' ? {} : { ORDER_FLEET_NAMESPACE: namespace },
  );
  if (init.code !== 0) throw new Error(`auth init failed: ${init.stderr}`);
  const envs = new Map<Role, Record<string, string>>();
  for (const role of ROLES) {
    const parsed = parseEnv(await readFile(path.join(dir, `${role}.env`), 'utf8'));
    const clean: Record<string, string> = {};
    for (const [k, v] of Object.entries(parsed)) if (typeof v === 'string') clean[k] = v;
    envs.set(role, clean);
  }
  const server = await startNatsServer({ includeFiles: [path.join(dir, 'nats-auth.conf')] });
  const url = server.url;
  const env = (role: Role): Record<string, string> => ({ ...envs.get(role), NATS_URL: url });
  return {
    dir,
    tls: opts.tls,
    server,
    url,
    names: resourceNames(namespace),
    env,
    connectAs: (role, extra = {}) =>
      connectNats(loadConfig({ ...env(role), ...extra }).nats, `test-as-${role}`),
    secrets: async () => {
      const out: string[] = [];
      for (const role of ROLES) out.push(env(role)['NATS_NKEY_SEED'] ?? '');
      const webhook = (await readFile(path.join(dir, 'webhook-secret'), 'utf8')).trim();
      out.push(webhook, webhook.slice('whsec_'.length));
      for (const file of await readdir(dir)) {
        if (!file.endsWith('-key.pem')) continue;
        const pem = await readFile(path.join(dir, file), 'utf8');
        // The key's base64 body, line by line: any line of it in a log is a leak.
        out.push(...pem.split('\n').filter((l) => l !== '' && !l.startsWith('-----')));
      }
      return out.filter((s) => s.length >= 16);
    },
    close: async () => {
      await server.cleanup();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A TestDeployment whose own connection is the admin role's (setup already ran through the CLI). */
export async function deploymentAs(
  fx: AuthFixture,
  partitions: number,
  env: Readonly<Record<string, string>> = {},
): Promise<TestDeployment> {
  const nc = await fx.connectAs('admin');
  return {
    url: fx.url,
    namespace: fx.names.namespace,
    names: fx.names,
    partitions,
    nc,
    env: {
      NATS_URL: fx.url,
      LOG_LEVEL: 'info',
      HEARTBEAT_MS: '250',
      CHECKPOINT_INTERVAL_MS: '200',
      ...env,
    },
    close: async () => {
      await nc.drain();
    },
  };
}

/** The error, or a cause of it, that the server's permission check raised. */
export function permissionViolation(err: unknown): PermissionViolationError | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 5; depth++) {
    if (e instanceof PermissionViolationError) return e;
    e = e instanceof Error ? e.cause : undefined;
  }
  return undefined;
}

/**
 * Expects the server to refuse: the promise must reject with the server's permission error (not
 * a timeout, not another error), for `operation` on `subject` when given.
 */
export async function expectDenied(
  what: string,
  attempt: Promise<unknown> | (() => Promise<unknown>),
  expected: { operation?: 'publish' | 'subscription'; subject?: string } = {},
): Promise<void> {
  let error: unknown;
  try {
    await (typeof attempt === 'function' ? attempt() : attempt);
  } catch (err) {
    error = err;
  }
  expect(error, `${what}: expected a permission violation, but it succeeded`).toBeDefined();
  const violation = permissionViolation(error);
  expect(
    violation,
    `${what}: expected a permission violation, got ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
  ).toBeInstanceOf(PermissionViolationError);
  if (expected.operation !== undefined) expect(violation?.operation, what).toBe(expected.operation);
  if (expected.subject !== undefined) expect(violation?.subject, what).toBe(expected.subject);
}

/** A core subscription the server refuses: `closed` resolves with the permission error. */
export async function expectSubscribeDenied(nc: NatsConnection, subject: string): Promise<void> {
  const sub = nc.subscribe(subject);
  // The server answers SUB before the PING of a flush, so after it the refusal has arrived.
  await nc.flush();
  const closed = await Promise.race([sub.closed, Promise.resolve('still open' as const)]);
  expect(closed, `subscribe ${subject}`).toBeInstanceOf(PermissionViolationError);
  if (closed instanceof PermissionViolationError) {
    expect(closed.operation).toBe('subscription');
    expect(closed.subject).toBe(subject);
  }
}

/**
 * Speaks the first steps of the NATS protocol by hand, to see what the server does with a client
 * that brings no valid certificate: read INFO, upgrade to TLS with the given files (or not at
 * all), send CONNECT + PING. Resolves with the server's answer: a TLS alert code, its first
 * protocol line, or 'closed'.
 */
export function probeServer(
  url: string,
  tlsFiles: { ca: string; cert?: string; key?: string } | undefined,
): Promise<{ info: Record<string, unknown>; outcome: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = netConnect(Number(port), hostname);
    let buffered = '';
    let info: Record<string, unknown> = {};
    const done = (outcome: string): void => {
      resolve({ info, outcome });
      sock.destroy();
    };
    sock.setEncoding('utf8');
    sock.on('error', (err: NodeJS.ErrnoException) => done(`error ${err.code ?? err.message}`));
    const onInfo = (chunk: string): void => {
      buffered += chunk;
      const end = buffered.indexOf('\r\n');
      if (end < 0) return;
      sock.off('data', onInfo);
      try {
        info = JSON.parse(buffered.slice('INFO '.length, end)) as Record<string, unknown>;
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      const hello = 'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n';
      if (tlsFiles === undefined) {
        sock.on('data', (d: string) => done(`line ${d.split('\r\n')[0] ?? ''}`));
        sock.on('close', () => done('closed'));
        sock.write(hello);
        return;
      }
      void (async () => {
        const secure = tlsConnect({
          socket: sock,
          servername: 'localhost',
          ca: await readFile(tlsFiles.ca),
          ...(tlsFiles.cert === undefined ? {} : { cert: await readFile(tlsFiles.cert) }),
          ...(tlsFiles.key === undefined ? {} : { key: await readFile(tlsFiles.key) }),
        });
        secure.setEncoding('utf8');
        secure.on('error', (err: NodeJS.ErrnoException) => done(`tls ${err.code ?? err.message}`));
        secure.on('secureConnect', () => secure.write(hello));
        secure.on('data', (d: string) => done(`line ${d.split('\r\n')[0] ?? ''}`));
        secure.on('close', () => done('closed'));
      })();
    };
    sock.on('data', onInfo);
  });
}
