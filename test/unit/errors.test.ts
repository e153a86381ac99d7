import { JetStreamApiError } from '@nats-io/jetstream';
import { jserrors } from '@nats-io/jetstream/internal';
import {
  ClosedConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { isNoSuitablePeers } from '../../src/nats/errors.js';
import {
  ConfigError,
  describeError,
  ErrorCode,
  isOrderFleetError,
  isRetriable,
  isTerminal,
  isValidationError,
  OrderFleetError,
  ValidationError,
} from '../../src/errors.js';

describe('ErrorCode', () => {
  it('has unique, SCREAMING_SNAKE codes equal to their documented strings', () => {
    const codes = Object.values(ErrorCode);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(code).toMatch(/^[A-Z]+(_[A-Z]+)*$/);
    expect(ErrorCode.ConfigInvalid).toBe('CONFIG_INVALID');
    expect(ErrorCode.InvalidCustomerId).toBe('INVALID_CUSTOMER_ID');
    expect(ErrorCode.StateCorrupt).toBe('STATE_CORRUPT');
    expect(ErrorCode.WrongPartition).toBe('WRONG_PARTITION');
  });
});

describe('OrderFleetError', () => {
  it('carries code, message, name and empty details by default', () => {
    const err = new OrderFleetError(ErrorCode.Fenced, 'lost partition 3');
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('FENCED');
    expect(err.message).toBe('lost partition 3');
    expect(err.name).toBe('OrderFleetError');
    expect(err.details).toEqual({});
    expect(err.stack).toContain('lost partition 3');
  });

  it('preserves the cause, including non-Error causes', () => {
    const root = new Error('socket closed');
    const err = new OrderFleetError(ErrorCode.PublishFailed, 'gave up', { cause: root });
    expect(err.cause).toBe(root);
    const odd = new OrderFleetError(ErrorCode.QueryFailed, 'no reply', { cause: 'timeout' });
    expect(odd.cause).toBe('timeout');
    const falsy = new OrderFleetError(ErrorCode.QueryFailed, 'no reply', { cause: 0 });
    expect(falsy.cause).toBe(0);
  });

  it('sets no cause property when none is given', () => {
    const err = new OrderFleetError(ErrorCode.Fenced, 'x');
    expect('cause' in err).toBe(false);
    expect(err.cause).toBeUndefined();
  });

  it('keeps the details it was given', () => {
    const err = new OrderFleetError(ErrorCode.WriteConflict, 'lost CAS', {
      details: { key: 'c.1.john', revision: 7 },
    });
    expect(err.details).toEqual({ key: 'c.1.john', revision: 7 });
  });
});

describe('ConfigError and ValidationError', () => {
  it('ConfigError is CONFIG_INVALID and names its variable', () => {
    const cause = new Error('zod');
    const err = new ConfigError('PARTITIONS: too big', 'PARTITIONS', {
      cause,
      details: { variables: ['PARTITIONS'] },
    });
    expect(err).toBeInstanceOf(OrderFleetError);
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe(ErrorCode.ConfigInvalid);
    expect(err.name).toBe('ConfigError');
    expect(err.variable).toBe('PARTITIONS');
    expect(err.cause).toBe(cause);
    expect(err.details).toEqual({ variables: ['PARTITIONS'] });
  });

  it('ValidationError keeps code, rule and cause', () => {
    const cause = new SyntaxError('bad json');
    const err = new ValidationError(ErrorCode.MalformedJson, 'payload is not JSON', 'json', {
      cause,
    });
    expect(err).toBeInstanceOf(OrderFleetError);
    expect(err.code).toBe(ErrorCode.MalformedJson);
    expect(err.name).toBe('ValidationError');
    expect(err.rule).toBe('json');
    expect(err.cause).toBe(cause);
  });
});

describe('isOrderFleetError / isValidationError', () => {
  const fenced = new OrderFleetError(ErrorCode.Fenced, 'x');
  const config = new ConfigError('bad', 'LOG_LEVEL');
  const validation = new ValidationError(ErrorCode.InvalidSubject, 'bad', 'shape');

  it('recognises our errors, with or without a code', () => {
    expect(isOrderFleetError(fenced)).toBe(true);
    expect(isOrderFleetError(fenced, ErrorCode.Fenced)).toBe(true);
    expect(isOrderFleetError(fenced, ErrorCode.WriteConflict)).toBe(false);
    expect(isOrderFleetError(config, ErrorCode.ConfigInvalid)).toBe(true);
    expect(isOrderFleetError(validation, ErrorCode.InvalidSubject)).toBe(true);
    expect(isOrderFleetError(validation, ErrorCode.InvalidEvent)).toBe(false);
  });

  it('rejects look-alikes and non-errors', () => {
    const lookalike = Object.assign(new Error('x'), { code: 'FENCED' });
    expect(isOrderFleetError(lookalike)).toBe(false);
    expect(isOrderFleetError(lookalike, ErrorCode.Fenced)).toBe(false);
    expect(isOrderFleetError({ code: 'FENCED', message: 'x' }, ErrorCode.Fenced)).toBe(false);
    for (const value of [undefined, null, 'FENCED', 42])
      expect(isOrderFleetError(value)).toBe(false);
  });

  it('isValidationError only matches ValidationError', () => {
    expect(isValidationError(validation)).toBe(true);
    expect(isValidationError(fenced)).toBe(false);
    expect(isValidationError(config)).toBe(false);
    expect(isValidationError(new Error('x'))).toBe(false);
  });

  it('narrows the type so the code can be read', () => {
    const caught: unknown = validation;
    if (!isOrderFleetError(caught)) throw new Error('expected an OrderFleetError');
    expect(caught.code).toBe(ErrorCode.InvalidSubject);
  });
});

describe('describeError', () => {
  it('formats errors as "name: message" and anything else as a string', () => {
    expect(describeError(new TypeError('boom'))).toBe('TypeError: boom');
    expect(describeError(new ConfigError('bad', 'X'))).toBe('ConfigError: bad');
    expect(describeError('plain')).toBe('plain');
    expect(describeError(42)).toBe('42');
    expect(describeError(undefined)).toBe('undefined');
  });
});

describe('retriable', () => {
  it('follows the code by default and can be overridden', () => {
    expect(new OrderFleetError(ErrorCode.Fenced, 'x').retriable).toBe(true);
    expect(new OrderFleetError(ErrorCode.WriteConflict, 'x').retriable).toBe(true);
    expect(new OrderFleetError(ErrorCode.StateCorrupt, 'x').retriable).toBe(false);
    expect(new OrderFleetError(ErrorCode.InvalidEvent, 'x').retriable).toBe(false);
    expect(new OrderFleetError(ErrorCode.StateCorrupt, 'x', { retriable: true }).retriable).toBe(
      true,
    );
  });

  it('isRetriable classifies NATS client errors by class and code, never by message', () => {
    expect(isRetriable(new TimeoutError())).toBe(true);
    expect(isRetriable(new NoRespondersError('$JS.API.INFO'))).toBe(true);
    expect(isRetriable(new RequestError('connection disconnected'))).toBe(true);
    expect(isRetriable(new jserrors.JetStreamNotEnabled('jetstream is not enabled'))).toBe(true);
    const unavailable = new JetStreamApiError({
      code: 503,
      err_code: 10008,
      description: 'JetStream system temporarily unavailable',
    });
    expect(isRetriable(unavailable)).toBe(true);
    const notLeader = new JetStreamApiError({ code: 500, err_code: 10009, description: 'x' });
    expect(isRetriable(notLeader)).toBe(true);
    const wrongSeq = new JetStreamApiError({ code: 400, err_code: 10071, description: 'x' });
    expect(isRetriable(wrongSeq)).toBe(false);
    // Our own closed or draining connection means we are shutting down: not transient.
    expect(isRetriable(new ClosedConnectionError())).toBe(false);
    expect(isRetriable(new DrainingConnectionError())).toBe(false);
    // A cause chain is followed.
    expect(isRetriable(new Error('wrapped', { cause: new TimeoutError() }))).toBe(true);
    expect(isRetriable(new TypeError('a bug'))).toBe(false);
  });

  it('"no suitable peers" is its own predicate and not retriable by default (only setup waits it out)', () => {
    const noPeers = new JetStreamApiError({
      code: 400,
      err_code: 10005,
      description: 'no suitable peers for placement',
    });
    expect(isNoSuitablePeers(noPeers)).toBe(true);
    expect(isNoSuitablePeers(new Error('wrapped', { cause: noPeers }))).toBe(true);
    expect(isRetriable(noPeers)).toBe(false);
    const wrongSeq = new JetStreamApiError({ code: 400, err_code: 10071, description: 'x' });
    expect(isNoSuitablePeers(wrongSeq)).toBe(false);
    expect(isNoSuitablePeers(new TimeoutError())).toBe(false);
  });

  it('isTerminal is true only for our non-retriable codes', () => {
    expect(isTerminal(new OrderFleetError(ErrorCode.StateCorrupt, 'x'))).toBe(true);
    expect(isTerminal(new OrderFleetError(ErrorCode.Fenced, 'x'))).toBe(false);
    expect(isTerminal(new TypeError('unknown'))).toBe(false);
    expect(isTerminal(new TimeoutError())).toBe(false);
  });
});
