// Runs `order-fleet console` as a real process and opens it in a real browser (Debian's chromium
// through playwright-core), for the console's browser test and its benchmark.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CLI, REPO_ROOT, type TestDeployment } from './fleet.js';

export const CHROMIUM = process.env['CHROMIUM_BIN'] ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const chromiumAvailable = (): boolean => existsSync(CHROMIUM);

export interface ConsoleProcess {
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** Starts the console and resolves with its URL (the JSON line it prints on stdout). */
export function startConsole(
  dep: TestDeployment,
  args: readonly string[] = [],
  env: Readonly<Record<string, string>> = {},
): Promise<ConsoleProcess> {
  const child = spawn(process.execPath, [CLI, 'console', '--port', '0', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...dep.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const line = out.split('\n').find((l) => l.startsWith('{"console"'));
      if (line !== undefined) {
        const { console: url } = JSON.parse(line) as { console: string };
        resolve({ url, child, output: () => out, stop });
      }
    });
    child.on('exit', (code) => reject(new Error(`console exited ${code}: ${out}`)));
  });
}
