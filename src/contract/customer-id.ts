import { ErrorCode, ValidationError } from '../errors.js';

/** Customer ids are one subject token; this is the longest we accept, in UTF-8 bytes. */
export const MAX_CUSTOMER_ID_BYTES = 128;

const encoder = new TextEncoder();
// Whitespace (including Unicode spaces) and control characters would split or corrupt a subject.
const WHITESPACE = /\s/u;
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;

interface Rule {
  readonly name: string;
  readonly broken: (id: string) => boolean;
  readonly explain: string;
}

const RULES: readonly Rule[] = [
  { name: 'non-empty', broken: (id) => id.length === 0, explain: 'must not be empty' },
  {
    // A lone UTF-16 surrogate has no UTF-8 form: it would be replaced on the wire and two ids
    // could become one.
    name: 'well-formed-unicode',
    broken: (id) => /\p{Cs}/u.test(id),
    explain: 'must be well-formed Unicode (no lone surrogates)',
  },
  {
    name: 'max-bytes',
    broken: (id) => encoder.encode(id).byteLength > MAX_CUSTOMER_ID_BYTES,
    explain: `must be at most ${MAX_CUSTOMER_ID_BYTES} bytes in UTF-8`,
  },
  { name: 'no-dot', broken: (id) => id.includes('.'), explain: "must not contain '.'" },
  {
    name: 'no-wildcard',
    broken: (id) => id.includes('*') || id.includes('>'),
    explain: "must not contain the wildcards '*' or '>'",
  },
  {
    name: 'no-whitespace',
    broken: (id) => WHITESPACE.test(id),
    explain: 'must not contain whitespace',
  },
  {
    name: 'no-control',
    broken: (id) => CONTROL.test(id),
    explain: 'must not contain control characters',
  },
];

/** Returns the first rule the id breaks, or undefined when it is a safe subject token. */
export function customerIdViolation(id: string): Rule | undefined {
  return isPlainCustomerId(id) ? undefined : RULES.find((rule) => rule.broken(id));
}

/**
 * The common case in one pass with no allocation: 1–128 printable ASCII characters other than
 * '.', '*' and '>' break no rule (ASCII has one byte per character, no surrogates, and no
 * whitespace or control characters in 0x21–0x7e). Anything else is checked rule by rule, which
 * names the rule broken. Proved equivalent by a property test (test/unit/customer-id.test.ts).
 */
function isPlainCustomerId(id: string): boolean {
  if (id.length === 0 || id.length > MAX_CUSTOMER_ID_BYTES) return false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x2e || c === 0x2a || c === 0x3e) return false;
  }
  return true;
}

/** The rule-by-rule check alone (the reference for the fast path, in tests). */
export function customerIdViolationByRules(id: string): Rule | undefined {
  return RULES.find((rule) => rule.broken(id));
}

/** Throws a {@link ValidationError} naming the broken rule. */
export function assertCustomerId(id: string): void {
  const rule = customerIdViolation(id);
  if (rule !== undefined) {
    throw new ValidationError(
      ErrorCode.InvalidCustomerId,
      `invalid customer id ${JSON.stringify(id.slice(0, 64))}: ${rule.explain} (rule ${rule.name})`,
      rule.name,
      { details: { rule: rule.name } },
    );
  }
}
