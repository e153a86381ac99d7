import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fnv1a32, fnv1a32String, partitionOf } from '../../src/contract/partition.js';
import { anyCodePoint } from './helpers.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Independent reference: FNV-1a 32 with BigInt arithmetic, no Math.imul. */
function referenceFnv1a32(bytes: Uint8Array): number {
  let hash = 0x811c9dc5n;
  for (const byte of bytes) {
    hash ^= BigInt(byte);
    hash = (hash * 0x01000193n) % 0x1_0000_0000n;
  }
  return Number(hash);
}

describe('fnv1a32', () => {
  it.each([
    ['', 0x811c9dc5],
    ['a', 0xe40c292c],
    ['foobar', 0xbf9cf968],
  ])('hashes %j to the published FNV-1a-32 vector', (input, expected) => {
    expect(fnv1a32(utf8(input))).toBe(expected);
    expect(referenceFnv1a32(utf8(input))).toBe(expected);
  });

  it('returns an unsigned 32-bit integer', () => {
    // 0x811c9dc5 and 0xe40c292c have the top bit set: a signed result would be negative.
    expect(fnv1a32(utf8(''))).toBeGreaterThan(0x7fffffff);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const h = fnv1a32(bytes);
        expect(Number.isInteger(h)).toBe(true);
        expect(h).toBeGreaterThanOrEqual(0);
        expect(h).toBeLessThanOrEqual(0xffffffff);
      }),
      { numRuns: 200 },
    );
  });

  it('matches an independent BigInt implementation for arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        expect(fnv1a32(bytes)).toBe(referenceFnv1a32(bytes));
      }),
      { numRuns: 300 },
    );
  });

  it('is sensitive to byte order', () => {
    expect(fnv1a32(Uint8Array.of(1, 2))).not.toBe(fnv1a32(Uint8Array.of(2, 1)));
  });
});

describe('partitionOf', () => {
  it('is FNV-1a-32 of the UTF-8 bytes, modulo P', () => {
    // With P = 2^32 the modulo is the identity, exposing the raw hash.
    expect(partitionOf('', 2 ** 32)).toBe(0x811c9dc5);
    expect(partitionOf('a', 2 ** 32)).toBe(0xe40c292c);
    expect(partitionOf('foobar', 2 ** 32)).toBe(0xbf9cf968);
    expect(partitionOf('foobar', 32)).toBe(0xbf9cf968 % 32);
    expect(partitionOf('a', 7)).toBe(0xe40c292c % 7);
  });

  it('hashes UTF-8 bytes, not UTF-16 code units, and does not normalize', () => {
    expect(partitionOf('é', 2 ** 32)).toBe(referenceFnv1a32(Uint8Array.of(0xc3, 0xa9)));
    expect(partitionOf('😀', 2 ** 32)).toBe(
      referenceFnv1a32(Uint8Array.of(0xf0, 0x9f, 0x98, 0x80)),
    );
    // Precomposed and decomposed forms are different bytes, hence (here) different hashes.
    expect(partitionOf('\u00e9', 2 ** 32)).not.toBe(partitionOf('e\u0301', 2 ** 32));
  });

  it('always returns an integer in [0, P) for any string, including Unicode', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ unit: anyCodePoint })),
        fc.integer({ min: 1, max: 4096 }),
        (id, partitions) => {
          const p = partitionOf(id, partitions);
          expect(Number.isInteger(p)).toBe(true);
          expect(p).toBeGreaterThanOrEqual(0);
          expect(p).toBeLessThan(partitions);
          expect(p).toBe(referenceFnv1a32(utf8(id)) % partitions);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('is deterministic', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: anyCodePoint }),
        fc.integer({ min: 1, max: 4096 }),
        (id, partitions) => {
          expect(partitionOf(id, partitions)).toBe(partitionOf(`${id}`, partitions));
          expect(partitionOf(id, partitions)).toBe(partitionOf(id.slice(), partitions));
        },
      ),
      { numRuns: 100 },
    );
  });

  it('maps everything to partition 0 when P = 1', () => {
    fc.assert(
      fc.property(fc.string(), (id) => {
        expect(partitionOf(id, 1)).toBe(0);
      }),
      { numRuns: 50 },
    );
  });

  it('spreads distinct ids over the partitions', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(partitionOf(`customer-${i}`, 32));
    expect(seen.size).toBe(32);
  });

  it.each([0, -1, -32, 1.5, 0.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])(
    'throws RangeError for partitions = %s',
    (partitions) => {
      expect(() => partitionOf('john', partitions)).toThrow(RangeError);
      expect(() => partitionOf('john', partitions)).toThrow(
        /partitions must be a positive integer/,
      );
    },
  );
});

describe('fnv1a32String', () => {
  it('PROPERTY: equals FNV-1a-32 of the UTF-8 bytes for ASCII and any other string', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ unit: anyCodePoint })),
        (text) => {
          expect(fnv1a32String(text)).toBe(referenceFnv1a32(utf8(text)));
        },
      ),
      { numRuns: 1000 },
    );
  });
});
