import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultWorkerId, loadConfig, LOG_LEVELS, type EnvInput } from '../../src/config/config.js';
import { ConfigError, ErrorCode, isOrderFleetError } from '../../src/errors.js';
import { thrownBy, unfrozenPaths } from './helpers.js';

function configError(env: EnvInput, overrides?: EnvInput): ConfigError {
  const err = thrownBy(
    () => (overrides === undefined ? loadConfig(env) : loadConfig(env, overrides)),
    ConfigError,
  );
  expect(err.code).toBe(ErrorCode.ConfigInvalid);
  expect(isOrderFleetError(err, ErrorCode.ConfigInvalid)).toBe(true);
  expect(err.name).toBe('ConfigError');
  return err;
}

describe('loadConfig defaults', () => {
  it('fills every setting from defaults when the environment is empty', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      nats: { servers: ['nats://127.0.0.1:4222'] },
      logLevel: 'info',
      namespace: '',
      setup: {
        partitions: undefined,
        replicas: 1,
        waitMs: 60_000,
        maxAgeMs: 7 * 24 * 3600 * 1000,
        duplicateWindowMs: 120_000,
      },
      limits: { maxPayloadBytes: 16 * 1024, maxItemsPerEvent: 1000 },
      worker: {
        checkpointEveryEvents: 5000,
        checkpointIntervalMs: 1000,
        checkpointIdleMs: 100,
        checkpointConcurrency: 64,
        maxCustomersInMemory: 250_000,
        shutdownGraceMs: 25_000,
      },
      query: { timeoutMs: 1000 },
      publisher: { maxInFlight: 1024, maxAttempts: 30, timeoutMs: 5000 },
    });
  });

  it('has no credentials or TLS unless asked', () => {
    const { nats } = loadConfig({});
    expect(Object.keys(nats)).toEqual(['servers']);
    expect('tls' in nats).toBe(false);
  });

  it('generates a worker id from the host name plus a random suffix', () => {
    const a = loadConfig({}).worker.id;
    const b = loadConfig({}).worker.id;
    expect(a).toMatch(/^[A-Za-z0-9_-]{1,48}-[0-9a-f]{6}$/);
    expect(a).not.toBe(b);
    expect(defaultWorkerId()).toMatch(/^[A-Za-z0-9_-]{1,48}-[0-9a-f]{6}$/);
  });

  it('treats empty strings and undefined as "not set"', () => {
    const config = loadConfig({ LOG_LEVEL: '', PARTITIONS: undefined, NATS_URL: '' });
    expect(config.logLevel).toBe('info');
    expect(config.setup.partitions).toBeUndefined();
    expect(config.nats.servers).toEqual(['nats://127.0.0.1:4222']);
  });

  it('ignores unknown environment variables', () => {
    const env = { PATH: '/usr/bin', HOME: '/root', NOT_A_SETTING: 'x' } as unknown as EnvInput;
    expect(loadConfig(env).logLevel).toBe('info');
  });
});

