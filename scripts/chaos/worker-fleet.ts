// The workers under test: real processes (`node bin/order-fleet.js worker` or the user's own
// command), each behind its own TCP relay to the NATS nodes and with an admin port for /readyz
// and /metrics. Every incarnation gets a new id (w1, w2, …), as a Kubernetes Deployment gives a
// new pod name, so that a replacement never impersonates the process it replaces.

import path from 'node:path';
import { freePort } from '../../test/support/ports.js';
import { ManagedProcess, httpGet, metricValue, type ExitInfo } from './processes.js';
import { TcpRelay } from './relay.js';

export interface WorkerFleetOptions {
  /** argv of one worker, without the id (it goes in WORKER_ID). */
  readonly argv: readonly string[];
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  /** Client ports of the NATS nodes; every worker reaches them through its relay. */
  readonly natsPorts: readonly number[];
  readonly logDir: string;
  /** Called for every exit (expected or not), after the process is gone. */
  readonly onExit: (worker: ChaosWorker, exit: ExitInfo) => void;
}

export class ChaosWorker {
  /** Set while a fault holds this worker (stopped, cut off, being replaced…). */
  busy: string | undefined;
  /** The harness asked it to stop (SIGTERM/SIGKILL): it is no longer part of the fleet. */
  leaving = false;

  constructor(
    readonly id: string,
    readonly n: number,
    readonly process: ManagedProcess,
    readonly relay: TcpRelay,
    readonly adminPort: number,
    readonly logFile: string,
  ) {}

  get running(): boolean {
    return this.process.running;
  }

  async ready(): Promise<boolean> {
    const res = await httpGet(this.adminPort, '/readyz');
    return res?.status === 200;
  }

  async metric(name: string): Promise<number | undefined> {
    const res = await httpGet(this.adminPort, '/metrics');
    return res?.status === 200 ? metricValue(res.body, name) : undefined;
  }
}

export class WorkerFleet {
  readonly #workers: ChaosWorker[] = [];
  #next = 1;

  constructor(private readonly opts: WorkerFleetOptions) {}

  /** Every incarnation so far, in order of start. */
  get all(): readonly ChaosWorker[] {
    return this.#workers;
  }

  /** Running and not asked to leave: the members the fleet should have. */
  get members(): ChaosWorker[] {
    return this.#workers.filter((w) => w.running && !w.leaving);
  }

  /** Members no fault holds: the targets a new fault may pick from. */
  get available(): ChaosWorker[] {
    return this.members.filter((w) => w.busy === undefined);
  }

  async spawn(): Promise<ChaosWorker> {
    const n = this.#next++;
    const id = `w${n}`;
    const relay = await TcpRelay.start(this.opts.natsPorts);
    const adminPort = await freePort();
    const logFile = path.join(this.opts.logDir, `${id}.log`);
    const proc = new ManagedProcess(id, {
      argv: this.opts.argv,
      cwd: this.opts.cwd,
      env: {
        ...this.opts.env,
        NATS_URL: relay.url,
        WORKER_ID: id,
        ADMIN_PORT: String(adminPort),
        ADMIN_HOST: '127.0.0.1',
      },
      logFile,
    });
    const worker = new ChaosWorker(id, n, proc, relay, adminPort, logFile);
    this.#workers.push(worker);
    void proc.exited.then(async (exit) => {
      await relay.close();
      this.opts.onExit(worker, exit);
    });
    return worker;
  }

  /** Stops every worker (teardown): SIGCONT, heal, SIGTERM, SIGKILL after the grace. */
  async stopAll(graceMs: number): Promise<void> {
    await Promise.all(
      this.#workers
        .filter((w) => w.running)
        .map(async (w) => {
          w.leaving = true;
          w.relay.heal();
          w.process.resume();
          await w.process.stop(graceMs);
        }),
    );
  }
}
