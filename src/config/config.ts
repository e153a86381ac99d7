import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { NamespaceSchema } from '../contract/names.js';
import { TimerLayoutSchema, type TimerLayout } from '../nats/deployment.js';

/**
 * Every setting of order-fleet, in one zod schema keyed by its environment variable name.
 * Sources, later wins: defaults → environment → CLI flags (passed as `overrides` under the same
 * names). The result is parsed once into a deeply readonly {@link Config}; modules receive the
 * part they need and never read `process.env` themselves.
 */
// Whole decimal numbers only: `z.coerce.number()` would read " " as 0 and accept "1e3" or "0x10".
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^\d+$/u, 'must be a whole decimal number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const optionalString = z.string().min(1).optional();

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export const EnvSchema = z.object({
  NATS_URL: z
    .string()
    .default('nats://127.0.0.1:4222')
    .transform((s) =>
      s
        .split(',')
        .map((u) => u.trim())
        .filter((u) => u.length > 0),
    )
    .pipe(
      z
        .array(
          z
            .string()
            .regex(
              /^(nats|tls|ws|wss):\/\/[^\s]+$|^[^\s:/]+:\d+$/u,
              'each server must look like nats://host:port',
            ),
        )
        .min(1, 'at least one server is required'),
    ),
  NATS_CREDS: optionalString,
  NATS_USER: optionalString,
  NATS_PASSWORD: optionalString,
  NATS_TOKEN: optionalString,
  NATS_TLS: bool.default(false),
  NATS_TLS_CA: optionalString,
  NATS_TLS_CERT: optionalString,
  NATS_TLS_KEY: optionalString,
  // NKey authentication (what `order-fleet auth init` generates): the seed itself, or a file
  // holding it. Secret: never logged.
  NATS_NKEY_SEED: z
    .string()
    .regex(/^SU[A-Z2-7]{56}$/u, 'must be a NATS user nkey seed (SU…, 58 characters)')
    .optional(),
  NATS_NKEY_SEED_FILE: optionalString,
  // Prefix of this process's reply subjects. Each role gets its own (`auth init`), and may only
  // subscribe below it, so one role cannot read another's replies.
  NATS_INBOX_PREFIX: z
    .string()
    .regex(
      /^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/u,
      'must be one or more subject tokens without wildcards, e.g. _INBOX.worker',
    )
    .optional(),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  ORDER_FLEET_NAMESPACE: NamespaceSchema.default(''),

  // Provisioning (`order-fleet setup`). PARTITIONS is fixed once a deployment exists.
  // Unset means: keep what the deployment stores (32 for a new one).
  PARTITIONS: int(1, 4096).optional(),
  // Unset keeps the stored timer layout (`state` for a new deployment); `state` switches an
  // `index` deployment once every live worker supports it (docs/architecture.md).
  TIMER_LAYOUT: TimerLayoutSchema.optional(),
  ORDERS_REPLICAS: int(1, 5).default(1),
  // How long setup waits out a cluster that is still forming (transient errors, and "no suitable
  // peers" while the last peer joins) before it fails.
  SETUP_WAIT_MS: int(0, 3_600_000).default(60_000),
  ORDERS_MAX_AGE_MS: int(0).default(7 * 24 * 3600 * 1000),
  ORDERS_DUPLICATE_WINDOW_MS: int(1000).default(2 * 60 * 1000),
  // Notifications stream: the duplicate window must outlast the longest replay (see README).
  NOTIFICATIONS_DUPLICATE_WINDOW_MS: int(1000).default(24 * 3600 * 1000),
  NOTIFICATIONS_MAX_AGE_MS: int(0).default(7 * 24 * 3600 * 1000),
  // TTL of partition leases and of membership entries (a KV bucket TTL, fixed by setup).
  LEASE_TTL_MS: int(500, 600_000).default(8000),

  // Event limits, enforced by publishers and again by workers.
  MAX_PAYLOAD_BYTES: int(64, 1024 * 1024).default(16 * 1024),
  MAX_ITEMS_PER_EVENT: int(1, 100_000).default(1000),

  // Worker.
  WORKER_ID: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/u, 'WORKER_ID may only contain letters, digits, _ and - (max 64)')
    .optional(),
  CHECKPOINT_EVERY_EVENTS: int(1).default(5000),
  CHECKPOINT_INTERVAL_MS: int(10).default(1000),
  // Checkpoint once a partition has had nothing new for this long (0: off, the interval only).
  CHECKPOINT_IDLE_MS: int(0).default(100),
  CHECKPOINT_CONCURRENCY: int(1, 1024).default(64),
  MAX_CUSTOMERS_IN_MEMORY: int(1).default(250_000),
  SHUTDOWN_GRACE_MS: int(100).default(25_000),
  QUERY_TIMEOUT_MS: int(10).default(1000),
  HEARTBEAT_MS: int(50, 60_000).default(1000),
  // Admin HTTP server (/healthz, /readyz, /metrics); unset = off.
  ADMIN_PORT: int(0, 65535).optional(),
  ADMIN_HOST: z.string().min(1).default('0.0.0.0'),
  FLEET_GAUGES_INTERVAL_MS: int(250, 3_600_000).default(10_000),
  // Summary windows: close after this much quiet, or this long after opening.
  SUMMARY_QUIET_MS: int(50).default(30_000),
  SUMMARY_MAX_MS: int(50).default(5 * 60_000),
  TIMER_TICK_MS: int(5, 10_000).default(100),

  // Notifier.
  NOTIFIER_SINK: z.enum(['stdout', 'file', 'webhook']).default('stdout'),
  NOTIFIER_FILE: optionalString,
  NOTIFIER_WEBHOOK_URL: z.url().optional(),
  NOTIFIER_WEBHOOK_TIMEOUT_MS: int(10).default(5000),
  // Standard Webhooks signing secrets (`whsec_<base64>`), space-separated: two during a rotation.
  NOTIFIER_WEBHOOK_SECRET: z
    .string()
    .regex(
      /^\s*whsec_[A-Za-z0-9+/]+={0,2}(\s+whsec_[A-Za-z0-9+/]+={0,2})*\s*$/u,
      'must be one or more whsec_<base64> secrets separated by spaces',
    )
    .transform((s) => s.trim().split(/\s+/u))
    .optional(),
  NOTIFIER_WEBHOOK_SECRET_FILE: optionalString,
  NOTIFIER_MAX_IN_FLIGHT: int(1, 10_000).default(64),

  // Console (`order-fleet console`).
  CONSOLE_PORT: int(0, 65535).default(8080),
  CONSOLE_HOST: z.string().min(1).default('127.0.0.1'),
  CONSOLE_ADMIN_TOKEN: z
    .string()
    .min(16, 'CONSOLE_ADMIN_TOKEN must be at least 16 characters')
    .optional(),
  CONSOLE_CONSUMER_POLL_MS: int(1000).default(15_000),

  // Publisher.
  PUBLISH_MAX_IN_FLIGHT: int(1, 100_000).default(1024),
  PUBLISH_MAX_ATTEMPTS: int(1, 1000).default(30),
  PUBLISH_TIMEOUT_MS: int(100).default(5000),
});

