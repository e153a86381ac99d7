// The notifier end to end: a real nats-server, a real worker producing summaries, real notifier
// processes (`order-fleet notifier`), and a real local HTTP server (node:http) as the webhook.
// Delivery is at least once, so the assertions are about keys, never about timing or exact counts
// of repeats: every window of the model reaches the endpoint, every request carries
// `Idempotency-Key: <summaryId>` of the body it carries, and the distinct keys are exactly the
// windows of the model. Permanent refusals end in the dead-letter stream with the status.

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NOTIFIER_CONSUMER } from '../../src/notifications/notifier.js';
import {
  CLI,
  REPO_ROOT,
  eventually,
  provision,
  spawnWorker,
  waitReady,
  type LogLine,
  type TestDeployment,
  type WorkerProcess,
} from '../support/fleet.js';
import { rng } from '../support/model.js';
import {
  Driver,
  expectedFromBursts,
  type ExpectedWindow,
  randomBurst,
  readNotifications,
  readStream,
  sortNums,
  type Summary,
  SummarySchema,
  waitAllClosed,
} from '../support/summaries.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';

// --- the webhook: a real HTTP server on the loopback interface ----------------------------------

type Reply = number | 'hang';

interface Received {
  readonly key: string | undefined;
  readonly summary: Summary | undefined;
  readonly status: Reply;
}

/** A webhook endpoint whose answer per request is chosen by the test. */
class Endpoint {
  readonly received: Received[] = [];
  /** Decides the answer; `attempt` counts this key's requests, from 1. */
  reply: (key: string, attempt: number) => Reply = () => 200;
  delayMs = 0;
  readonly #hung = new Set<ServerResponse>();
  readonly #server: Server;
  url = '';

  constructor() {
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = this.#server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}/hook`;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const header = req.headers['idempotency-key'];
      const key = typeof header === 'string' ? header : undefined;
      let summary: Summary | undefined;
      try {
        summary = SummarySchema.parse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        // Recorded as a request without a summary: the test asserts there are none.
        summary = undefined;
        res.setHeader(
          'x-parse-error',
          String(err)
            .slice(0, 100)
            .replace(/[^\x20-\x7e]/gu, ' '),
        );
      }
      const attempt = this.received.filter((r) => r.key === key).length + 1;
      const status = key === undefined || summary === undefined ? 422 : this.reply(key, attempt);
      this.received.push({ key, summary, status });
      if (status === 'hang') {
        this.#hung.add(res);
        res.on('close', () => this.#hung.delete(res));
        return;
      }
      const send = (): void => {
        res.statusCode = status;
        res.end(status < 300 ? 'ok' : 'no');
      };
      if (this.delayMs > 0) setTimeout(send, this.delayMs);
      else send();
    });
  }

  /** Keys that got a 2xx. */
  delivered(): Set<string> {
    return new Set(
      this.received
        .filter((r) => typeof r.status === 'number' && r.status < 300 && r.key !== undefined)
        .map((r) => r.key ?? ''),
    );
  }

  keys(): Set<string> {
    return new Set(this.received.map((r) => r.key ?? '(none)'));
  }

  /** Drops the connections of requests left hanging. */
  releaseHung(): void {
    for (const res of this.#hung) res.destroy();
    this.#hung.clear();
  }

  async close(): Promise<void> {
    this.releaseHung();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve, reject) =>
      this.#server.close((err) => (err === undefined ? resolve() : reject(err))),
    );
  }
}

// --- notifier processes -------------------------------------------------------------------------

interface NotifierProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Complete lines printed on stdout. */
  stdoutLines(): string[];
  /** JSON log lines (stdout for file/webhook sinks, stderr for the stdout sink). */
  logs(): LogLine[];
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** JSON lines of `text`; the last, unterminated line is still being written and left out. */
function parseLines(text: string): LogLine[] {
  return text
    .split('\n')
    .slice(0, -1)
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}

