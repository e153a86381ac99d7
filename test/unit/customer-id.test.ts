import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assertCustomerId,
  customerIdViolation,
  customerIdViolationByRules,
  MAX_CUSTOMER_ID_BYTES,
} from '../../src/contract/customer-id.js';
import {
  ErrorCode,
  isOrderFleetError,
  isValidationError,
  ValidationError,
} from '../../src/errors.js';
import { thrownBy, utf8Length, validCustomerId } from './helpers.js';

function violationOf(id: string): ValidationError {
  const err = thrownBy(() => assertCustomerId(id), ValidationError);
  expect(err.code).toBe(ErrorCode.InvalidCustomerId);
  expect(isOrderFleetError(err, ErrorCode.InvalidCustomerId)).toBe(true);
  expect(isValidationError(err)).toBe(true);
  expect(err.details).toEqual({ rule: err.rule });
  expect(err.message).toContain(`(rule ${err.rule})`);
  // The validator and the assertion agree on which rule is broken.
  expect(customerIdViolation(id)?.name).toBe(err.rule);
  return err;
}

describe('customer id rules', () => {
  it('MAX_CUSTOMER_ID_BYTES is 128', () => {
    expect(MAX_CUSTOMER_ID_BYTES).toBe(128);
  });

  it('rejects the empty id (rule non-empty)', () => {
    const err = violationOf('');
    expect(err.rule).toBe('non-empty');
    expect(err.message).toMatch(/must not be empty/);
  });

  it.each(['.', 'a.b', '.john', 'john.', 'a..b'])(
    "rejects %j: contains '.' (rule no-dot)",
    (id) => {
      const err = violationOf(id);
      expect(err.rule).toBe('no-dot');
      expect(err.message).toContain("'.'");
    },
  );

  it.each(['*', '>', 'a*', 'a>b', '>john', 'jo*hn'])(
    'rejects %j: wildcard (rule no-wildcard)',
    (id) => {
      const err = violationOf(id);
      expect(err.rule).toBe('no-wildcard');
      expect(err.message).toMatch(/wildcards/);
    },
  );

  it.each([
    ['space', 'john doe'],
    ['leading space', ' john'],
    ['trailing space', 'john '],
    ['tab', 'john\tdoe'],
    ['newline', 'john\n'],
    ['carriage return', 'john\rdoe'],
    ['vertical tab', 'a\vb'],
    ['form feed', 'a\fb'],
    ['no-break space U+00A0', 'john\u00a0doe'],
    ['ogham space U+1680', 'a\u1680b'],
    ['en quad U+2000', 'a\u2000b'],
    ['hair space U+200A', 'a\u200ab'],
    ['line separator U+2028', 'a\u2028b'],
    ['paragraph separator U+2029', 'a\u2029b'],
    ['narrow no-break space U+202F', 'a\u202fb'],
    ['medium math space U+205F', 'a\u205fb'],
    ['ideographic space U+3000', 'a\u3000b'],
    ['BOM U+FEFF', '\ufeffjohn'],
  ])('rejects whitespace: %s (rule no-whitespace)', (_name, id) => {
    const err = violationOf(id);
    expect(err.rule).toBe('no-whitespace');
    expect(err.message).toMatch(/whitespace/);
  });

  it.each([
    ['NUL', 'a\u0000b'],
    ['SOH', '\u0001'],
    ['ESC', 'a\u001bb'],
    ['unit separator U+001F', 'a\u001f'],
    ['DEL U+007F', 'a\u007fb'],
    ['C1 U+0080', 'a\u0080b'],
    ['C1 NEL U+0085 (also not \\s in JS)', 'a\u0085b'],
    ['C1 U+009F', 'a\u009f'],
  ])('rejects control character: %s (rule no-control)', (_name, id) => {
    const err = violationOf(id);
    expect(err.rule).toBe('no-control');
    expect(err.message).toMatch(/control characters/);
  });

  it('rejects ids longer than 128 UTF-8 bytes (rule max-bytes)', () => {
    expect(violationOf('a'.repeat(129)).rule).toBe('max-bytes');
    // 43 three-byte characters: only 43 UTF-16 code units, but 129 bytes.
    const euro = '€'.repeat(43);
    expect(euro.length).toBe(43);
    expect(utf8Length(euro)).toBe(129);
    expect(violationOf(euro).rule).toBe('max-bytes');
    // 65 two-byte characters = 130 bytes.
    expect(violationOf('é'.repeat(65)).rule).toBe('max-bytes');
    // 33 four-byte emoji = 132 bytes (66 code units).
    expect(violationOf('😀'.repeat(33)).rule).toBe('max-bytes');
    // 127 ASCII + one 2-byte char = 129 bytes.
    expect(violationOf(`${'a'.repeat(127)}é`).rule).toBe('max-bytes');
    const err = violationOf('x'.repeat(500));
    expect(err.message).toMatch(/at most 128 bytes/);
  });

  it('quotes at most 64 characters of the offending id in the message', () => {
    const err = violationOf(`${'x'.repeat(100)}.`);
    expect(err.message).toContain(JSON.stringify('x'.repeat(64)));
    expect(err.message).not.toContain('x'.repeat(65));
  });

  it('reports the first broken rule in a fixed order', () => {
    // too long and with a dot: max-bytes comes first.
    expect(customerIdViolation(`${'a'.repeat(200)}.`)?.name).toBe('max-bytes');
    // dot and wildcard: no-dot first.
    expect(customerIdViolation('a.*')?.name).toBe('no-dot');
    // wildcard and space: no-wildcard first.
    expect(customerIdViolation('a *')?.name).toBe('no-wildcard');
    // tab is both whitespace and a control character: no-whitespace first.
    expect(customerIdViolation('a\tb')?.name).toBe('no-whitespace');
  });

  it.each([
    ['plain', 'john'],
    ['karan', 'Karan'],
    ['digits and punctuation', 'cust_42-A'],
    ['other punctuation', 'a=b+c/d#e@f:g,h'],
    ['single char', 'x'],
    ['accents', 'José'],
    ['CJK', '顧客'],
    ['emoji', '🛒😀'],
    ['combining mark', 'e\u0301'],
    ['zero-width joiner sequence', '👩‍💻'],
    ['zero width space (not whitespace in Unicode)', 'a\u200bb'],
    ['exactly 128 ASCII bytes', 'a'.repeat(128)],
    ['exactly 128 bytes of 2-byte chars', 'é'.repeat(64)],
    ['126 bytes of 3-byte chars', '€'.repeat(42)],
    ['128 bytes of 3-byte chars + 2 ASCII', `${'€'.repeat(42)}ab`],
    ['exactly 128 bytes of 4-byte chars', '😀'.repeat(32)],
  ])('accepts a valid id: %s', (_name, id) => {
    expect(customerIdViolation(id)).toBeUndefined();
    expect(assertCustomerId(id)).toBeUndefined();
  });

  it('the 128-byte boundary is in bytes, for any mix of characters', () => {
    const chars = fc.constantFrom('a', 'é', '€', '😀');
    fc.assert(
      fc.property(fc.array(chars, { minLength: 1, maxLength: 140 }), (parts) => {
        const id = parts.join('');
        const violation = customerIdViolation(id);
        if (utf8Length(id) <= 128) expect(violation).toBeUndefined();
        else expect(violation?.name).toBe('max-bytes');
      }),
      { numRuns: 200 },
    );
  });

  it('PROPERTY: inserting any forbidden character into a valid id makes it invalid', () => {
    const forbidden = fc.constantFrom(
      '.',
      '*',
      '>',
      ' ',
      '\t',
      '\n',
      '\u00a0',
      '\u3000',
      '\u0000',
      '\u007f',
      '\u0090',
    );
    fc.assert(
      fc.property(validCustomerId, forbidden, fc.nat(), (id, bad, at) => {
        const cut = at % (id.length + 1);
        const broken = `${id.slice(0, cut)}${bad}${id.slice(cut)}`;
        expect(customerIdViolation(broken)).toBeDefined();
        expect(() => assertCustomerId(broken)).toThrow(ValidationError);
      }),
      { numRuns: 200 },
    );
  });

  it('PROPERTY: the generator of valid ids only produces ids that assert cleanly', () => {
    fc.assert(
      fc.property(validCustomerId, (id) => {
        expect(id.length).toBeGreaterThan(0);
        expect(utf8Length(id)).toBeLessThanOrEqual(128);
        expect(id).not.toMatch(/[.*>\s]/u);
        expect(assertCustomerId(id)).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it('PROPERTY: the one-pass ASCII check agrees with the rules on every id, edge lengths included', () => {
    const ascii = fc.string({
      unit: fc.integer({ min: 0, max: 0x80 }).map((c) => String.fromCharCode(c)),
      minLength: 0,
      maxLength: 130,
    });
    const edges = fc.constantFrom(
      '',
      'a',
      'x'.repeat(128),
      'x'.repeat(129),
      'a.b',
      'a*',
      '>',
      '~',
      '\u007f',
      'é',
    );
    fc.assert(
      fc.property(
        fc.oneof(ascii, validCustomerId, fc.string({ unit: 'grapheme' }), edges),
        (id) => {
          expect(customerIdViolation(id)?.name).toBe(customerIdViolationByRules(id)?.name);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
