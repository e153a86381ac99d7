// Starts REAL nats-server processes for integration tests (never a mock).
//
// Every server gets its own temp dir (config file, ports file dir, JetStream
// store), listens on 127.0.0.1 only, and is driven through a generated config
// file so callers can append arbitrary config (`mappings`, `accounts`, `cluster`).
// Works with Debian's nats-server 2.9.10 and newer.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, readdirSync, readFileSync, rmSync } from 'node:fs';
import { access, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect as netConnect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Fallback location of Debian's package, which is not on a non-root PATH. */
const DEBIAN_BINARY = '/usr/sbin/nats-server';
/** Poll interval while waiting for readiness; startup is ~20-50ms, so keep it tight. */
const POLL_MS = 20;
const DEFAULT_START_TIMEOUT_MS = 30_000;
/** How long SIGTERM (or a caller-chosen signal) gets before we escalate to SIGKILL. */
const GRACEFUL_STOP_MS = 15_000;
const OUTPUT_TAIL_LINES = 200;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

export type NatsTestSupportErrorCode =
  | 'NATS_SERVER_BINARY_MISSING'
  | 'NATS_SERVER_START_FAILED'
  | 'NATS_SERVER_NOT_RUNNING'
  | 'NATS_UNAVAILABLE';

/** Base class; `code` is stable so tests/tools can branch on it instead of on message text. */
export class NatsTestSupportError extends Error {
  readonly code: NatsTestSupportErrorCode;

  constructor(code: NatsTestSupportErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

export class NatsServerBinaryMissingError extends NatsTestSupportError {
  /** Every path that was tried, in order. */
  readonly candidates: readonly string[];

  constructor(message: string, candidates: readonly string[]) {
    super('NATS_SERVER_BINARY_MISSING', message);
    this.candidates = candidates;
  }
}

export class NatsServerStartError extends NatsTestSupportError {
  /** Last lines of the server's stdout/stderr (also included in `message`). */
  readonly outputTail: string;

  constructor(message: string, outputTail: string, options?: ErrorOptions) {
    super(
      'NATS_SERVER_START_FAILED',
      outputTail === '' ? message : `${message}\n--- nats-server output (tail) ---\n${outputTail}`,
      options,
    );
    this.outputTail = outputTail;
  }
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/**
 * - `jetstream`: wait until `/healthz` is OK, i.e. JetStream is up and (in a
 *   cluster) in contact with a meta leader and current on all assets.
 * - `listening`: only wait for the client port. Needed when bringing up a
 *   cluster, where no single node can become healthy before a quorum exists.
 */
export type NatsServerReadiness = 'jetstream' | 'listening';

export interface StartNatsServerOptions {
  /**
   * Extra nats-server config text appended after the generated config, e.g.
   * `mappings { ... }`, `accounts { ... }` or a `cluster { ... }` block.
   * Note: a second top-level `jetstream { }` block would replace the generated
   * one (last key wins), losing the per-server store dir.
   */
  configText?: string;
  /**
   * `jetstream { sync_interval: always }`: fsync every write before acknowledging it, so a
   * kill -9 of a node loses nothing it acknowledged (NATS's production advice). Only 2.10+ has
   * it; on older servers the option is ignored (they fsync every 2 minutes).
   */
  syncAlways?: boolean;
  /**
   * Config files to `include` (absolute paths), e.g. the `nats-auth.conf` of `order-fleet auth
   * init`. nats-server resolves an include relative to the including file, so they are written
   * as paths relative to the generated config.
   */
  includeFiles?: readonly string[];
  /** Fixed client port; default: random free port chosen by the server (`-1`). */
  port?: number;
  /** `server_name`; default: a random unique name. */
  serverName?: string;
  /** Path to nats-server; default: `$NATS_SERVER_BIN`, then PATH, then /usr/sbin/nats-server. */
  binary?: string;
  /** Default `jetstream`. */
  readiness?: NatsServerReadiness;
  /** Default 30s. */
  startTimeoutMs?: number;
}

export interface RestartOptions {
  /** Default: the readiness the server was started with. */
  readiness?: NatsServerReadiness;
}

export interface NatsServerHandle {
  /** `nats://127.0.0.1:<port>`; stable across restarts. */
  readonly url: string;
  readonly port: number;
  /** JetStream `store_dir` (the server keeps its data under `<storeDir>/jetstream`). */
  readonly storeDir: string;
  /** `server_name`. */
  readonly name: string;
  /** Server version as reported by `nats-server --version`, e.g. `2.9.10`. */
  readonly version: string;
  /** Current pid, or undefined when not running. */
  pid(): number | undefined;
  /** Monitoring base URL of the current process (its port changes on every restart). */
  monitorUrl(): string | undefined;
  /** Tail of the captured stdout/stderr of the current/last process (for debugging). */
  output(): string;
  /** SIGTERM and wait for exit (escalates to SIGKILL after 15s). No-op if not running. */
  stop(): Promise<void>;
  /** Send `signal` (default SIGKILL) and wait for exit. No-op if not running. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the process freezes, TCP connections stay open (simulates a hung server). */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Start again on the SAME port and SAME store dir (stops first if running) and wait until ready. */
  restart(opts?: RestartOptions): Promise<void>;
  /** Kill if running and `rm -rf` the temp dir. Idempotent. */
  cleanup(): Promise<void>;
}

export async function startNatsServer(
  opts: StartNatsServerOptions = {},
): Promise<NatsServerHandle> {
  const binary = await resolveNatsServerBinary(opts.binary);
  const launcher = await getLauncher(binary);
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), 'order-fleet-nats-'));
  registerTempDir(tmpDir);
  const server = new NatsServerProcess({
    launcher,
    tmpDir,
    name: opts.serverName ?? `nats_${randomBytes(5).toString('hex')}`,
    configText: [
      ...(opts.includeFiles ?? []).map(
        (file) => `include ${JSON.stringify(path.relative(tmpDir, path.resolve(file)))}`,
      ),
      opts.configText ?? '',
    ].join('\n'),
    readiness: opts.readiness ?? 'jetstream',
    startTimeoutMs: opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
    syncAlways: opts.syncAlways === true && atLeast(launcher.version, 2, 10),
  });
  try {
    await server.firstStart(opts.port ?? -1);
  } catch (err) {
    // Do not leak the temp dir/process of a server that never became usable.
    await server.cleanup();
    throw err;
  }
  return server;
}

/**
 * Waits until the server's `/healthz` reports OK (JetStream up and, in a
 * cluster, current with the meta leader and all its stream/consumer groups).
 */
export async function waitForJetStream(
  server: NatsServerHandle,
  timeoutMs: number = DEFAULT_START_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const monitorUrl = server.monitorUrl();
    if (monitorUrl === undefined) {
      throw new NatsTestSupportError(
        'NATS_SERVER_NOT_RUNNING',
        `nats-server ${server.name} is not running; cannot wait for JetStream`,
      );
    }
    if (await isHealthy(monitorUrl)) return;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs}ms waiting for JetStream on ${server.name}\n${server.output()}`,
      );
    }
    await sleep(POLL_MS);
  }
}

/**
 * Resolves the nats-server binary: explicit path → `$NATS_SERVER_BIN` → `nats-server`
 * on PATH → /usr/sbin/nats-server. An explicit path / env var that does not
 * point at an executable is an error (no silent fallback hiding a misconfiguration).
 */
export async function resolveNatsServerBinary(explicit?: string): Promise<string> {
  const fromEnv = process.env['NATS_SERVER_BIN'];
  const pinned =
    explicit !== undefined && explicit !== ''
      ? { path: explicit, source: 'the `binary` option' }
      : fromEnv !== undefined && fromEnv !== ''
        ? { path: fromEnv, source: 'NATS_SERVER_BIN' }
        : undefined;
  if (pinned !== undefined) {
    const candidates = pinned.path.includes('/') ? [pinned.path] : pathCandidates(pinned.path);
    for (const candidate of candidates) {
      if (await isExecutableFile(candidate)) return candidate;
    }
    throw new NatsServerBinaryMissingError(
      `nats-server binary from ${pinned.source} not found or not executable: ${pinned.path}`,
      candidates,
    );
  }
  const candidates = [...pathCandidates('nats-server'), DEBIAN_BINARY];
  for (const candidate of candidates) {
    if (await isExecutableFile(candidate)) return candidate;
  }
  throw new NatsServerBinaryMissingError(
    'nats-server binary not found: install it (e.g. `apt-get install nats-server`), put it on PATH, ' +
      `or set NATS_SERVER_BIN. Tried: ${candidates.join(', ')}`,
    candidates,
  );
}

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

interface Launcher {
  /** Executable actually spawned (`setpriv` when available, else the binary). */
  readonly command: string;
  /** Arguments placed before the nats-server arguments. */
  readonly prefixArgs: readonly string[];
  readonly binary: string;
  readonly version: string;
}

interface ServerSettings {
  readonly launcher: Launcher;
  readonly tmpDir: string;
  readonly name: string;
  readonly configText: string;
  readonly readiness: NatsServerReadiness;
  readonly startTimeoutMs: number;
  readonly syncAlways: boolean;
}

interface LiveProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly output: OutputRing;
  /** Resolves once the process has exited and its stdio is closed. */
  readonly closed: Promise<void>;
  exited: boolean;
  exitDescription: string;
  paused: boolean;
  monitorUrl: string | undefined;
}

class NatsServerProcess implements NatsServerHandle {
  readonly storeDir: string;
  readonly name: string;
  readonly version: string;
  private readonly settings: ServerSettings;
  private readonly portsDir: string;
  private readonly configPath: string;
  private assignedPort: number | undefined;
  private proc: LiveProcess | undefined;
  private lastOutput: OutputRing | undefined;
  private cleanupPromise: Promise<void> | undefined;

  constructor(settings: ServerSettings) {
    this.settings = settings;
    this.name = settings.name;
    this.version = settings.launcher.version;
    this.storeDir = path.join(settings.tmpDir, 'store');
    this.portsDir = path.join(settings.tmpDir, 'ports');
    this.configPath = path.join(settings.tmpDir, 'nats-server.conf');
  }

  get port(): number {
    if (this.assignedPort === undefined)
      throw new Error(`nats-server ${this.name} has no port yet`);
    return this.assignedPort;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  pid(): number | undefined {
    return this.proc !== undefined && !this.proc.exited ? this.proc.pid : undefined;
  }

  monitorUrl(): string | undefined {
    return this.proc !== undefined && !this.proc.exited ? this.proc.monitorUrl : undefined;
  }

  output(): string {
    return (this.proc?.output ?? this.lastOutput)?.tail() ?? '';
  }

  async firstStart(port: number): Promise<void> {
    await mkdir(this.storeDir, { recursive: true });
    await mkdir(this.portsDir, { recursive: true });
    await this.launch(port, this.settings.readiness);
  }

  async stop(): Promise<void> {
    await this.terminate('SIGTERM');
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.terminate(signal);
  }

  pause(): void {
    const proc = this.requireRunning('pause');
    proc.child.kill('SIGSTOP');
    proc.paused = true;
    waitForStopState(proc.pid, true);
  }

  resume(): void {
    const proc = this.requireRunning('resume');
    proc.child.kill('SIGCONT');
    proc.paused = false;
    waitForStopState(proc.pid, false);
  }

  async restart(opts: RestartOptions = {}): Promise<void> {
    if (this.cleanupPromise !== undefined) {
      throw new NatsTestSupportError(
        'NATS_SERVER_NOT_RUNNING',
        `nats-server ${this.name} was cleaned up; it cannot be restarted`,
      );
    }
    await this.stop();
    // Same port (clients reconnect to the URL they know) and same store dir.
    await this.launch(this.port, opts.readiness ?? this.settings.readiness);
  }

  cleanup(): Promise<void> {
    this.cleanupPromise ??= (async () => {
      // SIGKILL rather than SIGTERM: the store is deleted right after, so a
      // graceful JetStream flush buys nothing and only slows suites down.
      await this.terminate('SIGKILL');
      await rm(this.settings.tmpDir, { recursive: true, force: true, maxRetries: 3 });
      unregisterTempDir(this.settings.tmpDir);
    })();
    return this.cleanupPromise;
  }

  private requireRunning(action: string): LiveProcess {
    const proc = this.proc;
    if (proc === undefined || proc.exited) {
      throw new NatsTestSupportError(
        'NATS_SERVER_NOT_RUNNING',
        `cannot ${action} nats-server ${this.name}: it is not running`,
      );
    }
    return proc;
  }

  private async terminate(signal: NodeJS.Signals): Promise<void> {
    const proc = this.proc;
    if (proc === undefined || proc.exited) return;
    proc.child.kill(signal);
    if (proc.paused && signal !== 'SIGKILL') {
      // A SIGSTOPped process only acts on SIGKILL/SIGCONT; other signals stay
      // pending until it is continued.
      proc.child.kill('SIGCONT');
    }
    proc.paused = false;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(resolve, GRACEFUL_STOP_MS, false);
    });
    const exited = await Promise.race([proc.closed.then(() => true as const), timedOut]);
    clearTimeout(timer);
    if (!exited) {
      console.warn(
        `[nats-server ${this.name}] did not exit within ${GRACEFUL_STOP_MS}ms after ${signal}; sending SIGKILL`,
      );
      proc.child.kill('SIGKILL');
      await proc.closed;
    }
  }

  private async launch(port: number, readiness: NatsServerReadiness): Promise<void> {
    const configText = renderConfig({
      name: this.name,
      port,
      storeDir: this.storeDir,
      portsDir: this.portsDir,
      extra: this.settings.configText,
      syncAlways: this.settings.syncAlways,
    });
    await writeFile(this.configPath, configText);
    const proc = this.spawnProcess();
    this.proc = proc;
    this.lastOutput = proc.output;
    const deadline = Date.now() + this.settings.startTimeoutMs;
    try {
      const ports = await this.waitForPortsFile(proc, deadline);
      proc.monitorUrl = ports.monitorUrl;
      if (port !== -1 && ports.clientPort !== port) {
        throw new Error(`server listens on ${ports.clientPort}, expected ${port}`);
      }
      this.assignedPort = ports.clientPort;
      await waitUntil(proc, deadline, 'client port accepts TCP connections', () =>
        canConnect(ports.clientPort),
      );
      if (readiness === 'jetstream') {
        await waitUntil(proc, deadline, 'JetStream is healthy (/healthz)', () =>
          isHealthy(ports.monitorUrl),
        );
      }
    } catch (err) {
      // Never leave a half-started process behind; report with its output and
      // the config (numbered: parse errors cite line numbers, and the temp dir
      // holding the file is removed when a first start fails).
      const wasRunning = !proc.exited;
      if (wasRunning) {
        proc.child.kill('SIGKILL');
        await proc.closed;
      }
      const reason = err instanceof Error ? err.message : String(err);
      const numberedConfig = configText
        .split('\n')
        .map((line, i) => `${String(i + 1).padStart(3)}| ${line}`)
        .join('\n');
      throw new NatsServerStartError(
        `nats-server ${this.name} failed to start: ${reason} ` +
          `(${wasRunning ? 'killed after the failed wait' : proc.exitDescription})\n` +
          `--- ${this.configPath} ---\n${numberedConfig}`,
        proc.output.tail(),
        { cause: err },
      );
    }
  }

  private spawnProcess(): LiveProcess {
    const { launcher, tmpDir } = this.settings;
    const child = spawn(launcher.command, [...launcher.prefixArgs, '-c', this.configPath], {
      cwd: tmpDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output = new OutputRing(OUTPUT_TAIL_LINES);
    child.stdout?.on('data', (chunk: Buffer) => output.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => output.push(chunk));
    let markClosed: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => {
      markClosed = resolve;
    });
    const proc: LiveProcess = {
      child,
      // pid is undefined only when spawn failed synchronously; 'error' follows.
      pid: child.pid ?? -1,
      output,
      closed,
      exited: false,
      exitDescription: '',
      paused: false,
      monitorUrl: undefined,
    };
    const onGone = (description: string): void => {
      if (proc.exited) return;
      proc.exited = true;
      proc.exitDescription = description;
      liveChildren.delete(child);
      markClosed();
    };
    child.once('close', (code, signal) => {
      onGone(signal !== null ? `killed by ${signal}` : `exited with code ${String(code)}`);
    });
    child.once('error', (err) => {
      // Spawn failures (ENOENT/EACCES) arrive here; 'close' may never follow.
      output.push(`spawn error: ${err.message}\n`);
      onGone(`spawn failed: ${err.message}`);
    });
    if (child.pid !== undefined) liveChildren.add(child);
    installExitHook();
    return proc;
  }

  private async waitForPortsFile(
    proc: LiveProcess,
    deadline: number,
  ): Promise<{ clientPort: number; monitorUrl: string }> {
    // nats-server writes `<executable>_<pid>.ports` once its listeners are up.
    // Match on the pid only: the executable part depends on argv[0].
    const suffix = `_${proc.pid}.ports`;
    let parsed: { clientPort: number; monitorUrl: string } | undefined;
    await waitUntil(proc, deadline, 'ports file is written', async () => {
      const entry = (await readdir(this.portsDir)).find((f) => f.endsWith(suffix));
      if (entry === undefined) return false;
      const text = await readFile(path.join(this.portsDir, entry), 'utf8');
      parsed = parsePortsFile(text);
      // undefined = file still being written (partial JSON); poll again.
      return parsed !== undefined;
    });
    if (parsed === undefined) throw new Error('ports file could not be parsed');
    return parsed;
  }
}

/** `version` (e.g. `2.9.10`) is at least major.minor. */
export function atLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

function renderConfig(p: {
  name: string;
  port: number;
  storeDir: string;
  portsDir: string;
  extra: string;
  syncAlways: boolean;
}): string {
  // JSON string literals are valid quoted strings in the NATS config syntax.
  const q = (s: string): string => JSON.stringify(s);
  return [
    '# generated by test/support/nats-server.ts',
    `server_name: ${q(p.name)}`,
    `listen: ${q(`127.0.0.1:${p.port}`)}`,
    // Random monitoring port: used for /healthz readiness checks only.
    `http: ${q('127.0.0.1:-1')}`,
    `ports_file_dir: ${q(p.portsDir)}`,
    'jetstream {',
    `  store_dir: ${q(p.storeDir)}`,
    ...(p.syncAlways ? ['  sync_interval: always'] : []),
    '}',
    '',
    '# --- configText ---',
    p.extra,
    '',
  ].join('\n');
}

interface PortsFileJson {
  nats?: unknown;
  monitoring?: unknown;
}

function parsePortsFile(text: string): { clientPort: number; monitorUrl: string } | undefined {
  let json: PortsFileJson;
  try {
    json = JSON.parse(text) as PortsFileJson;
  } catch (err) {
    // Expected while the server is still writing the file; the caller polls again.
    if (err instanceof SyntaxError) return undefined;
    throw err;
  }
  const client = firstString(json.nats);
  const monitor = firstString(json.monitoring);
  if (client === undefined || monitor === undefined) return undefined;
  return { clientPort: Number(new URL(client).port), monitorUrl: monitor };
}

function firstString(value: unknown): string | undefined {
  return Array.isArray(value) && typeof value[0] === 'string' ? value[0] : undefined;
}

/** Polls `check` every POLL_MS until true; fails fast if the process dies. */
async function waitUntil(
  proc: LiveProcess,
  deadline: number,
  what: string,
  check: () => Promise<boolean>,
): Promise<void> {
  for (;;) {
    if (proc.exited) throw new Error(`process ended while waiting until ${what}`);
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(POLL_MS);
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    socket.setTimeout(1_000);
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    // Refused/timeout simply means "not yet"; the poll loop retries.
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

/** GET <monitor>/healthz → true on HTTP 200 (503 while JetStream is not current yet). */
function isHealthy(monitorUrl: string): Promise<boolean> {
  return new Promise((resolve) => {
    // agent:false → no pooled keep-alive sockets lingering after the server dies.
    const req = request(`${monitorUrl}/healthz`, { agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    // Connection errors/timeouts mean "not healthy yet"; the poll loop retries.
    req.once('error', () => resolve(false));
    req.once('timeout', () => req.destroy(new Error('healthz timeout')));
    req.end();
  });
}

/**
 * kill() only queues a signal; on Linux, block (typically well under 1ms)
 * until every thread of the process is (or is no longer) in the stopped state,
 * so that pause()/resume() have taken effect when they return. Elsewhere this
 * is a no-op. Synchronous because pause()/resume() are synchronous.
 */
function waitForStopState(pid: number, stopped: boolean, timeoutMs = 2_000): void {
  if (process.platform !== 'linux') return;
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const states = threadStates(pid);
    // No threads: the process is gone; callers find out on their next action.
    if (states.length === 0) return;
    const stoppedCount = states.filter((st) => st === 'T' || st === 't').length;
    if (stopped ? stoppedCount === states.length : stoppedCount === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`pid ${pid} did not ${stopped ? 'stop' : 'continue'} within ${timeoutMs}ms`);
    }
    Atomics.wait(pause, 0, 0, 1); // synchronous 1ms sleep
  }
}

/** Scheduler state letter of each thread, from /proc/<pid>/task/<tid>/stat. */
function threadStates(pid: number): string[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch (err) {
    // ENOENT: the process no longer exists.
    if (isErrnoException(err) && err.code === 'ENOENT') return [];
    throw err;
  }
  const states: string[] = [];
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Format: "tid (comm) S ...": the state follows the last ')'.
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state !== '') states.push(state);
    } catch (err) {
      // A thread can exit between readdir and read; skip it.
      if (isErrnoException(err) && err.code === 'ENOENT') continue;
      throw err;
    }
  }
  return states;
}

/** Keeps the last N lines of combined stdout/stderr. */
class OutputRing {
  private readonly lines: string[] = [];
  private partial = '';
  private readonly maxLines: number;

  constructor(maxLines: number) {
    this.maxLines = maxLines;
  }

  push(chunk: Buffer | string): void {
    const text = this.partial + chunk.toString();
    const parts = text.split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) {
      this.lines.push(line);
      if (this.lines.length > this.maxLines) this.lines.shift();
    }
  }

  tail(): string {
    return [...this.lines, ...(this.partial === '' ? [] : [this.partial])].join('\n');
  }
}

// ---------------------------------------------------------------------------
// Binary discovery and launcher (setpriv --pdeathsig)
// ---------------------------------------------------------------------------

function pathCandidates(name: string): string[] {
  const dirs = (process.env['PATH'] ?? '').split(path.delimiter).filter((d) => d !== '');
  return dirs.map((d) => path.join(d, name));
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.X_OK);
    return (await stat(file)).isFile();
  } catch (err) {
    // ENOENT/EACCES/ENOTDIR: not a usable candidate; try the next one.
    if (isErrnoException(err)) return false;
    throw err;
  }
}

function isErrnoException(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && 'code' in err;
}

const launcherCache = new Map<string, Promise<Launcher>>();

function getLauncher(binary: string): Promise<Launcher> {
  let launcher = launcherCache.get(binary);
  if (launcher === undefined) {
    launcher = probeLauncher(binary);
    // Do not cache failures: a later call may succeed (e.g. binary installed meanwhile).
    launcher.catch(() => launcherCache.delete(binary));
    launcherCache.set(binary, launcher);
  }
  return launcher;
}

/**
 * On Linux, spawn through `setpriv --pdeathsig KILL` (util-linux) so the server
 * dies even when the test process is SIGKILLed (the 'exit' hook cannot run
 * then). setpriv exec()s the server, so the pid stays the server's pid.
 */
async function probeLauncher(binary: string): Promise<Launcher> {
  if (process.platform === 'linux') {
    const setpriv = await firstExecutable([...pathCandidates('setpriv'), '/usr/bin/setpriv']);
    if (setpriv !== undefined) {
      const prefixArgs = ['--pdeathsig', 'KILL', '--', binary];
      const probe = await run(setpriv, [...prefixArgs, '--version']);
      const version = parseVersion(probe.output);
      if (probe.ok && version !== undefined) {
        return { command: setpriv, prefixArgs, binary, version };
      }
      // Old util-linux without --pdeathsig: fall through to a plain spawn
      // (the process 'exit' hook still kills children on normal exits).
    }
  }
  const probe = await run(binary, ['--version']);
  const version = parseVersion(probe.output);
  if (!probe.ok || version === undefined) {
    throw new NatsServerStartError(
      `${binary} --version failed; is it a nats-server binary?`,
      probe.output,
    );
  }
  return { command: binary, prefixArgs: [], binary, version };
}

async function firstExecutable(candidates: readonly string[]): Promise<string | undefined> {
  for (const candidate of candidates) {
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function parseVersion(output: string): string | undefined {
  return /nats-server:?\s+v?(\d+\.\d+\.\d+\S*)/.exec(output)?.[1];
}

function run(command: string, args: readonly string[]): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      // A failure is reported through `ok`/`output`; callers decide what it means.
      resolve({ ok: err === null, output: `${stdout}${stderr}${err ? `\n${err.message}` : ''}` });
    });
  });
}

// ---------------------------------------------------------------------------
// Never let servers outlive the test process
// ---------------------------------------------------------------------------

const liveChildren = new Set<ChildProcess>();
const liveTempDirs = new Set<string>();
let exitHookInstalled = false;

function registerTempDir(dir: string): void {
  liveTempDirs.add(dir);
  installExitHook();
}

function unregisterTempDir(dir: string): void {
  liveTempDirs.delete(dir);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL the children, then remove
  // the temp dirs of servers whose cleanup() was never called.
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
    for (const dir of liveTempDirs) {
      try {
        // Retries cover ENOTEMPTY: a just-SIGKILLed server may still be writing.
        rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
      } catch (err) {
        // Best effort while exiting; report so a leftover dir is explainable.
        process.stderr.write(`[nats-server] could not remove ${dir}: ${String(err)}\n`);
      }
    }
  });
}
