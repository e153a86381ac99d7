import { describe, expect, it } from 'vitest';
import { StoredCustomers } from '../../src/fleet/stored-customers.js';

const make = (limit = 100, scanAfterMisses = 3): StoredCustomers =>
  new StoredCustomers({ scanAfterMisses, limit: () => limit });

describe('StoredCustomers', () => {
  it('knows nothing absent until the scan has answered', () => {
    const s = make();
    expect(s.absent('new')).toBe(false);
    s.scanned(new Set(['a']));
    expect(s.absent('new')).toBe(true);
    expect(s.absent('a')).toBe(false);
  });

  it('keeps customers loaded before and after the scan (the set is their union)', () => {
    const s = make();
    s.loaded(['early'], 1);
    s.scanned(new Set(['stored']));
    s.loaded(['late'], 1);
    expect(['early', 'stored', 'late'].map((id) => s.absent(id))).toEqual([false, false, false]);
    expect(s.absent('other')).toBe(true);
  });

  it('asks for a scan once enough reads found nothing, and not after it answered', () => {
    const s = make(100, 3);
    expect(s.loaded(['a', 'b'], 2)).toBe(false);
    expect(s.loaded(['c'], 1)).toBe(true);
    s.scanned(new Set());
    expect(s.loaded(['d', 'e', 'f'], 3)).toBe(false);
  });

  it('gives up above the limit, and after a scan that could not answer', () => {
    const over = make(2);
    over.scanned(new Set(['a']));
    over.loaded(['b', 'c'], 0);
    expect(over.tracking).toBe(false);
    expect(over.absent('new')).toBe(false);

    const failed = make();
    failed.scanned(undefined);
    expect(failed.tracking).toBe(false);
    failed.scanned(new Set());
    expect(failed.absent('new')).toBe(false);
  });
});