describe('loadConfig parsing', () => {
  it('splits NATS_URL on commas, trimming and dropping empty entries', () => {
    expect(loadConfig({ NATS_URL: 'nats://a:4222,nats://b:4222' }).nats.servers).toEqual([
      'nats://a:4222',
      'nats://b:4222',
    ]);
    expect(
      loadConfig({ NATS_URL: ' nats://a:4222 , tls://b:4443 ,, ws://c:80, ' }).nats.servers,
    ).toEqual(['nats://a:4222', 'tls://b:4443', 'ws://c:80']);
    expect(loadConfig({ NATS_URL: 'wss://d.example.com:443,localhost:4222' }).nats.servers).toEqual(
      ['wss://d.example.com:443', 'localhost:4222'],
    );
  });

  it('PROPERTY: any list of host:port servers survives the comma split', () => {
    const host = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
    const server = fc
      .tuple(fc.constantFrom('nats', 'tls', 'ws', 'wss'), host, fc.integer({ min: 1, max: 65535 }))
      .map(([scheme, h, port]) => `${scheme}://${h}:${port}`);
    fc.assert(
      fc.property(fc.array(server, { minLength: 1, maxLength: 5 }), (servers) => {
        expect(loadConfig({ NATS_URL: servers.join(',') }).nats.servers).toEqual(servers);
      }),
      { numRuns: 50 },
    );
  });

  it('coerces numbers and parses booleans', () => {
    const config = loadConfig({
      PARTITIONS: '64',
      ORDERS_REPLICAS: '3',
      MAX_PAYLOAD_BYTES: '1024',
      MAX_ITEMS_PER_EVENT: '10',
      CHECKPOINT_EVERY_EVENTS: '1',
      QUERY_TIMEOUT_MS: '10',
      PUBLISH_MAX_ATTEMPTS: '1000',
    });
    expect(config.setup.partitions).toBe(64);
    expect(config.setup.replicas).toBe(3);
    expect(config.limits).toEqual({ maxPayloadBytes: 1024, maxItemsPerEvent: 10 });
    expect(config.worker.checkpointEveryEvents).toBe(1);
    expect(config.query.timeoutMs).toBe(10);
    expect(config.publisher.maxAttempts).toBe(1000);
  });

  it.each([
    ['true', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
    ['no', false],
  ])('NATS_TLS=%s enables TLS: %s', (value, enabled) => {
    expect(loadConfig({ NATS_TLS: value }).nats.tls !== undefined).toBe(enabled);
  });

  it('passes TLS files and credentials through', () => {
    const config = loadConfig({
      NATS_TLS_CA: '/ca.pem',
      NATS_TLS_CERT: '/cert.pem',
      NATS_TLS_KEY: '/key.pem',
      NATS_USER: 'u',
      NATS_PASSWORD: 'p',
      NATS_TOKEN: 't',
      NATS_CREDS: '/x.creds',
    });
    expect(config.nats).toEqual({
      servers: ['nats://127.0.0.1:4222'],
      creds: '/x.creds',
      user: 'u',
      password: 'p',
      token: 't',
      tls: { ca: '/ca.pem', cert: '/cert.pem', key: '/key.pem' },
    });
    expect(loadConfig({ NATS_TLS_CA: '/ca.pem' }).nats.tls).toEqual({ ca: '/ca.pem' });
    expect(loadConfig({ NATS_TLS: 'true' }).nats.tls).toEqual({});
  });

  it('accepts every log level and the boundary partition counts', () => {
    for (const level of LOG_LEVELS) expect(loadConfig({ LOG_LEVEL: level }).logLevel).toBe(level);
    expect(loadConfig({ PARTITIONS: '1' }).setup.partitions).toBe(1);
    expect(loadConfig({ PARTITIONS: '4096' }).setup.partitions).toBe(4096);
  });

  it('takes namespace and worker id as given', () => {
    const config = loadConfig({ ORDER_FLEET_NAMESPACE: 'ci_7', WORKER_ID: 'pod-abc_1' });
    expect(config.namespace).toBe('ci_7');
    expect(config.worker.id).toBe('pod-abc_1');
  });
});

describe('loadConfig sources', () => {
  it('overrides win over the environment', () => {
    const config = loadConfig(
      { LOG_LEVEL: 'debug', PARTITIONS: '8', NATS_URL: 'nats://env:4222', WORKER_ID: 'env' },
      { LOG_LEVEL: 'warn', NATS_URL: 'nats://flag:4222' },
    );
    expect(config.logLevel).toBe('warn');
    expect(config.nats.servers).toEqual(['nats://flag:4222']);
    // Settings the overrides do not mention still come from the environment.
    expect(config.setup.partitions).toBe(8);
    expect(config.worker.id).toBe('env');
  });

  it('an empty or undefined override does not erase the environment value', () => {
    const config = loadConfig(
      { LOG_LEVEL: 'debug', PARTITIONS: '8' },
      { LOG_LEVEL: '', PARTITIONS: undefined },
    );
    expect(config.logLevel).toBe('debug');
    expect(config.setup.partitions).toBe(8);
  });

  it('a valid override rescues an invalid environment value', () => {
    expect(loadConfig({ PARTITIONS: 'lots' }, { PARTITIONS: '16' }).setup.partitions).toBe(16);
  });

  it('an invalid override fails even when the environment value is fine', () => {
    const err = configError({ PARTITIONS: '16' }, { PARTITIONS: '0' });
    expect(err.variable).toBe('PARTITIONS');
  });

  it('PROPERTY: for any two valid partition counts, the override wins', () => {
    const count = fc.integer({ min: 1, max: 4096 });
    fc.assert(
      fc.property(count, count, (env, flag) => {
        expect(
          loadConfig({ PARTITIONS: String(env) }, { PARTITIONS: String(flag) }).setup.partitions,
        ).toBe(flag);
        expect(loadConfig({ PARTITIONS: String(env) }).setup.partitions).toBe(env);
      }),
      { numRuns: 50 },
    );
  });
});

describe('loadConfig errors', () => {
  it.each<[string, EnvInput]>([
    ['NATS_URL', { NATS_URL: 'http://a:4222' }],
    ['NATS_URL', { NATS_URL: 'nats://a:4222,not a url' }],
    ['NATS_URL', { NATS_URL: ' , ,' }],
    ['NATS_TLS', { NATS_TLS: 'TRUE' }],
    ['NATS_TLS', { NATS_TLS: 'on' }],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }],
    ['ORDER_FLEET_NAMESPACE', { ORDER_FLEET_NAMESPACE: 'has.dot' }],
    ['ORDER_FLEET_NAMESPACE', { ORDER_FLEET_NAMESPACE: 'n'.repeat(33) }],
    ['PARTITIONS', { PARTITIONS: '0' }],
    ['PARTITIONS', { PARTITIONS: '4097' }],
    ['PARTITIONS', { PARTITIONS: '1.5' }],
    ['PARTITIONS', { PARTITIONS: 'many' }],
    ['ORDERS_REPLICAS', { ORDERS_REPLICAS: '6' }],
    ['ORDERS_MAX_AGE_MS', { ORDERS_MAX_AGE_MS: '-1' }],
    ['ORDERS_DUPLICATE_WINDOW_MS', { ORDERS_DUPLICATE_WINDOW_MS: '999' }],
    ['MAX_PAYLOAD_BYTES', { MAX_PAYLOAD_BYTES: '63' }],
    ['MAX_PAYLOAD_BYTES', { MAX_PAYLOAD_BYTES: String(1024 * 1024 + 1) }],
    ['MAX_ITEMS_PER_EVENT', { MAX_ITEMS_PER_EVENT: '0' }],
    ['WORKER_ID', { WORKER_ID: 'has space' }],
    ['WORKER_ID', { WORKER_ID: 'w'.repeat(65) }],
    ['CHECKPOINT_EVERY_EVENTS', { CHECKPOINT_EVERY_EVENTS: '0' }],
    ['CHECKPOINT_INTERVAL_MS', { CHECKPOINT_INTERVAL_MS: '9' }],
    ['CHECKPOINT_CONCURRENCY', { CHECKPOINT_CONCURRENCY: '1025' }],
    ['MAX_CUSTOMERS_IN_MEMORY', { MAX_CUSTOMERS_IN_MEMORY: '0' }],
    ['SHUTDOWN_GRACE_MS', { SHUTDOWN_GRACE_MS: '99' }],
    ['QUERY_TIMEOUT_MS', { QUERY_TIMEOUT_MS: 'abc' }],
    ['PUBLISH_MAX_IN_FLIGHT', { PUBLISH_MAX_IN_FLIGHT: '100001' }],
    ['PUBLISH_MAX_ATTEMPTS', { PUBLISH_MAX_ATTEMPTS: '0' }],
    ['PUBLISH_TIMEOUT_MS', { PUBLISH_TIMEOUT_MS: '99' }],
  ])('a bad %s throws a ConfigError naming it', (variable, env) => {
    const err = configError(env);
    expect(err.variable).toBe(variable);
    expect(err.message).toContain(`${variable}:`);
    expect(err.message).toMatch(/^invalid configuration: /);
    expect(err.details).toEqual({ variables: [variable] });
  });

  it('names every offending variable when several are bad', () => {
    const err = configError({ LOG_LEVEL: 'loud', PARTITIONS: '0', WORKER_ID: 'a b' });
    expect(err.message).toContain('LOG_LEVEL:');
    expect(err.message).toContain('PARTITIONS:');
    expect(err.message).toContain('WORKER_ID:');
    expect(err.details['variables']).toEqual(
      expect.arrayContaining(['LOG_LEVEL', 'PARTITIONS', 'WORKER_ID']),
    );
    expect(['LOG_LEVEL', 'PARTITIONS', 'WORKER_ID']).toContain(err.variable);
  });

  it('a whitespace-only number is rejected, not read as 0', () => {
    // `ORDERS_MAX_AGE_MS=" "` is not '' (so not "unset"); z.coerce.number turns it into 0, which
    // silently means "keep events forever" on the stream.
    const err = configError({ ORDERS_MAX_AGE_MS: ' ' });
    expect(err.variable).toBe('ORDERS_MAX_AGE_MS');
  });
});

