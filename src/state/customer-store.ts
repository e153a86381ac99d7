import type { KV, KvEntry } from '@nats-io/kv';
import type { KvWrites } from '../nats/js-writer.js';
import { z } from 'zod';
import type { Aggregator } from '../orders/aggregator.js';
import { ErrorCode, OrderFleetError } from '../errors.js';
import { isWrongLastSequence } from '../nats/errors.js';
import { customerIdFromKey, customerKey, customerKeyFilter } from './keys.js';

/**
 * Why a customer is quarantined: its aggregator's `apply()` threw on the entry at `seq`. From
 * then on its entries are dead-lettered (CUSTOMER_QUARANTINED), not applied, so `state` stays the
 * exact fold of what was applied. Persisted with the snapshot, so a handoff, a crash or a replay
 * quarantines at the same entry.
 */
export const QuarantineSchema = z.object({
  seq: z.number().int().min(0),
  code: z.string(),
  reason: z.string(),
});
export type Quarantine = z.infer<typeof QuarantineSchema>;

/** A customer's state as held in memory and in KV. */
export interface CustomerSnapshot<S> {
  readonly customerId: string;
  /**
   * Stream sequence of the last entry handled (applied, or dead-lettered while quarantined);
   * entries at or below it are skipped.
   */
  readonly lastSeq: number;
  readonly state: S;
  /** Set while the customer is quarantined; see {@link liftQuarantine}. */
  readonly quarantine?: Quarantine;
}

/**
 * The snapshot without its quarantine: what a redrive writes back (conditionally, on the
 * revision it read) once the cause is fixed. The owner's next conditional write of that customer
 * then fails, its runner restarts, reloads the lifted snapshot and applies new entries again;
 * the dead-lettered ones are in `ORDERS_DLQ` to be re-published.
 */
export function liftQuarantine<S>(snapshot: CustomerSnapshot<S>): CustomerSnapshot<S> {
  const { quarantine: _lifted, ...rest } = snapshot;
  return rest;
}

/** A snapshot plus the KV revision it was read or written at (0 = no entry yet). */
export interface StoredSnapshot<S> {
  readonly snapshot: CustomerSnapshot<S>;
  readonly revision: number;
}

const Envelope = z.object({
  v: z.literal(1),
  aggregator: z.string(),
  version: z.number().int(),
  customerId: z.string(),
  lastSeq: z.number().int().min(0),
  state: z.unknown(),
  quarantine: QuarantineSchema.optional(),
});

const encoder = new TextEncoder();

type EnvelopeResult = ReturnType<typeof Envelope.safeParse>;

/**
 * The envelope check without zod for what we wrote ourselves (every snapshot load pays it);
 * `undefined` sends anything else to the schema. Same result as the schema when it answers.
 */
function fastEnvelope(json: unknown): EnvelopeResult | undefined {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const { v, aggregator, version, customerId, lastSeq, state } = json as Record<string, unknown>;
  if (
    v !== 1 ||
    typeof aggregator !== 'string' ||
    !Number.isSafeInteger(version) ||
    typeof customerId !== 'string' ||
    !Number.isSafeInteger(lastSeq) ||
    (lastSeq as number) < 0 ||
    !('state' in json)
  )
    return undefined;
  return {
    success: true,
    data: {
      v,
      aggregator,
      version: version as number,
      customerId,
      lastSeq: lastSeq as number,
      state,
    },
  };
}

/**
 * Reads and writes customer snapshots. Every write is conditional on the revision the writer last
 * read or wrote (`kv.create` / `kv.update`), so a writer that lost ownership cannot silently
 * overwrite the new owner: its write fails with WRITE_CONFLICT and it must stop.
 */
/** The part of an aggregator that (de)serializes snapshots. */
export type SnapshotCodec<S> = Pick<
  Aggregator<S, never, never>,
  'name' | 'version' | 'initial' | 'serialize' | 'deserialize'
>;

export class CustomerStore<S> {
  /** Where writes go: the bucket itself, or the worker's pipelined writer (js-writer.ts). */
  private readonly writes: KvWrites;

