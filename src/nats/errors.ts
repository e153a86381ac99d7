import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import {
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';

/**
 * Predicates over the NATS client's errors, by class and numeric code, never by message text.
 */

/** A compare-and-swap write (kv.create / kv.update / expected last subject seq) lost. */
export function isWrongLastSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

export function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
}

export function isConsumerNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound;
}

/** Nobody answered a request (no subscriber, or JetStream momentarily unavailable). */
export function isNoResponders(err: unknown): boolean {
  if (err instanceof NoRespondersError) return true;
  if (err instanceof RequestError) return err.isNoResponders();
  return err instanceof Error && err.cause !== undefined && isNoResponders(err.cause);
}

export function isTimeout(err: unknown): boolean {
  if (err instanceof TimeoutError) return true;
  return err instanceof Error && err.cause !== undefined && isTimeout(err.cause);
}

export function isMessageNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.NoMessageFound;
}

/**
 * The server refused a publish or subscription for this user's permissions. Permanent: the
 * credentials are for another role, and retrying cannot help.
 */
export function isPermissionViolation(err: unknown): boolean {
  if (err instanceof PermissionViolationError) return true;
  return err instanceof Error && err.cause !== undefined && isPermissionViolation(err.cause);
}