describe('loadConfig result is deeply frozen', () => {
  it('freezes every nested object and array', () => {
    const config = loadConfig({
      NATS_URL: 'nats://a:1,nats://b:2',
      NATS_TLS_CA: '/ca.pem',
      NATS_USER: 'u',
      PARTITIONS: '4',
    });
    expect(unfrozenPaths(config)).toEqual([]);
    expect(Object.isFrozen(config.nats.servers)).toBe(true);
    expect(Object.isFrozen(config.nats.tls)).toBe(true);
  });

  it('rejects writes (ES modules run in strict mode)', () => {
    const config = loadConfig({});
    expect(() => {
      (config as { logLevel: string }).logLevel = 'trace';
    }).toThrow(TypeError);
    expect(() => {
      (config.worker as { id: string }).id = 'x';
    }).toThrow(TypeError);
    expect(() => {
      (config.nats.servers as string[]).push('nats://evil:4222');
    }).toThrow(TypeError);
    expect(config.logLevel).toBe('info');
    expect(config.nats.servers).toEqual(['nats://127.0.0.1:4222']);
  });

  it('returns independent objects per call', () => {
    const a = loadConfig({ PARTITIONS: '4' });
    const b = loadConfig({ PARTITIONS: '8' });
    expect(a.setup.partitions).toBe(4);
    expect(b.setup.partitions).toBe(8);
  });
});
