// The chaos harness's TCP relay on loopback: bytes flow both ways, a cut holds them (nothing is
// lost, nothing gets through, no close crosses it), and a heal delivers them in order.

import { createServer, connect, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { TcpRelay } from '../../scripts/chaos/relay.js';

interface Echo {
  readonly server: Server;
  readonly port: number;
  /** Bytes the upstream has received so far. */
  received(): string;
}

async function startEcho(): Promise<Echo> {
  let received = '';
  const server = createServer((s) => {
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      received += chunk;
      s.write(chunk.toUpperCase());
    });
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port, received: () => received };
}

function clientOf(url: string): { socket: Socket; got: () => string } {
  const port = Number(new URL(url).port);
  const socket = connect({ host: '127.0.0.1', port });
  let got = '';
  socket.setEncoding('utf8');
  socket.on('data', (c: string) => (got += c));
  return { socket, got: () => got };
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !check(); i++) await sleep(10);
  expect(check()).toBe(true);
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe('chaos TCP relay', () => {
  it('relays both ways, holds everything during a cut and delivers it in order on heal', async () => {
    const echo = await startEcho();
    const relay = await TcpRelay.start([echo.port]);
    cleanups.push(
      () => relay.close(),
      () => new Promise((r) => echo.server.close(() => r())),
    );
    const listener = relay.listeners[0];
    if (listener === undefined) throw new Error('no listener');
    const client = clientOf(listener.url);
    cleanups.push(() => Promise.resolve(void client.socket.destroy()));

    client.socket.write('ping ');
    await until(() => client.got() === 'PING ');

    relay.cut();
    client.socket.write('during the cut ');
    // Give the bytes every chance to leak before looking: they must still be held.
    await sleep(300);
    expect(echo.received()).toBe('ping ');
    expect(client.got()).toBe('PING ');
    expect(client.socket.destroyed).toBe(false);

    relay.heal();
    client.socket.write('after');
    await until(() => client.got() === 'PING DURING THE CUT AFTER');
    expect(echo.received()).toBe('ping during the cut after');
  });

  it('holds a connection made during a cut until the heal', async () => {
    const echo = await startEcho();
    const relay = await TcpRelay.start([echo.port]);
    cleanups.push(
      () => relay.close(),
      () => new Promise((r) => echo.server.close(() => r())),
    );
    relay.cut();
    const listener = relay.listeners[0];
    if (listener === undefined) throw new Error('no listener');
    const client = clientOf(listener.url);
    cleanups.push(() => Promise.resolve(void client.socket.destroy()));
    client.socket.write('hello');
    await sleep(300);
    expect(echo.received()).toBe('');
    relay.heal();
    await until(() => client.got() === 'HELLO');
  });
});
