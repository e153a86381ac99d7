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
  /** A publish kept failing after every retry. */
  PublishFailed: 'PUBLISH_FAILED',
  /** The publisher was closed. */
  PublisherClosed: 'PUBLISHER_CLOSED',
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
  /** `auth init` would overwrite existing files (secrets); nothing was written. */
  FilesExist: 'FILES_EXIST',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface OrderFleetErrorOptions {
  readonly cause?: unknown;
  /** Structured facts about the failure, safe to log. */
  readonly details?: Readonly<Record<string, unknown>>;
}

export class OrderFleetError extends Error {
  override readonly name: string = 'OrderFleetError';
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: OrderFleetErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
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

export function isValidationError(err: unknown): err is ValidationError {
  return err instanceof ValidationError;
}

/** A readable one-liner for logs of errors we did not raise ourselves. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
