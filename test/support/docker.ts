// Real containers for the container tests (test/container/): the image CI built, workers started
// with `docker run`, stopped with `docker stop` (SIGTERM, then SIGKILL after the timeout, as the
// kubelet does) or `docker kill`, and read through their admin endpoints and `docker inspect`.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Images the CI stage built (scripts/docker/*.sh); the tests never pull. */
export function testImages(): { readonly app: string; readonly nats: string } {
  const app = process.env['ORDER_FLEET_IMAGE'];
  const nats = process.env['NATS_IMAGE'];
  if (app === undefined || nats === undefined || app === '' || nats === '') {
    throw new Error(
      'container tests need ORDER_FLEET_IMAGE and NATS_IMAGE (built by .ci/run, or by scripts/docker/build-base-images.sh and scripts/docker/build-image.sh)',
    );
  }
  return { app, nats };
}

/** `docker …`; stdout, trimmed. Fails with docker's stderr. */
export async function docker(args: readonly string[], timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await run('docker', [...args], {
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout.trim();
  } catch (err) {
    const e = err as { stderr?: string; message?: string };
    throw new Error(`docker ${args.join(' ')} failed: ${e.stderr ?? e.message ?? String(err)}`, {
      cause: err,
    });
  }
}

/** `docker compose` (plugin) when present, else the standalone `docker-compose`. */
export async function composeCommand(): Promise<string[]> {
  try {
    await run('docker', ['compose', 'version']);
    return ['docker', 'compose'];
  } catch {
    // No compose plugin: Debian's docker-compose package provides the standalone command.
    return ['docker-compose'];
  }
}

export interface ContainerState {
  readonly running: boolean;
  readonly exitCode: number;
  readonly oomKilled: boolean;
}

export async function containerState(name: string): Promise<ContainerState> {
  const out = await docker([
    'inspect',
    '-f',
    '{{.State.Running}} {{.State.ExitCode}} {{.State.OOMKilled}}',
    name,
  ]);
  const [running, code, oom] = out.split(' ');
  return { running: running === 'true', exitCode: Number(code), oomKilled: oom === 'true' };
}

/** A worker (or any order-fleet command) in a container on the host network. */
export class WorkerContainer {
  private constructor(
    readonly name: string,
    readonly adminPort: number,
  ) {}

  /**
   * `docker run -d` with the hardening of the Kubernetes manifests: read-only root, no
   * capabilities, no privilege escalation, the image's non-root user.
   */
  static async start(opts: {
    readonly name: string;
    readonly image: string;
    readonly env: Readonly<Record<string, string>>;
    readonly adminPort: number;
    readonly args?: readonly string[];
    readonly labels?: Readonly<Record<string, string>>;
  }): Promise<WorkerContainer> {
    const env = { ...opts.env, ADMIN_PORT: String(opts.adminPort), WORKER_ID: opts.name };
    await docker([
      'run',
      '-d',
      '--name',
      opts.name,
      '--network',
      'host',
      '--read-only',
      '--cap-drop',
      'ALL',
      '--security-opt',
      'no-new-privileges',
      '--label',
      'order-fleet-test=1',
      ...Object.entries(opts.labels ?? {}).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
      ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
      opts.image,
      ...(opts.args ?? ['worker']),
    ]);
    return new WorkerContainer(opts.name, opts.adminPort);
  }

  async #get(path: string): Promise<{ status: number; body: string }> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.adminPort}${path}`);
      return { status: res.status, body: await res.text() };
    } catch (err) {
      // Not listening (yet, or any more): a state, reported as such.
      return { status: 0, body: err instanceof Error ? err.message : String(err) };
    }
  }

  /** The readiness probe's answer: GET /readyz is 200. */
  async ready(): Promise<boolean> {
    return (await this.#get('/readyz')).status === 200;
  }

  /** Prometheus metrics as name{labels} → value (own samples only). */
  async metrics(): Promise<Map<string, number>> {
    const { status, body } = await this.#get('/metrics');
    if (status !== 200) throw new Error(`${this.name}: /metrics answered ${status}: ${body}`);
    const out = new Map<string, number>();
    for (const line of body.split('\n')) {
      if (line.startsWith('#') || line.trim() === '') continue;
      const space = line.lastIndexOf(' ');
      const key = line
        .slice(0, space)
        .replace(/\{worker="[^"]*",?/u, '{')
        .replace('{}', '');
      out.set(key, Number(line.slice(space + 1)));
    }
    return out;
  }

  async metric(name: string): Promise<number> {
    return (await this.metrics()).get(name) ?? 0;
  }

  /** `docker stop -t <s>`: SIGTERM, SIGKILL after `timeoutS`. Returns the exit state. */
  async stop(timeoutS: number): Promise<ContainerState> {
    await docker(['stop', '-t', String(timeoutS), this.name], (timeoutS + 60) * 1000);
    return containerState(this.name);
  }

  async kill(): Promise<ContainerState> {
    await docker(['kill', this.name]);
    return containerState(this.name);
  }

  /** Structured log lines (the worker logs JSON on stdout). */
  async logs(): Promise<Record<string, unknown>[]> {
    const out = await docker(['logs', this.name]);
    return out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async remove(): Promise<void> {
    await docker(['rm', '-f', this.name]);
  }
}

/** Removes every container the tests labelled (a failed test's leftovers). */
export async function removeTestContainers(): Promise<void> {
  const ids = await docker(['ps', '-aq', '--filter', 'label=order-fleet-test=1']);
  if (ids !== '') await docker(['rm', '-f', ...ids.split('\n')]);
}
