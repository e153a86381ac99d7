// The pipelined JetStream writer against a real nats-server: the same outcomes as nats.js's
// js.publish and KV writes (acks, duplicates, conditional-write conflicts with their codes, a
// create over a deleted key), and the failures a caller classifies (no responders, a paused
// server timing out, a closed connection), each as the class the rest of the code expects.

import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import {
  ClosedConnectionError,
  connect,
  headers,
  NoRespondersError,
  TimeoutError,
  type NatsConnection,
} from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRetriable } from '../../src/errors.js';
import { isWrongLastSequence } from '../../src/nats/errors.js';
import { JetStreamWriter, PipelinedKvWrites } from '../../src/nats/js-writer.js';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

let server: NatsServerHandle;
let nc: NatsConnection;
let kv: KV;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url, noAsyncTraces: true });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'W', subjects: ['w.>'], duplicate_window: 60_000_000_000 });
  kv = await new Kvm(nc).create('wkv', { history: 1 });
});

afterAll(async () => {
  await nc.close();
  await server.cleanup();
});

describe('JetStreamWriter', () => {
  it('stores each publish once, in order, and reports a duplicate id as nats.js does', async () => {
    const writer = new JetStreamWriter(nc, { timeoutMs: 5000 });
    try {
      const acks = await Promise.all(
        Array.from({ length: 2000 }, (_, i) => writer.publish(`w.${i % 7}`, bytes(`m${i}`))),
      );
      const seqs = acks.map((a) => a.seq);
      expect(new Set(seqs).size).toBe(2000);
      expect(acks.every((a) => a.stream === 'W' && !a.duplicate)).toBe(true);
      const h = headers();
      h.set('Nats-Msg-Id', 'once');
      const first = await writer.publish('w.id', bytes('a'), h);
      const again = await writer.publish('w.id', bytes('a'), h);
      expect(again).toMatchObject({ seq: first.seq, duplicate: true });
      const info = await (await jetstreamManager(nc)).streams.info('W');
      expect(info.state.messages).toBe(2001);
    } finally {
      writer.close();
    }
  });

  it('holds writes beyond its in-flight cap and sends them in order as acks come back', async () => {
    const writer = new JetStreamWriter(nc, { timeoutMs: 5000, maxInFlight: 8 });
    try {
      const acks = await Promise.all(
        Array.from({ length: 500 }, (_, i) => writer.publish('w.capped', bytes(`c${i}`))),
      );
      const seqs = acks.map((a) => a.seq);
      // Sent in call order: the stream stored them in that order.
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).toBe(500);
    } finally {
      writer.close();
    }
  });

  it('fails with no responders where no stream listens, as a retriable failure', async () => {
    const writer = new JetStreamWriter(nc, { timeoutMs: 5000 });
    try {
      const err = await writer.publish('nowhere.at.all', bytes('x')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NoRespondersError);
      expect(isRetriable(err)).toBe(true);
    } finally {
      writer.close();
    }
  });

  it('times out while the server is paused, and fails what waits when closed', async () => {
    const writer = new JetStreamWriter(nc, { timeoutMs: 300 });
    server.pause();
    try {
      const err = await writer.publish('w.paused', bytes('x')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TimeoutError);
      expect(isRetriable(err)).toBe(true);
      const waiting = writer.publish('w.paused', bytes('y')).catch((e: unknown) => e);
      writer.close();
      expect(await waiting).toBeInstanceOf(ClosedConnectionError);
      // Writes held back by the cap fail as closed too.
      const capped = new JetStreamWriter(nc, { timeoutMs: 5000, maxInFlight: 1 });
      const sent = capped.publish('w.paused', bytes('a')).catch((e: unknown) => e);
      const held = capped.publish('w.paused', bytes('b')).catch((e: unknown) => e);
      capped.close();
      expect(await sent).toBeInstanceOf(ClosedConnectionError);
      expect(await held).toBeInstanceOf(ClosedConnectionError);
      expect(await writer.publish('w.after', bytes('z')).catch((e: unknown) => e)).toBeInstanceOf(
        ClosedConnectionError,
      );
    } finally {
      server.resume();
    }
    // The connection itself is fine once the server resumes.
    await nc.flush();
  });
});

describe('PipelinedKvWrites', () => {
  it('creates, updates on the revision, refuses a stale revision with the CAS code, deletes', async () => {
    const writer = new JetStreamWriter(nc, { timeoutMs: 5000 });
    const writes = new PipelinedKvWrites(writer, 'wkv', kv);
    try {
      const r1 = await writes.create('c.1.alice', bytes('{"n":1}'));
      const r2 = await writes.update('c.1.alice', bytes('{"n":2}'), r1);
      expect((await kv.get('c.1.alice'))?.string()).toBe('{"n":2}');
      expect((await kv.get('c.1.alice'))?.revision).toBe(r2);
      const stale = await writes.update('c.1.alice', bytes('{"n":3}'), r1).catch((e: unknown) => e);
      expect(isWrongLastSequence(stale)).toBe(true);
      const taken = await writes.create('c.1.alice', bytes('{"n":4}')).catch((e: unknown) => e);
      expect(isWrongLastSequence(taken)).toBe(true);
      expect((await kv.get('c.1.alice'))?.string()).toBe('{"n":2}');

      await writes.put('t.1.alice', bytes('{"due":1}'));
      await writes.delete('t.1.alice');
      expect((await kv.get('t.1.alice'))?.operation).toBe('DEL');
      // A create over a delete marker writes on the marker's revision (nats.js's fallback).
      const again = await writes.create('t.1.alice', bytes('{"due":2}'));
      const entry = await kv.get('t.1.alice');
      expect(entry?.operation).toBe('PUT');
      expect(entry?.revision).toBe(again);
      expect(entry?.string()).toBe('{"due":2}');
    } finally {
      writer.close();
    }
  });
});