export type EnvName = keyof typeof EnvSchema.shape;
export type EnvInput = Partial<Record<EnvName, string | undefined>>;

export interface NatsConfig {
  readonly servers: readonly string[];
  readonly creds?: string;
  readonly user?: string;
  readonly password?: string;
  readonly token?: string;
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
  /** NKey seed (secret). */
  readonly nkeySeed?: string;
  /** File holding the NKey seed, read when connecting. */
  readonly nkeySeedFile?: string;
  /** Reply-subject prefix (nats.js `inboxPrefix`). */
  readonly inboxPrefix?: string;
}

export interface Config {
  readonly nats: NatsConfig;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  readonly namespace: string;
  readonly setup: {
    /** Requested partition count; undefined keeps the stored one (or the default for a new one). */
    readonly partitions: number | undefined;
    /** Requested timer layout; undefined keeps the stored one (or the default for a new one). */
    readonly timerLayout: TimerLayout | undefined;
    readonly replicas: number;
    /** How long to wait out a forming cluster before failing. */
    readonly waitMs: number;
    readonly maxAgeMs: number;
    readonly duplicateWindowMs: number;
    readonly leaseTtlMs: number;
    readonly notificationsDuplicateWindowMs: number;
    readonly notificationsMaxAgeMs: number;
  };
  readonly limits: { readonly maxPayloadBytes: number; readonly maxItemsPerEvent: number };
  readonly worker: {
    readonly id: string;
    readonly checkpointEveryEvents: number;
    readonly checkpointIntervalMs: number;
    /** Checkpoint a partition quiet for this long (0: off). */
    readonly checkpointIdleMs: number;
    readonly checkpointConcurrency: number;
    readonly maxCustomersInMemory: number;
    readonly shutdownGraceMs: number;
    /** Membership heartbeat interval. */
    readonly heartbeatMs: number;
    readonly summary: { readonly quietMs: number; readonly maxMs: number };
    readonly timerTickMs: number;
    /** Admin HTTP server; undefined port = disabled. */
    readonly admin: {
      readonly port: number | undefined;
      readonly host: string;
      /** How often the elected reporter reads the fleet-wide gauges (lag, unowned, dead letters). */
      readonly fleetGaugesIntervalMs: number;
    };
  };
  readonly notifier: {
    readonly sink: 'stdout' | 'file' | 'webhook';
    readonly file: string | undefined;
    readonly webhookUrl: string | undefined;
    readonly webhookTimeoutMs: number;
    /** Signing secrets given inline (secret); empty when none. */
    readonly webhookSecrets: readonly string[];
    /** File with signing secrets (one per line), read when the notifier starts. */
    readonly webhookSecretFile: string | undefined;
    readonly maxInFlight: number;
  };
  readonly query: { readonly timeoutMs: number };
  readonly console: {
    readonly port: number;
    readonly host: string;
    /** Needed for actions (redrive); without it the console is read-only. */
    readonly adminToken: string | undefined;
    /** How often the partitions' consumer info is polled (costly on 2.9: keep it rare). */
    readonly consumerPollMs: number;
  };
  readonly publisher: {
    readonly maxInFlight: number;
    readonly maxAttempts: number;
    readonly timeoutMs: number;
  };
}

