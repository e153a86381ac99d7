import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { customerIdViolation } from '../../src/contract/customer-id.js';
import {
  customerIdFromKey,
  customerKey,
  customerKeyFilter,
  watermarkKey,
} from '../../src/state/keys.js';
import { validCustomerId } from './helpers.js';

/** The key rule of NATS KV (nats.js `validKey`): this alphabet, and no leading/trailing '.'. */
const NATS_KV_KEY = /^[-/=.\w]+$/;
const isValidKvKey = (key: string): boolean =>
  NATS_KV_KEY.test(key) && !key.startsWith('.') && !key.endsWith('.');

const partition = fc.integer({ min: 0, max: 4095 });

describe('customerKey', () => {
  it('keeps plain ids readable', () => {
    expect(customerKey(3, 'john')).toBe('c.3.john');
    expect(customerKey(0, 'Karan')).toBe('c.0.Karan');
    expect(customerKey(31, 'cust_42-A')).toBe('c.31.cust_42-A');
    expect(customerKey(4095, 'a'.repeat(128))).toBe(`c.4095.${'a'.repeat(128)}`);
  });

  it('encodes any other id as = + base64url(utf8)', () => {
    expect(customerKey(1, 'José')).toBe(
      `c.1.=${Buffer.from('José', 'utf8').toString('base64url')}`,
    );
    expect(customerKey(1, 'José')).toBe('c.1.=Sm9zw6k');
    expect(customerKey(2, 'a=b')).toBe('c.2.=YT1i');
    expect(customerKey(2, 'a/b')).toMatch(/^c\.2\.=/);
    expect(customerKey(2, '😀')).toBe('c.2.=8J-YgA');
  });

  it('never confuses a plain id with an encoded one', () => {
    // '=' is not allowed in plain ids, so an id that looks like an encoded token is itself encoded.
    const lookalike = '=Sm9zw6k';
    expect(customerIdViolation(lookalike)).toBeUndefined();
    expect(customerKey(1, lookalike)).not.toBe(customerKey(1, 'José'));
    expect(customerIdFromKey(customerKey(1, lookalike))).toBe(lookalike);
    expect(customerIdFromKey(customerKey(1, 'José'))).toBe('José');
  });

  it('PROPERTY: customerIdFromKey(customerKey(p, id)) === id for every valid id', () => {
    fc.assert(
      fc.property(partition, validCustomerId, (p, id) => {
        expect(customerIdFromKey(customerKey(p, id))).toBe(id);
      }),
      { numRuns: 400 },
    );
  });

  it('PROPERTY: keys are valid NATS KV keys and live under the partition filter', () => {
    fc.assert(
      fc.property(partition, validCustomerId, (p, id) => {
        const key = customerKey(p, id);
        expect(key).toMatch(NATS_KV_KEY);
        expect(key.startsWith('.')).toBe(false);
        expect(key.endsWith('.')).toBe(false);
        expect(key).not.toContain('..');
        expect(isValidKvKey(key)).toBe(true);
        // `c.<p>.>` matches exactly three-token keys starting with c.<p>.
        expect(key.startsWith(customerKeyFilter(p).slice(0, -1))).toBe(true);
        expect(key.split('.')).toHaveLength(3);
      }),
      { numRuns: 400 },
    );
  });

  it('PROPERTY: plain ids are stored as they are, everything else encoded', () => {
    fc.assert(
      fc.property(partition, validCustomerId, (p, id) => {
        const token = customerKey(p, id).slice(`c.${p}.`.length);
        if (/^[A-Za-z0-9_-]+$/.test(id)) expect(token).toBe(id);
        else expect(token).toMatch(/^=[A-Za-z0-9_-]+$/);
      }),
      { numRuns: 200 },
    );
  });

  it('PROPERTY: distinct ids (or partitions) give distinct keys', () => {
    fc.assert(
      fc.property(partition, validCustomerId, partition, validCustomerId, (p1, a, p2, b) => {
        fc.pre(p1 !== p2 || a !== b);
        expect(customerKey(p1, a)).not.toBe(customerKey(p2, b));
      }),
      { numRuns: 300 },
    );
  });

  it('rejects ids with lone UTF-16 surrogates, which would collide once encoded', () => {
    // UTF-8 encoding would replace them with U+FFFD, so two ids could share one key.
    expect(customerIdViolation('a\ud800')?.name).toBe('well-formed-unicode');
    expect(customerIdViolation('a\udbff')?.name).toBe('well-formed-unicode');
  });
});

describe('customerIdFromKey', () => {
  it.each([
    ['a watermark key', 'wm.3'],
    ['no id token', 'c.1.'],
    ['non-numeric partition', 'c.x.john'],
    ['missing partition', 'c..john'],
    ['another prefix', 'd.1.john'],
    ['just c', 'c'],
    ['empty', ''],
  ])('returns undefined for %s (%j)', (_name, key) => {
    expect(customerIdFromKey(key)).toBeUndefined();
  });

  it('reads plain and encoded keys', () => {
    expect(customerIdFromKey('c.7.john')).toBe('john');
    expect(customerIdFromKey('c.7.=Sm9zw6k')).toBe('José');
  });
});

describe('other keys', () => {
  it('builds the per-partition filter and watermark keys', () => {
    expect(customerKeyFilter(5)).toBe('c.5.>');
    expect(watermarkKey(5)).toBe('wm.5');
    expect(isValidKvKey(watermarkKey(0))).toBe(true);
    expect(customerIdFromKey(watermarkKey(5))).toBeUndefined();
  });

  it('customer keys of one partition do not fall under another partition’s filter', () => {
    expect(customerKey(1, 'john').startsWith('c.1.')).toBe(true);
    expect(customerKey(11, 'john').startsWith('c.1.')).toBe(false);
  });
});
