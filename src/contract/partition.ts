/**
 * The partition function of the subject contract.
 *
 * `partition(id, P) = FNV-1a-32(utf8(id)) mod P`, written in plain decimal. This is exactly what
 * nats-server computes for a `{{partition(P, i)}}` subject mapping (FNV-1a over the wildcard
 * token's bytes), so a publisher in any language, or a mapping on the server itself, routes every
 * event of a customer to the same partition. Parity with the real server is proven by an
 * integration test.
 */
const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const encoder = new TextEncoder();

export function fnv1a32(bytes: Uint8Array): number {
  let hash = FNV_OFFSET_BASIS;
  for (const byte of bytes) {
    hash ^= byte;
    // Math.imul keeps the multiplication in 32 bits, as the Go implementation does.
    hash = Math.imul(hash, FNV_PRIME);
  }
  return hash >>> 0;
}

/** FNV-1a-32 of the UTF-8 bytes of `text`; ASCII is hashed straight from the string (no copy). */
export function fnv1a32String(text: string): number {
  let hash = FNV_OFFSET_BASIS;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    // Anything beyond ASCII: hash the UTF-8 encoding instead (same bytes, same result).
    if (code > 0x7f) return fnv1a32(encoder.encode(text));
    hash ^= code;
    hash = Math.imul(hash, FNV_PRIME);
  }
  return hash >>> 0;
}

export function partitionOf(customerId: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions must be a positive integer, got ${partitions}`);
  }
  return fnv1a32String(customerId) % partitions;
}
