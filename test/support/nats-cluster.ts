// A real multi-node JetStream cluster on loopback, one nats-server process per
// node. Ports are fixed up front so every node can restart on the same client
// port, the same route port and its own store dir.

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  NatsServerStartError,
  startNatsServer,
  waitForJetStream,
  type NatsServerHandle,
} from './nats-server.js';
import { freePorts } from './ports.js';

export interface StartNatsClusterOptions {
  /** Number of nodes; default 3 (JetStream needs >= 3 for R3 streams). */
  size?: number;
  /** Extra config appended to every node (e.g. `accounts { ... }`). */
  configText?: string;
  /** Path to nats-server; see `startNatsServer`. */
  binary?: string;
  /** Budget for the whole cluster to form and elect a meta leader; default 60s. */
  startTimeoutMs?: number;
  /**
   * Do not tell clients about the other nodes (`cluster { no_advertise: true }`). Needed when
   * clients reach the cluster through relays (the chaos harness): otherwise a client learns the
   * nodes' real addresses from INFO and may reconnect around the relay.
   */
  noAdvertise?: boolean;
  /** Every node with `sync_interval: always` where the server has it (see startNatsServer). */
  syncAlways?: boolean;
}

export interface NatsCluster {
  /** One handle per node; `restart()` keeps the node's ports and store dir. */
  servers: NatsServerHandle[];
  /** Client URL of every node. */
  urls: string[];
  /**
   * All client URLs, comma separated (for env vars/CLI flags such as the `nats`
   * CLI's --server). nats.js does not split commas: pass `urls` to `connect()`.
   */
  url: string;
  /** Kills every node and removes their temp dirs. Idempotent. */
  cleanup(): Promise<void>;
}

const POLL_MS = 20;

/** The nodes started but their meta group never took every one of them in. */
export class ClusterFormationError extends Error {
  override readonly name = 'ClusterFormationError';
}
/**
 * Attempts at starting a cluster: a pre-picked port taken by someone else before the server bound
 * it, or a meta group formed without one of the nodes, is retried with a fresh cluster.
 */
const START_ATTEMPTS = 3;

export async function startNatsCluster(opts: StartNatsClusterOptions = {}): Promise<NatsCluster> {
  const size = opts.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`invalid cluster size: ${size}`);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startClusterOnce(size, opts);
    } catch (err) {
      const portRace =
        err instanceof NatsServerStartError && /address already in use/i.test(err.outputTail);
      // 2.10.27 sometimes forms its meta group without one of the nodes started at the same
      // moment (cluster_size 2, the third never added): a fresh cluster is the way out.
      const partialMeta = err instanceof ClusterFormationError;
      if ((!portRace && !partialMeta) || attempt >= START_ATTEMPTS) throw err;
      // Retry with a fresh set of ports (the collision was with another process) and dirs.
      console.warn(
        `[nats-cluster] ${portRace ? 'port collision' : err.message} on attempt ${attempt}; retrying with a fresh cluster`,
      );
    }
  }
}

async function startClusterOnce(size: number, opts: StartNatsClusterOptions): Promise<NatsCluster> {
  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  const ports = await freePorts(size * 2);
  const clientPorts = ports.slice(0, size);
  const routePorts = ports.slice(size);
  const clusterName = `c_${randomBytes(4).toString('hex')}`;

  // Start all nodes concurrently and only wait for their client ports: no node
  // can report healthy JetStream before a quorum of peers is up.
  const started = await Promise.allSettled(
    clientPorts.map((port, i) =>
      startNatsServer({
        port,
        serverName: `${clusterName}_n${i + 1}`,
        readiness: 'listening',
        startTimeoutMs: timeoutMs,
        configText: [
          'cluster {',
          `  name: ${JSON.stringify(clusterName)}`,
          `  listen: ${JSON.stringify(`127.0.0.1:${routePorts[i]}`)}`,
          '  routes: [',
          ...routePorts
            .filter((_, j) => j !== i)
            .map((p) => `    ${JSON.stringify(`nats-route://127.0.0.1:${p}`)}`),
          '  ]',
          ...(opts.noAdvertise === true ? ['  no_advertise: true'] : []),
          '}',
          opts.configText ?? '',
        ].join('\n'),
        ...(opts.binary !== undefined ? { binary: opts.binary } : {}),
        ...(opts.syncAlways !== undefined ? { syncAlways: opts.syncAlways } : {}),
      }),
    ),
  );
  const servers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  let cleanupPromise: Promise<void> | undefined;
  const cleanup = (): Promise<void> => {
    cleanupPromise ??= Promise.all(servers.map((s) => s.cleanup())).then(() => undefined);
    return cleanupPromise;
  };

  try {
    const failure = started.find((r) => r.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
    await Promise.all(servers.map((s) => waitForJetStream(s, Math.max(1, deadline - Date.now()))));
    const urls = servers.map((s) => s.url);
    await waitForMetaLeader(urls, deadline);
    // Once a leader is there, the others join within seconds; a group still short of a node
    // after 20 s does not take it in (see ClusterFormationError), so fail early and retry.
    await waitForMetaPeers(servers, Math.min(deadline, Date.now() + 20_000));
    return { servers, urls, url: urls.join(','), cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

interface MetaClusterView {
  readonly leader?: string;
  readonly replicas?: readonly { readonly current?: boolean }[];
}

/**
 * A meta leader alone does not mean every peer is known: an R3 stream created right then fails
 * with "no suitable peers for placement". Waits until the leader's `/jsz` lists every other node
 * as a current peer.
 */
async function waitForMetaPeers(
  servers: readonly NatsServerHandle[],
  deadline: number,
): Promise<void> {
  let last = 'no answer';
  for (;;) {
    for (const server of servers) {
      const base = server.monitorUrl();
      if (base === undefined) continue;
      try {
        const res = await fetch(`${base}/jsz`, { signal: AbortSignal.timeout(2_000) });
        const meta = ((await res.json()) as { meta_cluster?: MetaClusterView }).meta_cluster;
        const replicas = meta?.replicas ?? [];
        last = JSON.stringify(meta ?? {});
        if (
          meta?.leader === server.name &&
          replicas.length === servers.length - 1 &&
          replicas.every((r) => r.current === true)
        )
          return;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
    }
    if (Date.now() > deadline)
      throw new ClusterFormationError(`JetStream cluster peers not all current: ${last}`);
    await sleep(50);
  }
}

/** Polls JetStream account info through a client until the meta layer answers. */
async function waitForMetaLeader(urls: string[], deadline: number): Promise<void> {
  const nc: NatsConnection = await connect({ servers: urls, name: 'nats-cluster-readiness' });
  try {
    for (;;) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2_000 });
        await jsm.getAccountInfo();
        return;
      } catch (err) {
        // 503 / timeouts are expected until a meta leader is elected; retry
        // until the deadline, then surface the last error.
        if (Date.now() > deadline) {
          throw new Error('JetStream cluster did not elect a meta leader in time', { cause: err });
        }
      }
      await sleep(POLL_MS);
    }
  } finally {
    await nc.close();
  }
}
