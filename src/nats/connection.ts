import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type Authenticator,
  type NatsConnection,
} from '@nats-io/transport-node';
import type { NatsConfig } from '../config/config.js';
import type { Logger } from '../logging/logger.js';

/**
 * Opens a connection that never gives up reconnecting: workers and publishers must ride out
 * server restarts and rolling upgrades of a NATS cluster, not crash on them.
 */
export async function connectNats(
  config: NatsConfig,
  name: string,
  log?: Logger,
): Promise<NatsConnection> {
  const nc = await connect({
    servers: [...config.servers],
    name,
    maxReconnectAttempts: -1,
    // nats.js builds an Error with a stack for every request by default, to improve traces of
    // timeouts; at a few thousand KV requests a second that is measurable CPU.
    noAsyncTraces: true,
    reconnectTimeWait: 250,
    waitOnFirstConnect: false,
    ...(config.user === undefined ? {} : { user: config.user }),
    ...(config.password === undefined ? {} : { pass: config.password }),
    ...(config.token === undefined ? {} : { token: config.token }),
    ...authenticator(config),
    ...(config.inboxPrefix === undefined ? {} : { inboxPrefix: config.inboxPrefix }),
    ...(config.tls === undefined
      ? {}
      : {
          tls: {
            ...(config.tls.ca === undefined ? {} : { caFile: config.tls.ca }),
            ...(config.tls.cert === undefined ? {} : { certFile: config.tls.cert }),
            ...(config.tls.key === undefined ? {} : { keyFile: config.tls.key }),
          },
        }),
  });
  // Owned by the connection: the status iterator ends when the connection closes. A failure of
  // this logging loop must never become an unhandled rejection (which would end the process).
  if (log !== undefined)
    watchStatus(nc, log).catch((err: unknown) => {
      log.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'nats status watch failed',
      );
    });
  return nc;
}

/** Creds file (JWT) or NKey seed, inline or from a file; nothing when neither is given. */
function authenticator(config: NatsConfig): { authenticator?: Authenticator } {
  if (config.creds !== undefined)
    return { authenticator: credsAuthenticator(readFileSync(config.creds)) };
  const seed =
    config.nkeySeed ??
    (config.nkeySeedFile === undefined
      ? undefined
      : readFileSync(config.nkeySeedFile, 'utf8').trim());
  if (seed === undefined) return {};
  return { authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)) };
}

/** Logs connection status changes (disconnects, reconnects) so operators can see them. */
async function watchStatus(nc: NatsConnection, log: Logger): Promise<void> {
  for await (const status of nc.status()) {
    switch (status.type) {
      case 'disconnect':
      case 'reconnect':
      case 'error':
      case 'ldm':
        log.warn(
          { status: status.type, server: 'server' in status ? status.server : undefined },
          'nats connection status',
        );
        break;
      default:
        log.debug({ status: status.type }, 'nats connection status');
    }
  }
}
