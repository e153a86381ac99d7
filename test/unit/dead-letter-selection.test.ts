import { describe, expect, it } from 'vitest';
import { resourceNames } from '../../src/contract/names.js';
import { isOrderFleetError } from '../../src/errors.js';
import {
  customerOfSubject,
  describeBody,
  EVERYTHING,
  groupByReason,
  matches,
  parseSeqRange,
  type DeadLetter,
} from '../../src/recovery/dead-letter-selection.js';

const names = resourceNames();

function letter(seq: number, reason: string, customerId?: string): DeadLetter {
  return {
    seq,
    timeMs: seq * 1000,
    subject: 'dlq.orders.0',
    reason,
    detail: '',
    rule: undefined,
    sourceStream: 'ORDERS',
    sourceSubject: customerId === undefined ? 'orders.0' : `orders.0.${customerId}`,
    sourceSeq: seq,
    sourceMsgId: undefined,
    customerId,
    headers: {},
    data: new Uint8Array(),
  };
}

describe('dead-letter selection', () => {
  it('parses sequence ranges', () => {
    expect(parseSeqRange('7')).toEqual({ fromSeq: 7, toSeq: 7 });
    expect(parseSeqRange('3-9')).toEqual({ fromSeq: 3, toSeq: 9 });
    expect(parseSeqRange('3-')).toEqual({ fromSeq: 3 });
    expect(parseSeqRange('-9')).toEqual({ toSeq: 9 });
    for (const bad of ['', '-', '9-3', 'a', '1-2-3']) {
      let caught: unknown;
      try {
        parseSeqRange(bad);
      } catch (err) {
        caught = err;
      }
      expect(isOrderFleetError(caught, 'INVALID_SELECTION')).toBe(true);
    }
  });

  it('matches every given criterion', () => {
    const l = letter(5, 'TOO_MANY_ITEMS', 'ann');
    expect(matches(l, EVERYTHING)).toBe(true);
    expect(matches(l, { ...EVERYTHING, reasons: ['TOO_MANY_ITEMS'], customers: ['ann'] })).toBe(
      true,
    );
    expect(matches(l, { ...EVERYTHING, reasons: ['MALFORMED_JSON'] })).toBe(false);
    expect(matches(l, { ...EVERYTHING, fromSeq: 6 })).toBe(false);
    expect(matches(l, { ...EVERYTHING, toSeq: 4 })).toBe(false);
    expect(matches(letter(5, 'X'), { ...EVERYTHING, customers: ['ann'] })).toBe(false);
  });

  it('groups by reason with counts, first and last seen', () => {
    const groups = groupByReason(
      [letter(1, 'A', 'x'), letter(2, 'B'), letter(3, 'A', 'y'), letter(4, 'A', 'x')],
      new Set([3]),
    );
    expect(groups.map((g) => [g.reason, g.count, g.redriven, g.firstSeq, g.lastSeq])).toEqual([
      ['A', 3, 1, 1, 4],
      ['B', 1, 0, 2, 2],
    ]);
    expect(groups[0]?.customers).toEqual(['x', 'y']);
    expect(groups[0]?.firstSeen).toBe(new Date(1000).toISOString());
  });

  it('reads the customer from source subjects', () => {
    expect(customerOfSubject(names, 'orders.3.ann')).toBe('ann');
    expect(customerOfSubject(names, 'orders.3.ann.timer')).toBe('ann');
    expect(customerOfSubject(names, 'notifications.ann')).toBe('ann');
    expect(customerOfSubject(names, 'orders.3')).toBeUndefined();
    expect(customerOfSubject(names, 'other.ann')).toBeUndefined();
  });

  it('shows UTF-8 bodies as text and others as hex', () => {
    expect(describeBody(new TextEncoder().encode('{"a":1}'))).toEqual({
      encoding: 'utf8',
      text: '{"a":1}',
    });
    expect(describeBody(Uint8Array.from([0xff, 0x00]))).toEqual({ encoding: 'hex', text: 'ff00' });
  });
});