  constructor(
    private readonly kv: KV,
    private readonly aggregator: SnapshotCodec<S>,
    writes?: KvWrites,
  ) {
    this.writes = writes ?? kv;
  }

  async load(partition: number, customerId: string): Promise<StoredSnapshot<S>> {
    const entry = await this.kv.get(customerKey(partition, customerId));
    if (entry === null) return { snapshot: this.empty(customerId), revision: 0 };
    // A deleted or purged key still has a revision: the next write must be conditional on it.
    if (entry.operation !== 'PUT')
      return { snapshot: this.empty(customerId), revision: entry.revision };
    return { snapshot: this.parse(customerId, entry), revision: entry.revision };
  }

  private parse(customerId: string, entry: KvEntry): CustomerSnapshot<S> {
    let json: unknown;
    try {
      json = entry.json();
    } catch (err) {
      // Unreadable bytes stay unreadable: terminal, the partition is parked rather than looping.
      throw new OrderFleetError(
        ErrorCode.StateCorrupt,
        `stored state of customer ${customerId} is not JSON`,
        { cause: err },
      );
    }
    return this.decode(customerId, json);
  }

  /**
   * Only the KV revision of a customer's entry (0: none), without decoding it: a rebuild
   * overwrites whatever is stored (even a corrupt snapshot) with a conditional write.
   */
  async revision(partition: number, customerId: string): Promise<number> {
    const entry = await this.kv.get(customerKey(partition, customerId));
    return entry?.revision ?? 0;
  }

  /**
   * Every customer of the partition that has a stored state, from one headers-only pass over
   * `c.<p>.*` (`kv.keys`); `undefined` when there are more than `limit` (the caller then reads
   * each customer as before) or `signal` aborts. A customer absent from the answer has no entry
   * (or a deleted one, which `kv.create` writes over on its revision), so loading it needs no
   * read.
   */
  async storedIds(
    partition: number,
    opts: { readonly limit: number; readonly signal: AbortSignal },
  ): Promise<Set<string> | undefined> {
    const ids = new Set<string>();
    const keys = await this.kv.keys(customerKeyFilter(partition));
    const stop = (): void => keys.stop();
    opts.signal.addEventListener('abort', stop, { once: true });
    try {
      for await (const key of keys) {
        if (ids.size >= opts.limit) {
          keys.stop();
          return undefined;
        }
        const id = customerIdFromKey(key);
        if (id !== undefined) ids.add(id);
      }
    } finally {
      opts.signal.removeEventListener('abort', stop);
    }
    return opts.signal.aborted ? undefined : ids;
  }

  /**
   * Every stored customer of the partition with its snapshot and revision, read in one pass (an
   * ordered consumer over `c.<p>.*`, the bucket keeping one revision per key) instead of one
   * request per customer: what a long catch-up after a crash would otherwise read one by one.
   * `undefined` when there are more than `limit` (the caller then loads customers as it meets
   * them) or `signal` aborts. Deleted keys are left out, as {@link storedIds} does. A snapshot
   * that cannot be read fails the whole pass with STATE_CORRUPT, as {@link load} does.
   */
  async loadPartition(
    partition: number,
    opts: { readonly limit: number; readonly signal: AbortSignal },
  ): Promise<Map<string, StoredSnapshot<S>> | undefined> {
    const out = new Map<string, StoredSnapshot<S>>();
    for await (const { customerId, entry } of this.storedEntries(partition, opts.signal)) {
      if (entry.operation !== 'PUT') {
        out.delete(customerId);
        continue;
      }
      if (out.size >= opts.limit) return undefined;
      out.set(customerId, { snapshot: this.parse(customerId, entry), revision: entry.revision });
    }
    return opts.signal.aborted ? undefined : out;
  }

