import fc from 'fast-check';
import { expect } from 'vitest';
import { customerIdViolation } from '../../src/contract/customer-id.js';

/** Calls `fn`, expects it to throw an instance of `ctor`, and returns the error, typed. */
export function thrownBy<T>(fn: () => unknown, ctor: abstract new (...args: never[]) => T): T {
  let caught: unknown;
  let threw = false;
  try {
    fn();
  } catch (err) {
    threw = true;
    caught = err;
  }
  expect(threw, 'expected the call to throw').toBe(true);
  expect(caught).toBeInstanceOf(ctor);
  return caught as T;
}

/** Recursively freezes a value (objects and arrays), returning it. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

/** Every object reachable from `value` (including itself) that is not frozen, by path. */
export function unfrozenPaths(value: unknown, path = '$'): string[] {
  if (typeof value !== 'object' || value === null) return [];
  const own = Object.isFrozen(value) ? [] : [path];
  return own.concat(
    ...Object.entries(value).map(([key, inner]) => unfrozenPaths(inner, `${path}.${key}`)),
  );
}

export const utf8Length = (s: string): number => new TextEncoder().encode(s).byteLength;

/**
 * Any Unicode scalar value (no lone surrogates). Used instead of fast-check's `unit: 'binary'`,
 * whose first use costs about a second.
 */
export const anyCodePoint: fc.Arbitrary<string> = fc
  .integer({ min: 0, max: 0x10ffff })
  .filter((cp) => cp < 0xd800 || cp > 0xdfff)
  .map((cp) => String.fromCodePoint(cp));

/** Characters chosen to hit every encoding path: ASCII, punctuation, 2-, 3- and 4-byte UTF-8. */
const ID_CHARS = [...'aZ09_-=+/#@:,;!?~()[]{}|^%$&\'"`\\é€漢ß😀🎉'];

/**
 * Customer ids the contract accepts: readable plain ids, ids with punctuation and Unicode, and
 * arbitrary well-formed Unicode, all filtered through the validator itself.
 */
export const validCustomerId: fc.Arbitrary<string> = fc
  .oneof(
    fc.stringMatching(/^[A-Za-z0-9_-]{1,128}$/),
    fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 40 }),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
    fc.string({ unit: anyCodePoint, minLength: 1, maxLength: 32 }),
  )
  .filter((id) => customerIdViolation(id) === undefined);
