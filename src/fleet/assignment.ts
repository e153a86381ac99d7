import { fnv1a32 } from '../contract/partition.js';

const encoder = new TextEncoder();

/** Rendezvous (highest-random-weight) score of a member for a partition. */
export function score(member: string, partition: number): number {
  // Mix the FNV hash once more (murmur3 finalizer) so similar member names spread well.
  let h = fnv1a32(encoder.encode(`${member}\u0000${partition}`));
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Deterministic partition → owner map, computed by every worker from the member list it sees; no
 * leader. Rendezvous hashing with bounded load: partitions are placed in order, each on the
 * highest-scoring member that still has room (at most ceil(P / N) each). A member joining or
 * leaving moves only about P / N partitions, and no member ends up with more than its share.
 */
export function assignPartitions(
  members: readonly string[],
  partitions: number,
): Map<number, string> {
  const sorted = [...new Set(members)].sort();
  const owners = new Map<number, string>();
  if (sorted.length === 0) return owners;
  const capacity = Math.ceil(partitions / sorted.length);
  const load = new Map<string, number>(sorted.map((m) => [m, 0]));
  for (let p = 0; p < partitions; p++) {
    const ranked = sorted
      .map((m) => ({ m, s: score(m, p) }))
      .sort((a, b) => b.s - a.s || (a.m < b.m ? -1 : 1));
    const owner = ranked.find(({ m }) => (load.get(m) ?? 0) < capacity)?.m;
    // Unreachable: capacity × members >= partitions, so someone always has room.
    if (owner === undefined) throw new Error('no member with capacity');
    owners.set(p, owner);
    load.set(owner, (load.get(owner) ?? 0) + 1);
  }
  return owners;
}

/** The partitions `member` owns under the assignment. */
export function partitionsOf(assignment: ReadonlyMap<number, string>, member: string): number[] {
  return [...assignment].filter(([, owner]) => owner === member).map(([p]) => p);
}