  /**
   * What `pick` makes of every stored customer of the partition, read in one pass as
   * {@link loadPartition} reads them, keeping only what it returns: memory follows the picks (a
   * partition's open timers), not the customers. A snapshot that cannot be read is handed to
   * `unreadable` and skipped: the customer fails its runner when it is met, as with
   * {@link load}, and a scan for timers must not fail a partition for a customer nobody touches.
   * `undefined` when `signal` aborts.
   */
  async pickPartition<T>(
    partition: number,
    pick: (snapshot: CustomerSnapshot<S>) => T | undefined,
    opts: {
      readonly signal: AbortSignal;
      readonly unreadable: (customerId: string, err: unknown) => void;
    },
  ): Promise<Map<string, T> | undefined> {
    const out = new Map<string, T>();
    for await (const { customerId, entry } of this.storedEntries(partition, opts.signal)) {
      out.delete(customerId); // a later revision of the key replaces what an earlier one gave
      if (entry.operation !== 'PUT') continue;
      let snapshot: CustomerSnapshot<S>;
      try {
        snapshot = this.parse(customerId, entry);
      } catch (err) {
        opts.unreadable(customerId, err);
        continue;
      }
      const picked = pick(snapshot);
      if (picked !== undefined) out.set(customerId, picked);
    }
    return opts.signal.aborted ? undefined : out;
  }

  /**
   * The partition's customer entries in one ordered read of `c.<p>.*` (the bucket keeps one
   * revision per key), ending when `signal` aborts. A caller that returns early stops the read.
   */
  private async *storedEntries(
    partition: number,
    signal: AbortSignal,
  ): AsyncGenerator<{ readonly customerId: string; readonly entry: KvEntry }> {
    const entries = await this.kv.history({ key: customerKeyFilter(partition) });
    const stop = (): void => entries.stop();
    signal.addEventListener('abort', stop, { once: true });
    try {
      for await (const entry of entries) {
        const customerId = customerIdFromKey(entry.key);
        if (customerId !== undefined) yield { customerId, entry };
      }
    } finally {
      signal.removeEventListener('abort', stop);
      entries.stop(); // a no-op after the end; stops the read when the caller returned early
    }
  }

  /** Writes `snapshot` if the key is still at `revision`; returns the new revision. */
  async save(partition: number, snapshot: CustomerSnapshot<S>, revision: number): Promise<number> {
    const key = customerKey(partition, snapshot.customerId);
    const data = encoder.encode(
      JSON.stringify({
        v: 1,
        aggregator: this.aggregator.name,
        version: this.aggregator.version,
        customerId: snapshot.customerId,
        lastSeq: snapshot.lastSeq,
        state: this.aggregator.serialize(snapshot.state),
        ...(snapshot.quarantine === undefined ? {} : { quarantine: snapshot.quarantine }),
      }),
    );
    try {
      return revision === 0
        ? await this.writes.create(key, data)
        : await this.writes.update(key, data, revision);
    } catch (err) {
      if (isWrongLastSequence(err)) {
        throw new OrderFleetError(
          ErrorCode.WriteConflict,
          `customer ${snapshot.customerId} was written by someone else`,
          {
            cause: err,
            details: { key, revision },
          },
        );
      }
      throw err;
    }
  }

  empty(customerId: string): CustomerSnapshot<S> {
    return { customerId, lastSeq: 0, state: this.aggregator.initial() };
  }

  private decode(customerId: string, json: unknown): CustomerSnapshot<S> {
    const parsed = fastEnvelope(json) ?? Envelope.safeParse(json);
    if (
      !parsed.success ||
      parsed.data.aggregator !== this.aggregator.name ||
      parsed.data.customerId !== customerId
    ) {
      throw new OrderFleetError(
        ErrorCode.StateCorrupt,
        `stored state of customer ${customerId} is not a valid snapshot`,
        {
          ...(parsed.success ? {} : { cause: parsed.error }),
        },
      );
    }
    const { lastSeq, version, state, quarantine } = parsed.data;
    return {
      customerId,
      lastSeq,
      state: this.aggregator.deserialize(version, state),
      ...(quarantine === undefined ? {} : { quarantine }),
    };
  }
}
