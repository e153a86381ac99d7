// The role permissions as data: what each role sends (traced from nats.js v3 against a
// permissive server) is allowed, and what it must never do is not, with NATS' own matching rules
// (`*` one token, `>` the rest, deny wins over allow). The same rules run on a real server in
// test/integration/roles.test.ts.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inboxPrefix, rolePermissions, ROLES, type Role } from '../../src/auth/roles.js';
import { fleetAccount, renderServerConfig } from '../../src/auth/server-config.js';
import { resourceNames, type ResourceNames } from '../../src/contract/names.js';

/** NATS subject matching: `*` matches one token, `>` one or more trailing tokens. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

function canPublish(role: Role, names: ResourceNames, subject: string): boolean {
  const { publish } = rolePermissions(role, names);
  return (
    publish.allow.some((a) => matches(a, subject)) && !publish.deny.some((d) => matches(d, subject))
  );
}

function canSubscribe(role: Role, names: ResourceNames, subject: string): boolean {
  const { subscribe } = rolePermissions(role, names);
  return (
    subscribe.allow.some((a) => matches(a, subject)) &&
    !subscribe.deny.some((d) => matches(d, subject))
  );
}

/** What each command sent, traced on nats-server 2.9.10 (customer ids and nuids filled in). */
function traced(n: ResourceNames): Record<Role, string[]> {
  const kv = (b: string): string => `KV_${b}`;
  return {
    publisher: [
      `$JS.API.STREAM.INFO.${kv(n.metaBucket)}`,
      `$JS.API.DIRECT.GET.${kv(n.metaBucket)}.$KV.${n.metaBucket}.deployment`,
      `${n.ordersPrefix}.0.John`,
      `${n.ordersPrefix}.31.Mary`,
    ],
    worker: [
      `$JS.ACK.${n.ordersStream}.partition-0.1.5.5.1733000000000000000.0`,
      `$JS.ACK._.ABCDEF.${n.ordersStream}.partition-0.1.5.5.1733000000000000000.0.tok`,
      `$JS.API.CONSUMER.CREATE.${kv(n.leaseBucket)}.oc_2NR2QvQAG7b7A4HHn88sUH_1.$KV.${n.leaseBucket}.p.>`,
      `$JS.API.CONSUMER.CREATE.${kv(n.memberBucket)}.oc_2NR2QvQAG7b7A4HHn88sgH_1.$KV.${n.memberBucket}.m.>`,
      `$JS.API.CONSUMER.CREATE.${kv(n.stateBucket)}.oc_2NR2QvQAG7b7A4HHn88soH_1.$KV.${n.stateBucket}.t.2.>`,
      `$JS.API.CONSUMER.CREATE.${n.ordersStream}.partition-3.${n.ordersPrefix}.3.>`,
      `$JS.API.CONSUMER.DELETE.${n.ordersStream}.partition-3`,
      `$JS.API.CONSUMER.INFO.${n.ordersStream}.partition-3`,
      `$JS.API.CONSUMER.MSG.NEXT.${n.ordersStream}.partition-3`,
      `$JS.API.INFO`,
      `$JS.API.STREAM.INFO.${kv(n.leaseBucket)}`,
      `$JS.API.STREAM.INFO.${kv(n.memberBucket)}`,
      `$JS.API.STREAM.MSG.GET.${kv(n.leaseBucket)}`,
      `$JS.API.STREAM.MSG.GET.${kv(n.metaBucket)}`,
      `$JS.API.STREAM.MSG.GET.${kv(n.stateBucket)}`,
      `$JS.API.STREAM.MSG.GET.${n.notificationsStream}`,
      `$JS.API.STREAM.MSG.GET.${n.ordersStream}`,
      `$JS.FC.${kv(n.leaseBucket)}.x.y`,
      `$KV.${n.leaseBucket}.p.0`,
      `$KV.${n.memberBucket}.m.w1`,
      `$KV.${n.metaBucket}.wm.0`,
      `$KV.${n.stateBucket}.c.0.John`,
      `$KV.${n.stateBucket}.t.0.John`,
      `${n.notificationsPrefix}.John`,
      `${n.ordersPrefix}.0.John.timer`,
      `${n.deadLetterPrefix}.3`,
    ],
    notifier: [
      `$JS.ACK.${n.notificationsStream}.notifier.1.5.5.1733000000000000000.0`,
      `$JS.API.CONSUMER.CREATE.${n.notificationsStream}.notifier.${n.notificationsPrefix}.>`,
      `$JS.API.CONSUMER.INFO.${n.notificationsStream}.notifier`,
      `$JS.API.CONSUMER.MSG.NEXT.${n.notificationsStream}.notifier`,
      `$JS.API.INFO`,
      n.deadLetterNotifications,
    ],
    observer: [
      `$JS.API.DIRECT.GET.${kv(n.metaBucket)}.$KV.${n.metaBucket}.deployment`,
      `$JS.API.STREAM.MSG.GET.${kv(n.stateBucket)}`,
      `$JS.API.STREAM.MSG.GET.${kv(n.leaseBucket)}`,
      `$JS.API.STREAM.MSG.GET.${kv(n.memberBucket)}`,
      `$JS.API.STREAM.MSG.GET.${kv(n.metaBucket)}`,
      `$JS.API.STREAM.INFO.${kv(n.memberBucket)}`,
      `$JS.API.STREAM.INFO.${n.ordersStream}`,
      `$JS.API.CONSUMER.INFO.${n.ordersStream}.partition-0`,
      `$JS.API.INFO`,
      `${n.queryPrefix}.0`,
    ],
    admin: [
      `$JS.API.INFO`,
      ...[
        n.ordersStream,
        n.deadLetterStream,
        n.notificationsStream,
        ...[n.stateBucket, n.metaBucket, n.leaseBucket, n.memberBucket].map(kv),
      ].flatMap((s) => [
        `$JS.API.STREAM.CREATE.${s}`,
        `$JS.API.STREAM.INFO.${s}`,
        `$JS.API.STREAM.UPDATE.${s}`,
      ]),
      `$JS.API.STREAM.MSG.GET.${kv(n.metaBucket)}`,
      `$KV.${n.metaBucket}.deployment`,
    ],
  };
}

