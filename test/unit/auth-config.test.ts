import { Writable } from 'node:stream';
import { createUser } from '@nats-io/nkeys';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/logging/logger.js';
import { thrownBy } from './helpers.js';

const seed = (): string => new TextDecoder().decode(createUser().getSeed());

describe('credentials settings', () => {
  it('takes an NKey seed, inline or as a file, and an inbox prefix', () => {
    const s = seed();
    const { nats } = loadConfig({ NATS_NKEY_SEED: s, NATS_INBOX_PREFIX: '_INBOX.worker' });
    expect(nats).toMatchObject({ nkeySeed: s, inboxPrefix: '_INBOX.worker' });
    expect(loadConfig({ NATS_NKEY_SEED_FILE: '/run/seed' }).nats.nkeySeedFile).toBe('/run/seed');
  });

  it('refuses a malformed seed without repeating it', () => {
    const bad = `SU${'x'.repeat(56)}`;
    const err = thrownBy(() => loadConfig({ NATS_NKEY_SEED: bad }), ConfigError);
    expect(err.variable).toBe('NATS_NKEY_SEED');
    expect(err.message).not.toContain(bad);
  });

  it.each(['_INBOX.*', '_INBOX.>', 'a..b', '.a', 'a b', ''])(
    'refuses inbox prefix %j',
    (prefix) => {
      if (prefix === '') {
        expect(loadConfig({ NATS_INBOX_PREFIX: prefix }).nats.inboxPrefix).toBeUndefined();
        return;
      }
      expect(thrownBy(() => loadConfig({ NATS_INBOX_PREFIX: prefix }), ConfigError).variable).toBe(
        'NATS_INBOX_PREFIX',
      );
    },
  );

  it('takes one or two webhook secrets, and refuses anything else without repeating it', () => {
    const a = `whsec_${Buffer.alloc(24, 1).toString('base64')}`;
    const b = `whsec_${Buffer.alloc(32, 2).toString('base64')}`;
    expect(loadConfig({ NOTIFIER_WEBHOOK_SECRET: a }).notifier.webhookSecrets).toEqual([a]);
    expect(loadConfig({ NOTIFIER_WEBHOOK_SECRET: ` ${a}  ${b} ` }).notifier.webhookSecrets).toEqual(
      [a, b],
    );
    expect(loadConfig({}).notifier.webhookSecrets).toEqual([]);
    const err = thrownBy(
      () => loadConfig({ NOTIFIER_WEBHOOK_SECRET: 'hunter2hunter2' }),
      ConfigError,
    );
    expect(err.message).not.toContain('hunter2');
  });

  it('the logger redacts seeds and webhook secrets wherever they are logged', () => {
    let out = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        out += chunk.toString();
        done();
      },
    });
    const log = createLogger('info', sink);
    const s = seed();
    const config = loadConfig({
      NATS_NKEY_SEED: s,
      NOTIFIER_WEBHOOK_SECRET: `whsec_${'A'.repeat(32)}`,
    });
    log.info({ config }, 'config');
    log.info({ nats: config.nats }, 'nats');
    log.info({ nkeySeed: s, webhookSecrets: ['x'] }, 'flat');
    expect(out).toContain('[redacted]');
    expect(out).not.toContain(s);
    expect(out).not.toContain('A'.repeat(32));
  });
});
