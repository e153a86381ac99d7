// One entry point for integration tests that just need "a NATS with JetStream":
// NATS_URL (externally managed) → local nats-server binary → Docker container.

import { randomBytes } from 'node:crypto';
import {
  NatsServerBinaryMissingError,
  NatsTestSupportError,
  startNatsServer,
  type NatsServerHandle,
} from './nats-server.js';

export { freePort, freePorts } from './ports.js';

export type AcquiredNatsKind = 'env' | 'binary' | 'container';

export interface AcquiredNats {
  url: string;
  kind: AcquiredNatsKind;
  /** Present when `kind === 'binary'`: full control (kill/restart/pause). */
  server?: NatsServerHandle;
  /** Stops what was started (no-op for `env`). Idempotent. */
  release(): Promise<void>;
}

/** Image for the container fallback; must contain /bin/sh (see startContainer). */
const DEFAULT_CONTAINER_IMAGE = 'nats:2.10-alpine';

export class NatsUnavailableError extends NatsTestSupportError {
  constructor(message: string, options?: ErrorOptions) {
    super('NATS_UNAVAILABLE', message, options);
  }
}

/**
 * Order of choice:
 * 1. `NATS_URL` when set (the caller owns that server; nothing is started or stopped),
 * 2. the local nats-server binary (`NATS_SERVER_BIN` / PATH / /usr/sbin),
 * 3. `@testcontainers/nats`, only if a Docker engine is reachable.
 * Throws {@link NatsUnavailableError} when none is available.
 */
export async function acquireNats(): Promise<AcquiredNats> {
  const envUrl = process.env['NATS_URL'];
  if (envUrl !== undefined && envUrl.trim() !== '') {
    return { url: envUrl.trim(), kind: 'env', release: () => Promise.resolve() };
  }

  let binaryMissing: NatsServerBinaryMissingError;
  try {
    const server = await startNatsServer();
    return { url: server.url, kind: 'binary', server, release: () => server.cleanup() };
  } catch (err) {
    // Only a missing binary falls through to Docker; a binary that exists but
    // fails to start is a real problem that must not be masked.
    if (!(err instanceof NatsServerBinaryMissingError)) throw err;
    binaryMissing = err;
  }

  const dockerProblem = await findDockerProblem();
  if (dockerProblem !== undefined) {
    throw new NatsUnavailableError(
      'No NATS available for integration tests: NATS_URL is not set, ' +
        `${binaryMissing.message}, and no Docker engine is reachable (${dockerProblem}).`,
      { cause: binaryMissing },
    );
  }
  try {
    return await startContainer();
  } catch (err) {
    // A reachable engine without the image (no registry here) is the common case on CI
    // machines: say what was tried instead of surfacing a pull error from deep inside.
    throw new NatsUnavailableError(
      'No NATS available for integration tests: NATS_URL is not set, ' +
        `${binaryMissing.message}, and the Docker engine could not start ${containerImage()} ` +
        `(set NATS_CONTAINER_IMAGE to a local image): ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

function containerImage(): string {
  return process.env['NATS_CONTAINER_IMAGE'] ?? DEFAULT_CONTAINER_IMAGE;
}

/**
 * A fresh server of the test's own (never NATS_URL's shared one): the local binary, or a
 * container when `NATS_TEST_BACKEND=container` (CI's container stage runs an integration file
 * this way, with the image in `NATS_CONTAINER_IMAGE`) or when no binary exists.
 */
export async function startOwnNats(): Promise<AcquiredNats> {
  if (process.env['NATS_TEST_BACKEND'] === 'container') return startContainer();
  try {
    const server = await startNatsServer();
    return { url: server.url, kind: 'binary', server, release: () => server.cleanup() };
  } catch (err) {
    if (!(err instanceof NatsServerBinaryMissingError)) throw err;
    const dockerProblem = await findDockerProblem();
    if (dockerProblem !== undefined) {
      throw new NatsUnavailableError(
        `No NATS for this test: ${err.message}, and no Docker engine is reachable (${dockerProblem}).`,
        { cause: err },
      );
    }
    return startContainer();
  }
}

/** `${prefix}_<random>` restricted to [A-Za-z0-9_-] (valid stream, consumer, KV bucket name). */
export function uniqueName(prefix: string): string {
  const safePrefix = prefix.replace(/[^A-Za-z0-9_-]/g, '_');
  return `${safePrefix}_${randomBytes(6).toString('hex')}`;
}

/** Returns undefined when Docker is usable, else a short reason. */
async function findDockerProblem(): Promise<string | undefined> {
  try {
    // Dynamic import: testcontainers is heavy and only needed on this path.
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return undefined;
  } catch (err) {
    // Not an error of ours: "no Docker" is an expected state, reported by the caller.
    return err instanceof Error ? err.message : String(err);
  }
}

async function startContainer(): Promise<AcquiredNats> {
  const { NatsContainer } = await import('@testcontainers/nats');
  const image = containerImage();
  // NatsContainer always adds `--user test --pass test`, but nats.js ignores
  // credentials embedded in a URL, so callers that only get `url` could not
  // authenticate. Run the server through `sh -c` instead: the container's
  // command (NatsContainer's args) lands in the ignored positional parameters.
  const container = await new NatsContainer(image)
    .withJetStream()
    .withEntrypoint([
      '/bin/sh',
      '-c',
      'exec nats-server --jetstream --port 4222 --http_port 8222',
      'nats-server',
    ])
    .start();
  let released: Promise<void> | undefined;
  return {
    url: `nats://${container.getHost()}:${container.getMappedPort(4222)}`,
    kind: 'container',
    release: () => {
      released ??= container.stop().then(() => undefined);
      return released;
    },
  };
}