const namespaces = ['', 'blue'];

describe.each(namespaces)('role permissions (namespace %j)', (ns) => {
  const n = resourceNames(ns);

  it.each(ROLES)('%s may send everything its commands send', (role) => {
    const refused = traced(n)[role].filter((s) => !canPublish(role, n, s));
    expect(refused).toEqual([]);
    expect(canSubscribe(role, n, `${inboxPrefix(role, n)}.abc.1`)).toBe(true);
  });

  it('a publisher publishes events and nothing the fleet writes', () => {
    for (const s of [
      `${n.ordersPrefix}.0.John.timer`,
      `${n.ordersPrefix}.0.John.x.y`,
      `${n.deadLetterPrefix}.0`,
      `${n.notificationsPrefix}.John`,
      `${n.queryPrefix}.0`,
      `$KV.${n.stateBucket}.c.0.John`,
      `$KV.${n.metaBucket}.wm.0`,
      `$KV.${n.metaBucket}.deployment`,
      `$KV.${n.leaseBucket}.p.0`,
      `$KV.${n.memberBucket}.m.x`,
      `$JS.API.STREAM.MSG.GET.${`KV_${n.metaBucket}`}`,
      `$JS.API.DIRECT.GET.KV_${n.metaBucket}.$KV.${n.metaBucket}.wm.0`,
      `$JS.API.DIRECT.GET.KV_${n.metaBucket}`,
      `$JS.API.CONSUMER.CREATE.${n.notificationsStream}`,
      `$JS.API.STREAM.PURGE.${n.ordersStream}`,
      `$JS.API.STREAM.DELETE.${n.ordersStream}`,
      `$JS.API.STREAM.UPDATE.${n.ordersStream}`,
    ])
      expect(canPublish('publisher', n, s), s).toBe(false);
    for (const s of [
      `${n.ordersPrefix}.>`,
      `${n.notificationsPrefix}.>`,
      '_INBOX.>',
      `${inboxPrefix('worker', n)}.x`,
    ])
      expect(canSubscribe('publisher', n, s), s).toBe(false);
  });

  it('nobody but admin administers streams; admin never deletes or purges', () => {
    for (const role of ROLES) {
      for (const verb of ['CREATE', 'UPDATE', 'DELETE', 'PURGE']) {
        const s = `$JS.API.STREAM.${verb}.${n.ordersStream}`;
        expect(canPublish(role, n, s), `${role} ${s}`).toBe(
          role === 'admin' && (verb === 'CREATE' || verb === 'UPDATE'),
        );
      }
      expect(canPublish(role, n, `$JS.API.STREAM.MSG.DELETE.${n.ordersStream}`)).toBe(false);
    }
  });

  it('only the worker writes fleet state, and nobody but admin the deployment record', () => {
    for (const role of ROLES) {
      expect(canPublish(role, n, `$KV.${n.stateBucket}.c.0.John`), role).toBe(role === 'worker');
      expect(canPublish(role, n, `$KV.${n.leaseBucket}.p.0`), role).toBe(role === 'worker');
      expect(canPublish(role, n, `$KV.${n.metaBucket}.deployment`), role).toBe(role === 'admin');
      expect(canPublish(role, n, `${n.ordersPrefix}.0.John`), role).toBe(role === 'publisher');
      expect(canPublish(role, n, `${n.ordersPrefix}.0.John.timer`), role).toBe(role === 'worker');
    }
  });

  it("PROPERTY: no role can subscribe to another role's inbox or any data subject", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ROLES),
        fc.constantFrom(...ROLES),
        fc.stringMatching(/^[A-Za-z0-9]{1,12}$/u),
        (a, b, token) => {
          if (a !== b) expect(canSubscribe(a, n, `${inboxPrefix(b, n)}.${token}`)).toBe(false);
          for (const data of [
            `${n.ordersPrefix}.0.${token}`,
            `${n.notificationsPrefix}.${token}`,
            `$KV.${n.stateBucket}.c.0.${token}`,
          ])
            expect(canSubscribe(a, n, data)).toBe(false);
        },
      ),
    );
  });
});

