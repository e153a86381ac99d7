import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { describeError, isOrderFleetError, isValidationError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { APP_CSS, APP_JS, INDEX_HTML } from './assets.js';
import type { FleetView } from './fleet-view.js';

/** What a customer lookup returns (contents from the owner, and the folded log). */
export type CustomerLookup = (customerId: string) => Promise<unknown>;

export interface ConsoleActions {
  /** Compared in constant time with the request's `Authorization: Bearer <token>`. */
  readonly adminToken: string;
  redrive(selection: {
    reason?: string | undefined;
    customer?: string | undefined;
  }): Promise<unknown>;
}

export interface ConsoleServerOptions {
  readonly port: number;
  readonly host: string;
  readonly view: FleetView;
  readonly lookup: CustomerLookup;
  /** Absent: the console is read-only (the default). */
  readonly actions?: ConsoleActions;
  /** Snapshots are pushed at most this often, however fast the fleet changes. */
  readonly pushIntervalMs: number;
  readonly log: Logger;
}

export interface ConsoleServer {
  readonly url: string;
  /** Browser sessions connected now. */
  readonly sessions: () => number;
  close(): Promise<void>;
}

const RedriveBody = z.object({
  reason: z.string().min(1).optional(),
  customer: z.string().min(1).optional(),
});

/**
 * Serves the console page, one Server-Sent Events stream per browser tab, and a few JSON
 * endpoints. Every session gets the same snapshot, computed once per push: the cost on NATS does
 * not grow with the number of sessions (the view's watches and polls are shared).
 */
export async function startConsoleServer(opts: ConsoleServerOptions): Promise<ConsoleServer> {
  const clients = new Set<ServerResponse>();
  let pending: NodeJS.Timeout | undefined;
  let lastPush = 0;
  const push = (): void => {
    pending = undefined;
    lastPush = Date.now();
    if (clients.size === 0) return;
    const frame = `event: snapshot\ndata: ${JSON.stringify(opts.view.snapshot())}\n\n`;
    for (const c of clients) c.write(frame);
  };
  const schedule = (): void => {
    if (pending !== undefined) return;
    pending = setTimeout(push, Math.max(0, lastPush + opts.pushIntervalMs - Date.now()));
  };
  const unsubscribe = opts.view.onChange(schedule);
  const keepAlive = setInterval(() => {
    for (const c of clients) c.write(': keep-alive\n\n');
  }, 15_000);
  keepAlive.unref();

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      opts.log.warn({ url: req.url, err: describeError(err) }, 'console request failed');
      if (!res.headersSent) {
        const status = isValidationError(err)
          ? 400
          : isOrderFleetError(err, 'NOT_FOUND')
            ? 404
            : 500;
        send(res, status, 'application/json', JSON.stringify({ error: describeError(err) }));
      } else res.end();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://console');
    if (req.method === 'GET') {
      switch (url.pathname) {
        case '/':
          return send(res, 200, 'text/html; charset=utf-8', INDEX_HTML);
        case '/app.js':
          return send(res, 200, 'text/javascript; charset=utf-8', APP_JS);
        case '/app.css':
          return send(res, 200, 'text/css; charset=utf-8', APP_CSS);
        case '/api/config':
          return send(
            res,
            200,
            'application/json',
            JSON.stringify({ allowActions: opts.actions !== undefined }),
          );
        case '/api/snapshot':
          return send(res, 200, 'application/json', JSON.stringify(opts.view.snapshot()));
        case '/events':
          res.writeHead(200, {
            'content-type': 'text/event-stream',
            'cache-control': 'no-store',
            connection: 'keep-alive',
          });
          res.write(`event: snapshot\ndata: ${JSON.stringify(opts.view.snapshot())}\n\n`);
          clients.add(res);
          req.on('close', () => clients.delete(res));
          return;
      }
      if (url.pathname.startsWith('/api/customer/')) {
        const id = decodeURIComponent(url.pathname.slice('/api/customer/'.length));
        return send(res, 200, 'application/json', JSON.stringify(await opts.lookup(id)));
      }
    }
    if (req.method === 'POST' && url.pathname === '/api/dlq/redrive') {
      const actions = opts.actions;
      if (actions === undefined)
        return send(res, 403, 'text/plain', 'read-only console: start it with --allow-actions');
      if (!authorized(req, actions.adminToken))
        return send(res, 401, 'text/plain', 'admin token required');
      const body = RedriveBody.parse(JSON.parse(await readBody(req)));
      if (body.reason === undefined && body.customer === undefined)
        return send(res, 400, 'text/plain', 'a reason or a customer is required');
      opts.log.warn({ selection: body }, 'console: redrive requested');
      return send(res, 200, 'application/json', JSON.stringify(await actions.redrive(body)));
    }
    send(res, 404, 'text/plain', 'not found');
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host}:${address.port}`,
    sessions: () => clients.size,
    close: () =>
      (closing ??= (async () => {
        unsubscribe();
        clearInterval(keepAlive);
        clearTimeout(pending);
        for (const c of clients) c.end();
        clients.clear();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })()),
  };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    // Only our own script and style: nothing is loaded from anywhere else.
    'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'",
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

function authorized(req: IncomingMessage, token: string): boolean {
  const header = req.headers.authorization ?? '';
  const given = Buffer.from(header.startsWith('Bearer ') ? header.slice(7) : '');
  const wanted = Buffer.from(token);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > 64 * 1024) throw new Error('request body too large');
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}