/** The default worker id: the host name (a pod name on Kubernetes) plus a random suffix. */
export function defaultWorkerId(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9_-]/gu, '-')
      .slice(0, 48) || 'worker';
  return `${host}-${randomBytes(3).toString('hex')}`;
}

/**
 * Parses settings once. Unknown environment variables are ignored; a bad value throws one
 * {@link ConfigError} that names every offending variable.
 */
export function loadConfig(env: EnvInput, overrides: EnvInput = {}): Config {
  const merged: Record<string, string> = {};
  for (const source of [env, overrides]) {
    for (const [key, value] of Object.entries(source)) {
      // Empty strings mean "not set", as in most shells' `VAR= cmd`.
      if (key in EnvSchema.shape && value !== undefined && value !== '') merged[key] = value;
    }
  }
  const result = EnvSchema.safeParse(merged);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const variable = String(issue.path[0] ?? 'config');
      return { variable, text: `${variable}: ${issue.message}` };
    });
    const first = problems[0]?.variable ?? 'config';
    throw new ConfigError(
      `invalid configuration: ${problems.map((p) => p.text).join('; ')}`,
      first,
      {
        details: { variables: problems.map((p) => p.variable) },
      },
    );
  }
  const e = result.data;
  const tls =
    e.NATS_TLS || e.NATS_TLS_CA !== undefined || e.NATS_TLS_CERT !== undefined
      ? {
          ...(e.NATS_TLS_CA === undefined ? {} : { ca: e.NATS_TLS_CA }),
          ...(e.NATS_TLS_CERT === undefined ? {} : { cert: e.NATS_TLS_CERT }),
          ...(e.NATS_TLS_KEY === undefined ? {} : { key: e.NATS_TLS_KEY }),
        }
      : undefined;
  const config: Config = {
    nats: {
      servers: e.NATS_URL,
      ...(e.NATS_CREDS === undefined ? {} : { creds: e.NATS_CREDS }),
      ...(e.NATS_USER === undefined ? {} : { user: e.NATS_USER }),
      ...(e.NATS_PASSWORD === undefined ? {} : { password: e.NATS_PASSWORD }),
      ...(e.NATS_TOKEN === undefined ? {} : { token: e.NATS_TOKEN }),
      ...(tls === undefined ? {} : { tls }),
      ...(e.NATS_NKEY_SEED === undefined ? {} : { nkeySeed: e.NATS_NKEY_SEED }),
      ...(e.NATS_NKEY_SEED_FILE === undefined ? {} : { nkeySeedFile: e.NATS_NKEY_SEED_FILE }),
      ...(e.NATS_INBOX_PREFIX === undefined ? {} : { inboxPrefix: e.NATS_INBOX_PREFIX }),
    },
    logLevel: e.LOG_LEVEL,
    namespace: e.ORDER_FLEET_NAMESPACE,
    setup: {
      partitions: e.PARTITIONS,
      timerLayout: e.TIMER_LAYOUT,
      replicas: e.ORDERS_REPLICAS,
      waitMs: e.SETUP_WAIT_MS,
      maxAgeMs: e.ORDERS_MAX_AGE_MS,
      duplicateWindowMs: e.ORDERS_DUPLICATE_WINDOW_MS,
      leaseTtlMs: e.LEASE_TTL_MS,
      notificationsDuplicateWindowMs: e.NOTIFICATIONS_DUPLICATE_WINDOW_MS,
      notificationsMaxAgeMs: e.NOTIFICATIONS_MAX_AGE_MS,
    },
    limits: { maxPayloadBytes: e.MAX_PAYLOAD_BYTES, maxItemsPerEvent: e.MAX_ITEMS_PER_EVENT },
    worker: {
      id: e.WORKER_ID ?? defaultWorkerId(),
      checkpointEveryEvents: e.CHECKPOINT_EVERY_EVENTS,
      checkpointIntervalMs: e.CHECKPOINT_INTERVAL_MS,
      checkpointIdleMs: e.CHECKPOINT_IDLE_MS,
      checkpointConcurrency: e.CHECKPOINT_CONCURRENCY,
      maxCustomersInMemory: e.MAX_CUSTOMERS_IN_MEMORY,
      shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
      heartbeatMs: e.HEARTBEAT_MS,
      summary: { quietMs: e.SUMMARY_QUIET_MS, maxMs: e.SUMMARY_MAX_MS },
      timerTickMs: e.TIMER_TICK_MS,
      admin: {
        port: e.ADMIN_PORT,
        host: e.ADMIN_HOST,
        fleetGaugesIntervalMs: e.FLEET_GAUGES_INTERVAL_MS,
      },
    },
    notifier: {
      sink: e.NOTIFIER_SINK,
      file: e.NOTIFIER_FILE,
      webhookUrl: e.NOTIFIER_WEBHOOK_URL,
      webhookTimeoutMs: e.NOTIFIER_WEBHOOK_TIMEOUT_MS,
      webhookSecrets: e.NOTIFIER_WEBHOOK_SECRET ?? [],
      webhookSecretFile: e.NOTIFIER_WEBHOOK_SECRET_FILE,
      maxInFlight: e.NOTIFIER_MAX_IN_FLIGHT,
    },
    query: { timeoutMs: e.QUERY_TIMEOUT_MS },
    console: {
      port: e.CONSOLE_PORT,
      host: e.CONSOLE_HOST,
      adminToken: e.CONSOLE_ADMIN_TOKEN,
      consumerPollMs: e.CONSOLE_CONSUMER_POLL_MS,
    },
    publisher: {
      maxInFlight: e.PUBLISH_MAX_IN_FLIGHT,
      maxAttempts: e.PUBLISH_MAX_ATTEMPTS,
      timeoutMs: e.PUBLISH_TIMEOUT_MS,
    },
  };
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
