// Hostile input at volume: at least 10,000 generated bad messages (random bytes, invalid UTF-8,
// deep and huge JSON, huge arrays, wrong types, boundary lengths, ids with control characters,
// wrong partitions, oversized payloads, forged timer entries) interleaved with good events, all
// published raw (no SDK checks) while one real worker process runs, on a server with the
// generated least-privilege config. The worker must never crash or stall; every bad message must
// be in the dead-letter stream exactly once with its reason; every good event must be applied
// (state equals the model); and nothing it printed may hold a secret.
//
// Seeded and reproducible: FUZZ_SEED picks the messages, FUZZ_BAD / FUZZ_GOOD the sizes (CI runs
// the defaults; set FUZZ_BAD=100000 for a long run).

import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventSubject } from '../../src/contract/subjects.js';
import { partitionOf } from '../../src/contract/partition.js';
import { DeadLetterHeader } from '../../src/fleet/dead-letter.js';
import {
  eventually,
  readStoredStates,
  spawnWorker,
  waitReady,
  type TestDeployment,
  type WorkerProcess,
} from '../support/fleet.js';
import { hostileGenerator, Random, voidTimer, type Hostile } from '../support/hostile.js';
import { diffStates, generateLoad, OrderModel, type ModelEvent } from '../support/model.js';
import { freePort } from '../support/ports.js';
import {
  deploymentAs,
  expectDenied,
  runCliWith,
  startAuthFixture,
  type AuthFixture,
} from '../support/roles.js';
import { logsWith, NO_SUMMARY_TIMERS, partitionProgress } from '../support/worker-scenarios.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 20261201);
const BAD = Number(process.env['FUZZ_BAD'] ?? 10_000);
const GOOD = Number(process.env['FUZZ_GOOD'] ?? 4_000);
const VOID_TIMERS = 200;
const PARTITIONS = 8;
const LIMITS = { maxPayloadBytes: 16 * 1024, maxItemsPerEvent: 1000 };
/** Publishes in flight at once. */
const WINDOW = 256;

interface Stored {
  readonly seq: number;
  readonly msg: { readonly good: ModelEvent } | { readonly bad: Hostile };
}

