import { KvWatchInclude, type KV } from '@nats-io/kv';
import { z } from 'zod';
import { describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';

/**
 * Fleet membership in a KV bucket with a bucket-level TTL. Each worker writes `m.<id>` on a
 * heartbeat and deletes it on graceful shutdown. Every worker watches the bucket, so all see a
 * join or a graceful leave at once. A crashed worker's entry simply stops being renewed; NATS 2.9
 * removes it after the TTL without telling watchers, so each watcher also expires members it has
 * not heard from for a TTL, by its own clock.
 */
export const MemberSchema = z.object({
  id: z.string(),
  since: z.string(),
  heartbeatAt: z.string(),
});
export type Member = z.infer<typeof MemberSchema>;

export interface MembershipOptions {
  readonly workerId: string;
  readonly heartbeatMs: number;
  /** The bucket's TTL in ms. */
  readonly ttlMs: number;
  readonly log: Logger;
}

export class Membership {
  readonly #kv: KV;
  readonly #options: MembershipOptions;
  readonly #since = new Date().toISOString();
  /** Live members: id → (record, local time last heard). */
  readonly #members = new Map<string, { member: Member; heardAt: number }>();
  #heartbeat: NodeJS.Timeout | undefined;
  #stopWatch: (() => void) | undefined;
  #watching: Promise<void> | undefined;
  #lastPublished = '';
  #listeners: ((members: readonly string[]) => void)[] = [];
  #joined = false;

  constructor(kv: KV, options: MembershipOptions) {
    this.#kv = kv;
    this.#options = options;
  }

  get key(): string {
    return `m.${this.#options.workerId}`;
  }

  /** Joins: writes our entry, starts watching and heartbeating. */
  async join(): Promise<void> {
    const watch = await this.#kv.watch({ key: 'm.>', include: KvWatchInclude.LastValue });
    this.#stopWatch = () => watch.stop();
    this.#watching = (async () => {
      for await (const entry of watch) {
        const id = entry.key.slice(2);
        if (entry.operation === 'PUT') {
          const parsed = MemberSchema.safeParse(entry.json());
          if (parsed.success)
            this.#members.set(id, { member: parsed.data, heardAt: performance.now() });
        } else {
          this.#members.delete(id);
        }
        this.#publish();
      }
    })();
    await this.#beat();
    this.#joined = true;
    this.#heartbeat = setInterval(() => void this.#tick(), this.#options.heartbeatMs);
    this.#heartbeat.unref();
  }

  /** Leaves at once (graceful shutdown): the others rebalance without waiting for the TTL. */
  async leave(): Promise<void> {
    clearInterval(this.#heartbeat);
    if (this.#joined) {
      this.#joined = false;
      try {
        await this.#kv.delete(this.key);
      } catch (err) {
        this.#options.log.warn(
          { err: describeError(err) },
          'membership delete failed; it will expire',
        );
      }
    }
    this.#stopWatch?.();
    await this.#watching;
  }

  /** Calls `listener` with the sorted live member ids whenever the set changes. */
  onChange(listener: (members: readonly string[]) => void): void {
    this.#listeners.push(listener);
  }

  /** Live members, sorted by id. */
  members(): string[] {
    return [...this.#members.keys()].sort();
  }

  snapshot(): Member[] {
    return [...this.#members.values()].map((m) => m.member).sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async #tick(): Promise<void> {
    try {
      await this.#beat();
    } catch (err) {
      this.#options.log.warn({ err: describeError(err) }, 'membership heartbeat failed');
    }
    this.#expire();
  }

  async #beat(): Promise<void> {
    const member: Member = {
      id: this.#options.workerId,
      since: this.#since,
      heartbeatAt: new Date().toISOString(),
    };
    await this.#kv.put(this.key, JSON.stringify(member));
  }

  #expire(): void {
    const now = performance.now();
    for (const [id, { heardAt }] of this.#members) {
      if (id !== this.#options.workerId && now - heardAt > this.#options.ttlMs) {
        this.#options.log.info({ member: id }, 'member expired');
        this.#members.delete(id);
      }
    }
    this.#publish();
  }

  #publish(): void {
    const members = this.members();
    const key = members.join(',');
    if (key === this.#lastPublished) return;
    this.#lastPublished = key;
    this.#options.log.info({ members }, 'membership changed');
    for (const listener of this.#listeners) listener(members);
  }
}
