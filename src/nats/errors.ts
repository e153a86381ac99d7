import { JetStreamApiCodes, JetStreamApiError, JetStreamError } from '@nats-io/jetstream';
import { jserrors, JetStreamStatusError } from '@nats-io/jetstream/internal';
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
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
 * JetStream API error codes that mean "not now" rather than "no": the cluster or the asset is
 * between leaders (an election after a node restart) or not yet caught up. Everything with HTTP
 * status 503 is transient too (e.g. 10008 "JetStream system temporarily unavailable").
 */
const TRANSIENT_API_CODES: ReadonlySet<number> = new Set([
  10008, // JSClusterNotAvailErr: JetStream system temporarily unavailable
  10009, // JSClusterNotLeaderErr: JetStream cluster can not handle request (no leader)
  10006, // JSClusterNotActiveErr: JetStream not in clustered mode yet
  10118, // JSStreamOfflineErr: stream is offline (peers restarting)
  10119, // JSConsumerOfflineErr: consumer is offline
]);

/**
 * A NATS client failure that may go away by itself: a timeout, nobody answering (JetStream
 * between leaders, a server restarting), a request cut off by a disconnect, the connection not
 * up yet, JetStream "not enabled" (what nats.js reports for no responders on the JS API during an
 * election), a 503 or a leader change. A connection that *we* closed or are draining is not
 * transient: it means we are shutting down. Classified by class and numeric code only.
 */
export function isTransientNatsError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof ClosedConnectionError || err instanceof DrainingConnectionError) return false;
  // Refused for this user's permissions: retrying with the same credentials cannot help.
  if (isPermissionViolation(err)) return false;
  if (err instanceof TimeoutError || err instanceof NoRespondersError) return true;
  // "connection disconnected", "connection closed" for requests in flight, and cancellations.
  if (err instanceof RequestError || err instanceof ConnectionError) return true;
  if (err instanceof jserrors.JetStreamNotEnabled) return true;
  if (err instanceof JetStreamApiError)
    return err.status === 503 || TRANSIENT_API_CODES.has(err.code);
  // Status errors of pull requests (e.g. 408/409 while a consumer moves) and "heartbeats missed".
  if (err instanceof JetStreamStatusError) return true;
  if (err instanceof JetStreamError) return true;
  return err.cause !== undefined && isTransientNatsError(err.cause);
}

/**
 * JetStream could not place an asset's replicas ("no suitable peers for placement", 10005). One
 * code for two facts: a cluster still forming (its last peer not yet current with the meta
 * leader), which goes away within seconds, and a replica count the cluster can never hold,
 * which does not. Only a caller with a deadline (setup) may wait it out.
 */
export function isNoSuitablePeers(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.code === JS_CLUSTER_NO_PEERS;
  return err instanceof Error && err.cause !== undefined && isNoSuitablePeers(err.cause);
}

/** JSClusterNoPeersErr: nats.js names only a few codes, and this is not one of them. */
const JS_CLUSTER_NO_PEERS = 10005;

/**
 * The server refused a publish or subscription for this user's permissions. Permanent: the
 * credentials are for another role, and retrying cannot help.
 */
export function isPermissionViolation(err: unknown): boolean {
  if (err instanceof PermissionViolationError) return true;
  return err instanceof Error && err.cause !== undefined && isPermissionViolation(err.cause);
}
