// A duplicate answered with sequence 0 (its first publish still being replicated) is not an ack
// whose sequence can be used: it is a retriable error, so the caller asks again with the same id.

import { describe, expect, it } from 'vitest';
import { ErrorCode, isRetriable, OrderFleetError } from '../../src/errors.js';
import { sequenced } from '../../src/nats/pub-ack.js';

describe('sequenced', () => {
  it('passes an ack with a sequence through', () => {
    const ack = { stream: 'ORDERS', seq: 7, duplicate: true, domain: '' };
    expect(sequenced(ack, 'event e1')).toBe(ack);
  });

  it('refuses sequence 0 with a retriable PUBLISH_UNSEQUENCED', () => {
    let caught: unknown;
    try {
      sequenced({ stream: 'ORDERS', seq: 0, duplicate: true, domain: '' }, 'event e1');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(OrderFleetError);
    expect(caught).toMatchObject({ code: ErrorCode.PublishUnsequenced });
    expect(isRetriable(caught)).toBe(true);
  });
});
