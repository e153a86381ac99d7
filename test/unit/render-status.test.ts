// The status table: a partition whose consumer cannot be read shows `?` for its counts and the
// reason below the table, and every other partition is reported as usual.

import { describe, expect, it } from 'vitest';
import { renderStatus, type FleetStatus } from '../../src/admin/status.js';

const status: FleetStatus = {
  partitions: 2,
  timerLayout: 'index',
  members: [
    {
      id: 'w1',
      since: '2026-12-02T00:00:00.000Z',
      timerLayouts: ['index', 'state'],
      partitions: [0, 1],
      restarts: 0,
    },
  ],
  table: [
    {
      partition: 0,
      owner: 'w1',
      state: 'owned',
      watermark: 40,
      epoch: 3,
      pending: 0,
      unacked: 2,
      lag: 2,
    },
    {
      partition: 1,
      owner: 'w1',
      state: 'owned',
      watermark: 17,
      epoch: 5,
      pending: null,
      unacked: null,
      lag: null,
      consumerError: 'JetStreamApiError: JetStream system temporarily unavailable',
    },
  ],
  parked: [],
  quarantined: [],
  quarantinedCount: 0,
};

describe('renderStatus', () => {
  it('says whether the timer layout can be switched', () => {
    expect(renderStatus(status)).toContain('TIMER LAYOUT index (every member supports state');
    const old = { ...status, members: [{ ...status.members[0]!, timerLayouts: [] }] };
    expect(renderStatus(old)).toContain('TIMER LAYOUT index (1 member(s) support index only)');
    expect(renderStatus({ ...status, timerLayout: 'state' })).toMatch(/TIMER LAYOUT state\n/u);
  });

  it('shows an unreadable consumer as ? with its reason, the other partitions as usual', () => {
    const text = renderStatus(status);
    const rows = text.split('\n');
    expect(
      rows
        .find((l) => /^\s+0 w1/.test(l))
        ?.trim()
        .split(/\s+/),
    ).toEqual(['0', 'w1', 'owned', '40', '3', '0', '2', '2']);
    expect(
      rows
        .find((l) => /^\s+1 w1/.test(l))
        ?.trim()
        .split(/\s+/),
    ).toEqual(['1', 'w1', 'owned', '17', '5', '?', '?', '?']);
    expect(text).toContain('CONSUMERS NOT READABLE (1; counts shown as ?)');
    expect(text).toContain('   1 JetStreamApiError: JetStream system temporarily unavailable');
  });
});
