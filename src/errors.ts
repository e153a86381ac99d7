import { isTransientNatsError } from './nats/errors.js';

/**
 * Every error order-fleet raises on purpose is an {@link OrderFleetError} with a stable
 * string `code`. Callers tell errors apart by code (see {@link isOrderFleetError}), never
 * by message text: messages are for people and may be reworded.
 */
export const ErrorCode = {
  /** A setting failed validation; the message names the variable. CLI exit code 2. */
  ConfigInvalid: 'CONFIG_INVALID',
  /** A customer id is not a safe single subject token. */
  InvalidCustomerId: 'INVALID_CUSTOMER_ID',
  /** An event payload failed the schema (type, id, items, at). */
  InvalidEvent: 'INVALID_EVENT',
  /** An event payload is not JSON. */
  MalformedJson: 'MALFORMED_JSON',
  /** An encoded event is larger than the configured maximum. */
  PayloadTooLarge: 'PAYLOAD_TOO_LARGE',
  /** An event lists more items than the configured maximum. */
  TooManyItems: 'TOO_MANY_ITEMS',
  /** A subject on the orders stream does not follow the subject contract. */
  InvalidSubject: 'INVALID_SUBJECT',
  /** The event's partition does not match FNV-1a(customerId) mod P. */
  WrongPartition: 'WRONG_PARTITION',
  /** The deployment has not been provisioned (`order-fleet setup`). */
  NotProvisioned: 'NOT_PROVISIONED',
  /** `setup` was asked to change something that cannot change on a live deployment. */
  ImmutableSetting: 'IMMUTABLE_SETTING',
  /**
   * A deployment-wide switch (the timer layout) must wait: some live workers cannot run it yet.
   * Terminal for this call (setup does not wait for a rollout): run setup again once it is done.
   */
  UpgradeBlocked: 'UPGRADE_BLOCKED',
  /** A publish kept failing after every retry. */
  PublishFailed: 'PUBLISH_FAILED',
  /** The publisher was closed. */
  PublisherClosed: 'PUBLISHER_CLOSED',
  /**
   * A publish was answered as a duplicate of one still being replicated, with sequence 0: stored
   * (or about to be), its sequence not known yet. Asking again with the same id gets it.
   */
  PublishUnsequenced: 'PUBLISH_UNSEQUENCED',
  /** A stored state could not be decoded (unknown version or corrupt). */
  StateCorrupt: 'STATE_CORRUPT',
  /** A conditional (compare-and-swap) write lost: somebody else wrote first. */
  WriteConflict: 'WRITE_CONFLICT',
  /** This process no longer owns the partition (fenced out). */
  Fenced: 'FENCED',
  /** A query could not be answered. */
  QueryFailed: 'QUERY_FAILED',
  /** Graceful shutdown did not finish before its deadline. */
  ShutdownTimeout: 'SHUTDOWN_TIMEOUT',
  /** Graceful shutdown finished, but some partitions' final checkpoint failed (replay covers it). */
  ShutdownIncomplete: 'SHUTDOWN_INCOMPLETE',
  /** An operation was given up because its AbortSignal fired (shutdown deadline, stop). */
  Aborted: 'ABORTED',
  /** The aggregator's `apply()` threw on an entry: the customer is quarantined from that entry on. */
  ApplyFailed: 'APPLY_FAILED',
  /** An entry of a quarantined customer: dead-lettered, not applied (its state would no longer be a fold). */
  CustomerQuarantined: 'CUSTOMER_QUARANTINED',
  /** `auth init` would overwrite existing files (secrets); nothing was written. */
  FilesExist: 'FILES_EXIST',
  /** An operator's selection (dead letters, partitions, a sequence range) is malformed. */
  InvalidSelection: 'INVALID_SELECTION',
  /** The thing asked for (a dead letter, a customer's log) does not exist. */
  NotFound: 'NOT_FOUND',
  /** The stream no longer holds the whole history (retention removed its head): no rebuild. */
  HistoryTruncated: 'HISTORY_TRUNCATED',
  /** A destructive operation needs an explicit confirmation (`--yes`). */
  ConfirmationRequired: 'CONFIRMATION_REQUIRED',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Codes worth retrying: the same operation may succeed later without anyone changing anything
 * (another owner took over, a publish timed out). Every other code is terminal: retrying the same
 * input gives the same answer (bad input, corrupt state, a closed component).
 */
const RETRIABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.PublishFailed,
  ErrorCode.PublishUnsequenced,
  ErrorCode.WriteConflict,
  ErrorCode.Fenced,
  ErrorCode.QueryFailed,
]);

export interface OrderFleetErrorOptions {
  readonly cause?: unknown;
  /** Overrides the code's default (see {@link RETRIABLE_CODES}). */
  readonly retriable?: boolean;
  /** Structured facts about the failure, safe to log. */
  readonly details?: Readonly<Record<string, unknown>>;
}

export class OrderFleetError extends Error {
  override readonly name: string = 'OrderFleetError';
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;
  /** True when trying the same thing again later may succeed. */
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, options: OrderFleetErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
    this.retriable = options.retriable ?? RETRIABLE_CODES.has(code);
  }
}

/** Configuration is invalid; `variable` names the setting (env var or CLI flag). */
export class ConfigError extends OrderFleetError {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    readonly variable: string,
    options: OrderFleetErrorOptions = {},
  ) {
    super(ErrorCode.ConfigInvalid, message, options);
  }
}

/**
 * Bad input at an edge (customer id, payload, subject). `rule` names the rule broken, so a
 * dead-letter entry or a CLI error says exactly what to fix.
 */
export class ValidationError extends OrderFleetError {
  override readonly name = 'ValidationError';
  constructor(
    code: ErrorCode,
    message: string,
    readonly rule: string,
    options: OrderFleetErrorOptions = {},
  ) {
    super(code, message, options);
  }
}

export function isOrderFleetError(err: unknown, code?: ErrorCode): err is OrderFleetError {
  return err instanceof OrderFleetError && (code === undefined || err.code === code);
}

/**
 * True for failures known to be transient: our own retriable codes, and the NATS client's
 * timeouts, no-responders, disconnects, and JetStream being unavailable during an election (see
 * {@link isTransientNatsError}). Unknown errors are not retriable by this predicate; callers that
 * must never give up (a partition's supervisor) decide for unknown errors themselves.
 */
export function isRetriable(err: unknown): boolean {
  if (err instanceof OrderFleetError) return err.retriable;
  return isTransientNatsError(err);
}

/**
 * True only for failures known to be permanent: an {@link OrderFleetError} whose code is not
 * retriable (corrupt state, bad input). Unknown errors are not terminal.
 */
export function isTerminal(err: unknown): boolean {
  return err instanceof OrderFleetError && !err.retriable;
}

/** The stable code of an error: ours, or a short class-based tag for anything else. */
export function errorCode(err: unknown): string {
  if (err instanceof OrderFleetError) return err.code;
  if (err instanceof Error) return err.name;
  return 'UNKNOWN';
}

export function isValidationError(err: unknown): err is ValidationError {
  return err instanceof ValidationError;
}

/** A readable one-liner for logs of errors we did not raise ourselves. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
