import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/fleet.js';

// `npm run demo` must pass on a machine with only nats-server on the PATH: run the same script
// (the build is done by `npm test` before the suite) and check that every step of its story held.
describe('npm run demo', () => {
  it('tells the story and exits 0 only when every check held', async () => {
    const env = { ...process.env };
    delete env['NATS_URL']; // the demo must bring its own server
    const result = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], {
        cwd: REPO_ROOT,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
      child.on('error', reject);
      child.on('exit', (code) => resolve({ code, out }));
    });
    expect(result.out).toContain('Demo passed');
    expect(result.out).not.toContain('FAIL');
    expect(result.code, result.out).toBe(0);
  });
});