describe(`fuzz: ${BAD} hostile messages among ${GOOD} good events (seed ${SEED})`, () => {
  let fx: AuthFixture;
  let dep: TestDeployment;
  let worker: WorkerProcess | undefined;
  let metricsPort = 0;

  beforeAll(async () => {
    fx = await startAuthFixture({ tls: false });
    const setup = await runCliWith(['setup', '--partitions', String(PARTITIONS)], {
      ...fx.env('admin'),
      LEASE_TTL_MS: '3000',
    });
    expect(setup.code, setup.stderr).toBe(0);
    dep = await deploymentAs(fx, PARTITIONS, NO_SUMMARY_TIMERS);
  });

  afterAll(async () => {
    await worker?.stop('SIGKILL');
    await dep?.close();
    await fx?.close();
  });

  it('never crashes or stalls, files every bad message once with its reason, applies every good one', async () => {
    metricsPort = await freePort();
    worker = spawnWorker(dep, 'fuzz-w1', {
      ...fx.env('worker'),
      ADMIN_PORT: String(metricsPort),
      ADMIN_HOST: '127.0.0.1',
    });
    await waitReady(worker, 60_000);
    const pid = worker.child.pid;

    const random = new Random(SEED);
    const next = hostileGenerator(dep.names, PARTITIONS, LIMITS, random);
    const good = generateLoad(300, GOOD, SEED, 'fz-good');
    // The schedule: good events in their order, bad ones and void timers spread between them.
    const schedule: (Hostile | (typeof good)[number])[] = [...good];
    for (let i = 0; i < BAD + VOID_TIMERS; i++) {
      const item =
        i < BAD
          ? next()
          : voidTimer(
              dep.names,
              PARTITIONS,
              good[random.int(0, good.length - 1)]?.customerId ?? 'x',
              random,
            );
      schedule.splice(random.int(0, schedule.length), 0, item);
    }

    // Raw publishers: the publisher's credentials for events, a worker's for timer subjects.
    const asPublisher = jetstream(await fx.connectAs('publisher'));
    const asWorker = jetstream(await fx.connectAs('worker'));
    const senders: Record<Hostile['sender'], JetStreamClient> = {
      publisher: asPublisher,
      worker: asWorker,
    };
    const stored: Stored[] = [];
    const inFlight = new Set<Promise<void>>();
    const publish = async (item: (typeof schedule)[number]): Promise<void> => {
      if ('event' in item) {
        const subject = eventSubject(dep.names, PARTITIONS, item.customerId);
        const ack = await asPublisher.publish(subject, JSON.stringify(item.event), {
          msgID: item.event.id,
        });
        stored.push({ seq: ack.seq, msg: { good: item } });
      } else {
        const ack = await senders[item.sender].publish(item.subject, item.data);
        stored.push({ seq: ack.seq, msg: { bad: item } });
      }
    };
    // Good events of one customer must be stored in schedule order: one connection and in-order
    // sends keep them so, whatever the window.
    for (const item of schedule) {
      while (inFlight.size >= WINDOW) await Promise.race(inFlight);
      const task = publish(item).finally(() => inFlight.delete(task));
      inFlight.add(task);
    }
    await Promise.all(inFlight);
    expect(stored).toHaveLength(schedule.length);

    // A forged timer from the publisher's credentials is refused by the server outright.
    await expectDenied(
      'publisher: forged timer',
      asPublisher.publish(`${dep.names.ordersPrefix}.0.x.timer`, '{}'),
    );

    // The model: good events folded in stream order.
    stored.sort((a, b) => a.seq - b.seq);
    const model = new OrderModel();
    const lastOfPartition = new Map<number, number>();
    for (const s of stored) {
      const prefixTokens = dep.names.ordersPrefix.split('.').length;
      const p =
        'good' in s.msg
          ? partitionOf(s.msg.good.customerId, PARTITIONS)
          : Number(s.msg.bad.subject.split('.')[prefixTokens]);
      lastOfPartition.set(p, Math.max(lastOfPartition.get(p) ?? 0, s.seq));
      if ('good' in s.msg) model.apply(s.msg.good);
    }

    // Catches up: every partition checkpointed to its last message, by the same process.
    await eventually(
      async () => {
        const table = await partitionProgress(dep);
        return table.every(
          (t) =>
            t.owner === 'fuzz-w1' &&
            t.watermark === (lastOfPartition.get(t.partition) ?? 0) &&
            t.pending === 0 &&
            t.unacked === 0,
        )
          ? true
          : undefined;
      },
      300_000,
      500,
    );
    expect(worker.child.exitCode).toBeNull();
    expect(worker.child.pid).toBe(pid);

    // Every bad message filed exactly once, with the reason the contract gives it.
    const letters = await readDeadLetters(dep);
    const bySource = new Map<number, { reason: string; count: number }>();
    for (const l of letters) {
      const seq = Number(l.sourceSeq);
      const seen = bySource.get(seq);
      bySource.set(seq, { reason: l.reason, count: (seen?.count ?? 0) + 1 });
    }
    const bad = stored.flatMap((s) =>
      'bad' in s.msg && s.msg.bad.kind !== 'void timer' ? [{ seq: s.seq, msg: s.msg.bad }] : [],
    );
    expect(bad.length).toBeGreaterThanOrEqual(BAD);
    const problems: string[] = [];
    for (const s of bad) {
      const got = bySource.get(s.seq);
      const want = s.msg.reason;
      if (got === undefined) problems.push(`seq ${s.seq} (${s.msg.kind}): not dead-lettered`);
      else if (got.count !== 1)
        problems.push(`seq ${s.seq} (${s.msg.kind}): filed ${got.count} times`);
      else if (got.reason !== want)
        problems.push(`seq ${s.seq} (${s.msg.kind}): reason ${got.reason}, expected ${want}`);
    }
    const badSeqs = new Set(bad.map((s) => s.seq));
    for (const seq of bySource.keys())
      if (!badSeqs.has(seq)) problems.push(`seq ${seq}: dead-lettered but not bad`);
    expect(problems.slice(0, 20)).toEqual([]);
    expect(letters).toHaveLength(bad.length);

    // Every good event applied, nothing else changed any state.
    expect(stored.filter((x) => 'good' in x.msg)).toHaveLength(GOOD);
    expect(diffStates(model.expected(), await readStoredStates(dep))).toEqual([]);
    expect(logsWith(worker, 'partition failed, restarting')).toEqual([]);
  }, 400_000);

  it('the worker printed no secret, nor did its metrics', async () => {
    if (worker === undefined) throw new Error('no worker ran');
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toContain('order_fleet_dead_lettered_total');
    expect(await worker.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const printed = `${worker.output()}\n${metrics}`;
    const secrets = await fx.secrets();
    expect(secrets.filter((s) => printed.includes(s))).toEqual([]);
  });
});

interface Letter {
  readonly sourceSeq: string;
  readonly reason: string;
}

/** Every dead letter's origin and reason, read with an ordered consumer (admin credentials). */
async function readDeadLetters(dep: TestDeployment): Promise<Letter[]> {
  const jsm = await jetstreamManager(dep.nc);
  const info = await jsm.streams.info(dep.names.deadLetterStream);
  if (info.state.messages === 0) return [];
  const consumer = await jetstream(dep.nc).consumers.get(dep.names.deadLetterStream);
  const messages = await consumer.consume();
  const out: Letter[] = [];
  for await (const m of messages) {
    out.push({
      sourceSeq: m.headers?.get(DeadLetterHeader.SourceSeq) ?? '',
      reason: m.headers?.get(DeadLetterHeader.Reason) ?? '',
    });
    if (m.info.pending === 0) break;
  }
  await messages.close();
  return out;
}
