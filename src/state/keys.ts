/**
 * KV keys. NATS KV keys allow only `[-/_=.A-Za-z0-9]`, but customer ids may be any safe subject
 * token, including Unicode. Ids made of `[A-Za-z0-9_-]` are stored as they are (readable for
 * operators); any other id is stored as `=` + base64url(utf8(id)). `=` never appears in a plain
 * id, so the two forms cannot collide. The partition is part of the key so that one partition's
 * customers can be listed (`c.<p>.>`) without touching the others.
 */
const PLAIN = /^[A-Za-z0-9_-]+$/u;

export function customerKey(partition: number, customerId: string): string {
  const token = PLAIN.test(customerId)
    ? customerId
    : `=${Buffer.from(customerId, 'utf8').toString('base64url')}`;
  return `c.${partition}.${token}`;
}

export function customerIdFromKey(key: string): string | undefined {
  const match = /^c\.\d+\.(.+)$/u.exec(key);
  const token = match?.[1];
  if (token === undefined) return undefined;
  return token.startsWith('=') ? Buffer.from(token.slice(1), 'base64url').toString('utf8') : token;
}

export function customerKeyFilter(partition: number): string {
  return `c.${partition}.>`;
}

export function watermarkKey(partition: number): string {
  return `wm.${partition}`;
}

/** A rebuild request for a partition, in the meta bucket: `rebuild.<p>`. */
export function rebuildKey(partition: number): string {
  return `rebuild.${partition}`;
}

/**
 * An entry of the orders stream superseded by its redriven copy (`order-fleet dlq redrive`), in
 * the meta bucket: `superseded.<p>.<source seq>`. Runners never apply it, so a rebuild (or a
 * replay under raised limits) that finds the original valid does not apply it twice.
 */
export function supersededKey(partition: number, sourceSeq: number): string {
  return `superseded.${partition}.${sourceSeq}`;
}

export function supersededKeyFilter(partition: number): string {
  return `superseded.${partition}.>`;
}

/** Timer index entry of a customer with an open timer: `t.<p>.<token>`. */
export function timerKey(partition: number, customerId: string): string {
  return `t${customerKey(partition, customerId).slice(1)}`;
}

export function customerIdFromTimerKey(key: string): string | undefined {
  return key.startsWith('t.') ? customerIdFromKey(`c${key.slice(1)}`) : undefined;
}

export function timerKeyFilter(partition: number): string {
  return `t.${partition}.>`;
}

/** Chunk `i` of a partition's timer snapshot (written by a clean checkpoint): `ts.<p>.<i>`. */
export function timerSnapshotKey(partition: number, chunk: number): string {
  return `ts.${partition}.${chunk}`;
}

export function timerSnapshotKeyFilter(partition: number): string {
  return `ts.${partition}.>`;
}