it('namespaced fleets do not reach each other', () => {
  const blue = resourceNames('blue');
  const green = resourceNames('green');
  for (const role of ROLES) {
    // `$JS.API.INFO` is the account's (limits and usage), the same for every fleet in it.
    for (const s of traced(green)[role].filter((x) => x !== '$JS.API.INFO'))
      expect(canPublish(role, blue, s), `${role} ${s}`).toBe(false);
  }
});

describe('nats-auth.conf', () => {
  const names = resourceNames('');
  const keys = Object.fromEntries(ROLES.map((r, i) => [r, `U${String(i).repeat(55)}`])) as Record<
    Role,
    string
  >;
  const conf = renderServerConfig({ names, publicKeys: keys, generatedAt: '2026-12-01T00:00:00Z' });

  it('has the fleet account with JetStream, a system account, and a user with permissions per role', () => {
    const accounts = JSON.parse(
      conf.slice(conf.indexOf('accounts: ') + 10, conf.indexOf('\n\nsystem_account')),
    ) as Record<string, { jetstream?: string; users?: { nkey: string; permissions?: unknown }[] }>;
    expect(Object.keys(accounts).sort()).toEqual([fleetAccount(names), 'SYS'].sort());
    const fleet = accounts[fleetAccount(names)];
    expect(fleet?.jetstream).toBe('enabled');
    expect(fleet?.users?.map((u) => u.nkey).sort()).toEqual(Object.values(keys).sort());
    expect(fleet?.users?.every((u) => u.permissions !== undefined)).toBe(true);
    expect(conf).toContain('system_account: "SYS"');
    expect(conf).not.toContain('tls:');
  });

  it('writes a TLS block that verifies client certificates', () => {
    const withTls = renderServerConfig({
      names,
      publicKeys: keys,
      generatedAt: 'x',
      tls: { cert: '/c', key: '/k', ca: '/ca' },
    });
    expect(withTls).toMatch(/"verify": true/u);
    expect(withTls).toContain('"ca_file": "/ca"');
  });
});
