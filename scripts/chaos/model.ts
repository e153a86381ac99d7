// The plug-in point for users: what to publish, how to publish it, and what the fleet must have
// computed from it. The harness itself knows nothing about orders; `order-model.ts` is only the
// default. A module passed with `--model PATH` exports `createModel(options)` (or a default
// export) returning a {@link ChaosModel}.

import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ResourceNames } from '../../src/contract/names.js';
import type { StoredMessage } from './streams.js';
import type { Delivery } from './webhook-receiver.js';
import type { Violation } from './violations.js';

/** An event the harness published, with the stream sequence it was stored at. */
export interface PublishedEvent<E> {
  readonly customerId: string;
  readonly event: E;
  /** Undefined when it was never stored (every attempt failed and the stream does not hold it). */
  readonly seq: number | undefined;
}

/** A customer's snapshot as the fleet stored it in the state bucket. */
export interface StoredCustomer {
  readonly customerId: string;
  readonly lastSeq: number;
  /** The aggregator's serialized state, as written. */
  readonly state: unknown;
}

export interface ModelPublisher<E> {
  /** Publishes one event; resolves with its stream sequence once stored. */
  publish(customerId: string, event: E): Promise<{ readonly seq: number }>;
  close(): Promise<void>;
}

export interface CheckContext<E> {
  /** Everything published, in publish order. */
  readonly published: readonly PublishedEvent<E>[];
  /** Final stored state of every customer. */
  readonly stored: ReadonlyMap<string, StoredCustomer>;
  /** Every request the webhook receiver got, in order of arrival (refused ones included). */
  readonly deliveries: readonly Delivery[];
  /** Reads a whole stream (e.g. the orders log, to derive which outputs it implies). */
  readStream(stream: string): Promise<StoredMessage[]>;
  readonly names: ResourceNames;
  /**
   * Every write of every customer key the harness's watch saw, in revision order (the customer
   * id → its writes): lets a model find the first write that went wrong, and from what.
   */
  readonly writes: ReadonlyMap<string, readonly CustomerWrite[]>;
}

export interface CustomerWrite {
  readonly revision: number;
  /** Milliseconds since the run started. */
  readonly atMs: number;
  readonly lastSeq: number;
  /** The aggregator's serialized state, as written. */
  readonly state: unknown;
}

export interface ModelCheck {
  readonly violations: readonly Violation[];
  /** Counts for the report (e.g. windows, deliveries, repeats). */
  readonly counts: Readonly<Record<string, number>>;
}

export interface ChaosModel<E = unknown> {
  readonly name: string;
  /** Extra environment for every worker (e.g. short summary windows so they close during a run). */
  readonly workerEnv?: Readonly<Record<string, string>>;
  /** The n-th event of the run; `random` is the run's seeded generator, so loads repeat. */
  nextEvent(random: () => number, n: number): { readonly customerId: string; readonly event: E };
  /** The event's id (`Nats-Msg-Id`): finds events whose publish failed but which were stored. */
  eventId(event: E): string;
  openPublisher(ctx: {
    readonly nc: NatsConnection;
    readonly names: ResourceNames;
    readonly partitions: number;
  }): Promise<ModelPublisher<E>>;
  /** Compares what the fleet stored and delivered with what the published events imply. */
  check(ctx: CheckContext<E>): Promise<ModelCheck>;
}

export interface ModelOptions {
  readonly customers: number;
  readonly seed: number;
}

/** Loads `--model PATH` (resolved from the working directory), or the default order model. */
export async function loadModel(
  path: string | undefined,
  options: ModelOptions,
): Promise<ChaosModel> {
  if (path === undefined) {
    const { createModel } = await import('./order-model.js');
    return createModel(options);
  }
  const mod = (await import(pathToFileURL(resolvePath(path)).href)) as {
    createModel?: (o: ModelOptions) => ChaosModel | Promise<ChaosModel>;
    default?: ((o: ModelOptions) => ChaosModel | Promise<ChaosModel>) | ChaosModel;
  };
  const factory = mod.createModel ?? mod.default;
  if (factory === undefined)
    throw new TypeError(`${path}: expected an export createModel(options) or a default export`);
  return typeof factory === 'function' ? await factory(options) : factory;
}
