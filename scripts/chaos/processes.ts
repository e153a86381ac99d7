// Real child processes (workers, the notifier) with their output in a log file, an exit record,
// and a flag saying whether the harness asked for the exit. An exit nobody asked for is what the
// harness exists to catch.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { request } from 'node:http';

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly atMs: number;
  /** True when the harness had signalled the process to stop (SIGTERM, SIGKILL, teardown). */
  readonly expected: boolean;
}

export interface ProcessSpec {
  /** Argv: `[command, ...args]`. */
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly logFile: string;
}

/** How many output lines each process keeps in memory for reports. */
const TAIL_LINES = 80;

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export class ManagedProcess {
  readonly id: string;
  readonly startedAtMs = Date.now();
  readonly exited: Promise<ExitInfo>;
  readonly #child: ChildProcess;
  readonly #log: WriteStream;
  readonly #tail: string[] = [];
  #partial = '';
  #stopRequested = false;
  #stopped = false;
  #exit: ExitInfo | undefined;

  constructor(id: string, spec: ProcessSpec) {
    this.id = id;
    const [command, ...args] = spec.argv;
    if (command === undefined) throw new RangeError(`${id}: empty command`);
    this.#log = createWriteStream(spec.logFile, { flags: 'a' });
    this.#child = spawn(command, args, {
      cwd: spec.cwd,
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this.#child);
    const onOutput = (chunk: Buffer): void => {
      this.#log.write(chunk);
      const parts = (this.#partial + chunk.toString('utf8')).split('\n');
      this.#partial = parts.pop() ?? '';
      for (const line of parts) {
        this.#tail.push(line);
        if (this.#tail.length > TAIL_LINES) this.#tail.shift();
      }
    };
    this.#child.stdout?.on('data', onOutput);
    this.#child.stderr?.on('data', onOutput);
    this.exited = new Promise<ExitInfo>((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.#exit !== undefined) return;
        live.delete(this.#child);
        this.#exit = { code, signal, atMs: Date.now(), expected: this.#stopRequested };
        this.#log.end();
        resolve(this.#exit);
      };
      this.#child.once('exit', done);
      // A spawn failure (ENOENT) emits 'error' and maybe no 'exit'.
      this.#child.once('error', () => done(null, null));
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  get exit(): ExitInfo | undefined {
    return this.#exit;
  }

  /** True while SIGSTOPped by the harness. */
  get paused(): boolean {
    return this.#stopped;
  }

  /** Last lines of output (stdout and stderr interleaved). */
  tail(lines = TAIL_LINES): string[] {
    const all = this.#partial === '' ? this.#tail : [...this.#tail, this.#partial];
    return all.slice(-lines);
  }

  /** Sends a signal that is meant to end the process (the exit is then expected). */
  terminate(signal: 'SIGTERM' | 'SIGKILL'): void {
    if (!this.running) return;
    this.#stopRequested = true;
    if (this.#stopped && signal === 'SIGTERM') this.resume();
    this.#child.kill(signal);
  }

  pause(): void {
    if (!this.running || this.#stopped) return;
    this.#stopped = true;
    this.#child.kill('SIGSTOP');
  }

  resume(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    if (this.running) this.#child.kill('SIGCONT');
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit and whether it was forced. */
  async stop(graceMs: number): Promise<{ exit: ExitInfo; forced: boolean }> {
    this.terminate('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const forced = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (forced) this.terminate('SIGKILL');
    return { exit: await this.exited, forced };
  }
}

/** GET http://127.0.0.1:<port><path> → status code and body, or undefined on any failure. */
export function httpGet(
  port: number,
  path: string,
  timeoutMs = 3_000,
): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', () => resolve(undefined));
      },
    );
    // Refused, reset or timed out: the caller polls again later.
    req.once('error', () => resolve(undefined));
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** Sum of a Prometheus gauge/counter over all label sets in a /metrics text. */
export function metricValue(text: string, name: string): number | undefined {
  let found = false;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) {
      sum += value;
      found = true;
    }
  }
  return found ? sum : undefined;
}
