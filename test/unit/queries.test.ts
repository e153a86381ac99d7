// An owner's answer is current only once its runner has caught up: during a replay after a crash
// it is marked stale, so `contents` never passes a half-replayed state off as current.

import { describe, expect, it } from 'vitest';
import { answerQuery } from '../../src/fleet/queries.js';

describe('answerQuery', () => {
  const answer = { customerId: 'John', items: [1, 2], lastSeq: 4 };

  it('is current from an owner that has caught up', () => {
    expect(answerQuery(answer, 'w1', 3, true)).toEqual({
      ...answer,
      stale: false,
      partition: 3,
      owner: 'w1',
    });
  });

  it('is stale from an owner still replaying its backlog', () => {
    expect(answerQuery(answer, 'w1', 3, false)).toMatchObject({ stale: true, owner: 'w1' });
  });
});