function spawnNotifier(
  dep: TestDeployment,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): NotifierProcess {
  const child = spawn(process.execPath, [CLI, 'notifier', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...dep.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const logsOnStderr = args.includes('stdout');
  const proc: NotifierProcess = {
    child,
    exited,
    stdoutLines: () => stdout.split('\n').slice(0, -1),
    logs: () => parseLines(logsOnStderr ? stderr : stdout),
    output: () => `${stdout}\n${stderr}`,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  notifiers.push(proc);
  return proc;
}

async function waitStarted(n: NotifierProcess): Promise<void> {
  await eventually(
    () => (n.logs().some((l) => l.msg === 'notifier started') ? true : undefined),
    20_000,
  ).catch((err: unknown) => {
    throw new Error(`notifier did not start: ${String(err)}\n${n.output().slice(-3000)}`);
  });
}

/** The notifier's durable consumer has nothing pending and nothing unacknowledged. */
async function waitAllAcked(dep: TestDeployment): Promise<void> {
  const jsm = await jetstreamManager(dep.nc);
  await eventually(async () => {
    const info = await jsm.consumers.info(dep.names.notificationsStream, NOTIFIER_CONSUMER);
    return info.num_pending === 0 && info.num_ack_pending === 0 ? true : undefined;
  }, 60_000);
}

// --- fixtures ---------------------------------------------------------------------------------

let server: NatsServerHandle;
const workers: WorkerProcess[] = [];
const notifiers: NotifierProcess[] = [];
const endpoints: Endpoint[] = [];
const deployments: TestDeployment[] = [];
const drivers: Driver[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterEach(async () => {
  for (const n of notifiers.splice(0)) await n.stop('SIGKILL');
  for (const w of workers.splice(0)) await w.stop('SIGKILL');
  for (const e of endpoints.splice(0)) await e.close();
  for (const d of drivers.splice(0)) await d.close();
  for (const d of deployments.splice(0)) await d.close();
});

afterAll(async () => {
  await server.cleanup();
});

const Q = 300;

/** A deployment with one worker producing summaries (quiet period Q). */
async function deployWithWorker(): Promise<{ dep: TestDeployment; d: Driver }> {
  const dep = await provision(server.url, {
    isolate: true,
    partitions: 4,
    env: { SUMMARY_QUIET_MS: String(Q), SUMMARY_MAX_MS: '3000', TIMER_TICK_MS: '50' },
  });
  deployments.push(dep);
  const w = spawnWorker(dep, `w-${dep.namespace}`);
  workers.push(w);
  await waitReady(w);
  const d = new Driver(dep);
  drivers.push(d);
  return { dep, d };
}

/**
 * One burst for each customer, then waits until every window is closed (so every summary is in
 * the NOTIFICATIONS stream). The windows of the model are the expected notifications.
 */
async function burstAndClose(
  dep: TestDeployment,
  d: Driver,
  names: readonly string[],
): Promise<ExpectedWindow[]> {
  const random = rng(names.length);
  await d.round(0, new Map(names.map((c) => [c, randomBurst(random, [])] as const)), 20);
  await waitAllClosed(dep, d.lastChangeSeqs());
  return expectedFromBursts(d.sent).windows;
}

async function withSummaries(
  names: readonly string[],
): Promise<{ dep: TestDeployment; windows: ExpectedWindow[] }> {
  const { dep, d } = await deployWithWorker();
  return { dep, windows: await burstAndClose(dep, d, names) };
}

/** Starts a real HTTP endpoint for the test. */
async function endpoint(): Promise<Endpoint> {
  const e = new Endpoint();
  await e.start();
  endpoints.push(e);
  return e;
}

const customers = (prefix: string, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** The invariants of every webhook run: keys match bodies, bodies match the stored summaries. */
async function expectKeysMatch(dep: TestDeployment, e: Endpoint): Promise<void> {
  const stored = new Map((await readNotifications(dep)).summaries.map((s) => [s.summaryId, s]));
  const problems: string[] = [];
  for (const r of e.received) {
    if (r.summary === undefined) problems.push(`request with key ${String(r.key)}: no summary`);
    else if (r.key !== r.summary.summaryId)
      problems.push(`key ${String(r.key)} on body of ${r.summary.summaryId}`);
    else if (JSON.stringify(r.summary) !== JSON.stringify(stored.get(r.key)))
      problems.push(`${r.key}: body differs from the stored summary`);
  }
  expect(problems).toEqual([]);
}

describe('notifier', () => {
  it('webhook: each summary arrives with Idempotency-Key = summaryId, retried through 503s', async () => {
    const { dep, windows } = await withSummaries(customers('hook', 30));
    const expected = new Set(windows.map((w) => w.summaryId));
    const e = await endpoint();
    // The first two attempts of every key fail.
    e.reply = (_key, attempt) => (attempt <= 2 ? 503 : 200);
    const n = spawnNotifier(dep, ['--sink', 'webhook', '--url', e.url]);
    await waitStarted(n);
    await eventually(
      () => ([...expected].every((k) => e.delivered().has(k)) ? true : undefined),
      60_000,
    );
    await waitAllAcked(dep);
    expect(e.keys()).toEqual(expected);
    await expectKeysMatch(dep, e);
    // Every key was refused twice and then accepted: the repeats carried the same key.
    for (const key of expected) {
      const statuses = e.received.filter((r) => r.key === key).map((r) => r.status);
      expect(statuses.slice(0, 3)).toEqual([503, 503, 200]);
    }
    expect((await n.stop('SIGTERM')).code).toBe(0);
    const stopped = n.logs().find((l) => l.msg === 'notifier stopped');
    expect(stopped).toMatchObject({ deadLettered: 0 });
    expect(Number(stopped?.['retried'])).toBeGreaterThanOrEqual(2 * expected.size);
  });

  it('webhook: a notifier SIGKILLed mid-delivery leaves nothing behind; the restarted one delivers with the same keys', async () => {
    const { dep, windows } = await withSummaries(customers('kill', 20));
    const expected = new Set(windows.map((w) => w.summaryId));
    const e = await endpoint();
    e.reply = () => 'hang';
    const first = spawnNotifier(dep, ['--sink', 'webhook', '--url', e.url], {
      NOTIFIER_MAX_IN_FLIGHT: '4',
    });
    await eventually(() => (e.received.length >= 4 ? true : undefined), 20_000);
    const inFlight = new Set(e.received.map((r) => r.key ?? ''));
    expect((await first.stop('SIGKILL')).signal).toBe('SIGKILL');
    e.releaseHung();
    e.reply = () => 200;
    const second = spawnNotifier(dep, ['--sink', 'webhook', '--url', e.url]);
    await waitStarted(second);
    // The deliveries the killed notifier held come back once their ack wait runs out.
    await eventually(
      () => ([...expected].every((k) => e.delivered().has(k)) ? true : undefined),
      90_000,
    );
    await waitAllAcked(dep);
    expect(e.keys()).toEqual(expected);
    await expectKeysMatch(dep, e);
    for (const key of inFlight) {
      expect(expected.has(key)).toBe(true);
      expect(e.received.filter((r) => r.key === key).map((r) => r.status)).toContain(200);
    }
    expect((await second.stop('SIGTERM')).code).toBe(0);
  }, 150_000);

  it('a permanent 400 goes to the dead-letter stream with the response status, once, without retries', async () => {
    const { dep, windows } = await withSummaries([
      ...customers('ok', 10),
      ...customers('refuse', 5),
    ]);
    const e = await endpoint();
    const refused = new Set(
      windows.filter((w) => w.customerId.startsWith('refuse-')).map((w) => w.summaryId),
    );
    expect(refused.size).toBeGreaterThan(0);
    e.reply = (key) => (refused.has(key) ? 400 : 200);
    const n = spawnNotifier(dep, ['--sink', 'webhook', '--url', e.url]);
    await waitStarted(n);
    await waitAllAcked(dep);
    const all = new Set(windows.map((w) => w.summaryId));
    expect(e.keys()).toEqual(all);
    await expectKeysMatch(dep, e);
    for (const key of refused) expect(e.received.filter((r) => r.key === key)).toHaveLength(1);
    expect([...e.delivered()].sort()).toEqual([...all].filter((k) => !refused.has(k)).sort());

    const dead = (await readStream(dep.nc, dep.names.deadLetterStream)).filter(
      (m) => m.subject === dep.names.deadLetterNotifications,
    );
    const stored = new Map((await readNotifications(dep)).summaries.map((s) => [s.summaryId, s]));
    expect(dead.map((m) => SummarySchema.parse(m.json).summaryId).sort()).toEqual(
      [...refused].sort(),
    );
    for (const m of dead) {
      const body = SummarySchema.parse(m.json);
      expect(body).toEqual(stored.get(body.summaryId));
      expect(m.header('Order-Fleet-Response-Status')).toBe('400');
      expect(m.header('Order-Fleet-Reason')).toBe('DELIVERY_REJECTED');
      expect(m.header('Order-Fleet-Source-Stream')).toBe(dep.names.notificationsStream);
    }
    expect((await n.stop('SIGTERM')).code).toBe(0);
  });

  it('--sink stdout prints one JSON summary per line (logs go to stderr)', async () => {
    const { dep, windows } = await withSummaries(customers('out', 15));
    const expected = new Set(windows.map((w) => w.summaryId));
    const n = spawnNotifier(dep, ['--sink', 'stdout']);
    await eventually(() => {
      const ids = new Set(n.stdoutLines().map((l) => SummarySchema.parse(JSON.parse(l)).summaryId));
      return [...expected].every((id) => ids.has(id)) ? true : undefined;
    }, 30_000);
    await waitAllAcked(dep);
    expect((await n.stop('SIGTERM')).code).toBe(0);
    const lines = n.stdoutLines();
    const stored = new Map((await readNotifications(dep)).summaries.map((s) => [s.summaryId, s]));
    const printed = lines.map((l) => SummarySchema.parse(JSON.parse(l)));
    expect(new Set(printed.map((s) => s.summaryId))).toEqual(expected);
    for (const s of printed) expect(s).toEqual(stored.get(s.summaryId));
    // Exactly the model: customer, net change and contents per window.
    expect(
      printed
        .map((s) => ({
          summaryId: s.summaryId,
          customerId: s.customerId,
          added: sortNums(s.added),
          removed: sortNums(s.removed),
          contents: s.contents,
        }))
        .sort((a, b) => a.summaryId.localeCompare(b.summaryId)),
    ).toEqual(
      windows
        .map(({ summaryId, customerId, added, removed, contents }) => ({
          summaryId,
          customerId,
          added,
          removed,
          contents,
        }))
        .sort((a, b) => a.summaryId.localeCompare(b.summaryId)),
    );
    expect(n.logs().some((l) => l.msg === 'notifier started')).toBe(true);
  });

  it('two notifiers at once deliver every summary; distinct keys equal the windows', async () => {
    const e = await endpoint();
    e.delayMs = 30;
    // Both notifiers wait before the summaries exist, so both take part as they arrive.
    const { dep, d } = await deployWithWorker();
    const env = { NOTIFIER_MAX_IN_FLIGHT: '2' };
    const a = spawnNotifier(dep, ['--sink', 'webhook', '--url', e.url], env);
    const b = spawnNotifier(dep, ['--sink', 'webhook', '--url', e.url], env);
    await Promise.all([waitStarted(a), waitStarted(b)]);
    const windows = await burstAndClose(dep, d, customers('pair', 40));
    const expected = new Set(windows.map((w) => w.summaryId));
    await eventually(
      () => ([...expected].every((k) => e.delivered().has(k)) ? true : undefined),
      60_000,
    );
    await waitAllAcked(dep);
    expect(e.keys()).toEqual(expected);
    await expectKeysMatch(dep, e);
    const [ea, eb] = await Promise.all([a.stop('SIGTERM'), b.stop('SIGTERM')]);
    expect([ea.code, eb.code]).toEqual([0, 0]);
    const delivered = [a, b].map((n) =>
      Number(n.logs().find((l) => l.msg === 'notifier stopped')?.['delivered'] ?? 0),
    );
    expect(delivered.reduce((x, y) => x + y, 0)).toBeGreaterThanOrEqual(expected.size);
    expect(
      delivered.every((x) => x > 0),
      `deliveries per notifier: ${delivered.join(', ')}`,
    ).toBe(true);
  });
});
