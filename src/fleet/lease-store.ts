import { KvWatchInclude, type KV } from '@nats-io/kv';
import { isWrongLastSequence } from '../nats/errors.js';

/** A stored lease entry: its revision, and its value unless the key was deleted. */
export interface LeaseEntry {
  readonly revision: number;
  readonly value: string | undefined;
}

/**
 * What {@link LeaseManager} needs of its storage: conditional writes with a lost
 * compare-and-swap reported as a result (not an error), a read, and a watch of removals. The NATS
 * KV adapter is {@link kvLeaseStore}; unit tests use an in-memory one.
 */
export interface LeaseStore {
  /** Creates `key`; undefined when it already exists. */
  create(key: string, value: string): Promise<number | undefined>;
  /** Updates `key` if it is still at `revision`; undefined when someone wrote in between. */
  update(key: string, value: string, revision: number): Promise<number | undefined>;
  /** Deletes `key` if it is still at `revision`; false when someone wrote in between. */
  remove(key: string, revision: number): Promise<boolean>;
  get(key: string): Promise<LeaseEntry | undefined>;
  /**
   * Calls `onRemoved` for every key under `filter` deleted from now on, until `signal` fires
   * (then resolves) or the watch fails (then rejects; the owner restarts it).
   */
  watchRemovals(
    filter: string,
    onRemoved: (key: string) => void,
    signal: AbortSignal,
  ): Promise<void>;
}

export function kvLeaseStore(kv: KV): LeaseStore {
  return {
    async create(key, value) {
      try {
        return await kv.create(key, value);
      } catch (err) {
        if (isWrongLastSequence(err)) return undefined;
        throw err;
      }
    },
    async update(key, value, revision) {
      try {
        return await kv.update(key, value, revision);
      } catch (err) {
        if (isWrongLastSequence(err)) return undefined;
        throw err;
      }
    },
    async remove(key, revision) {
      try {
        await kv.delete(key, { previousSeq: revision });
        return true;
      } catch (err) {
        if (isWrongLastSequence(err)) return false;
        throw err;
      }
    },
    async get(key) {
      const entry = await kv.get(key);
      if (entry === null) return undefined;
      return {
        revision: entry.revision,
        value: entry.operation === 'PUT' ? entry.string() : undefined,
      };
    },
    async watchRemovals(filter, onRemoved, signal) {
      const watch = await kv.watch({ key: filter, include: KvWatchInclude.UpdatesOnly });
      const stop = (): void => watch.stop();
      signal.addEventListener('abort', stop, { once: true });
      try {
        for await (const entry of watch) {
          if (entry.operation !== 'PUT') onRemoved(entry.key);
        }
      } finally {
        signal.removeEventListener('abort', stop);
      }
    },
  };
}
