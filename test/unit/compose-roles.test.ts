// docker-compose.roles.yml: on top of docker-compose.yml, every order-fleet service connects as
// its own least-privilege role (src/auth/roles.ts) and every NATS node serves the accounts and
// users `order-fleet auth init` wrote into ./auth. Static checks of the files (the compose stack
// itself runs in the containers stage).

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ROLES, type Role } from '../../src/auth/roles.js';
import { REPO_ROOT } from '../support/fleet.js';

interface Service {
  image?: string;
  command?: string[];
  profiles?: string[];
  volumes?: string[];
  env_file?: string[];
  environment?: Record<string, string>;
}
interface ComposeFile {
  services: Record<string, Service>;
}

const load = (file: string): ComposeFile =>
  parse(readFileSync(path.join(REPO_ROOT, file), 'utf8'), { merge: true }) as ComposeFile;
const base = load('docker-compose.yml');
const roles = load('docker-compose.roles.yml');

/** The role each order-fleet service runs as (what its command needs, and nothing more). */
const ROLE_OF: Readonly<Record<string, Role>> = {
  setup: 'admin',
  worker: 'worker',
  notifier: 'notifier',
  cli: 'observer',
  publisher: 'publisher',
};
const isFleet = (s: Service): boolean => (s.image ?? '').includes('ORDER_FLEET_IMAGE');
const isNats = (s: Service): boolean => (s.image ?? '').includes('NATS_IMAGE');

describe('docker-compose.roles.yml', () => {
  it('gives every order-fleet service exactly its own role, and only overrides known services', () => {
    const fleet = [
      ...Object.entries(base.services).filter(([, s]) => isFleet(s)),
      ...Object.entries(roles.services).filter(([name]) => base.services[name] === undefined),
    ];
    expect(fleet.map(([name]) => name).sort()).toEqual(Object.keys(ROLE_OF).sort());
    for (const [name] of fleet) {
      const role = ROLE_OF[name];
      if (role === undefined) throw new Error(`${name}: no role`);
      expect(ROLES).toContain(role);
      expect(roles.services[name]?.env_file, name).toEqual([`auth/${role}.env`]);
    }
    // A service added here (publisher) is complete: the image, hardened like the others.
    expect(roles.services['publisher']).toMatchObject({
      image: base.services['cli']?.image,
      read_only: true,
      cap_drop: ['ALL'],
      profiles: ['tools'],
    });
  });

  it('makes every NATS node serve the auth init accounts from /etc/nats/auth', () => {
    const nats = Object.entries(base.services).filter(([, s]) => isNats(s));
    expect(nats.length).toBe(3);
    for (const [name] of nats) {
      const s = roles.services[name];
      expect(s?.command, name).toEqual(['nats-server', '--config', '/etc/nats/nats-roles.conf']);
      expect(s?.volumes, name).toEqual([
        './deploy/compose/nats-roles.conf:/etc/nats/nats-roles.conf:ro',
        './auth:/etc/nats/auth:ro',
      ]);
    }
    const conf = readFileSync(path.join(REPO_ROOT, 'deploy/compose/nats-roles.conf'), 'utf8');
    // The node's own settings (mounted at /etc/nats/nats.conf by docker-compose.yml), then the
    // accounts; includes resolve relative to /etc/nats.
    expect(conf.match(/^include .*$/gmu)).toEqual([
      'include "nats.conf"',
      'include "auth/nats-auth.conf"',
    ]);
    expect(base.services['nats-1']?.volumes).toContain(
      './deploy/compose/nats.conf:/etc/nats/nats.conf:ro',
    );
    // The documented auth init writes the server paths to where the nodes mount ./auth.
    expect(readFileSync(path.join(REPO_ROOT, 'docker-compose.roles.yml'), 'utf8')).toContain(
      '--server-dir /etc/nats/auth',
    );
  });
});
