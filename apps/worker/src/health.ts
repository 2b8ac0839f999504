/** /healthz (the process answers) and /readyz (engines loaded, Redis reachable, taking jobs). */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { portInUseMessage } from '@sdq/contracts';

export interface Readiness {
  /** Names of the checks that fail; empty = ready. */
  (): Promise<string[]>;
}

export async function startHealthServer(host: string, port: number, readiness: Readiness, metrics?: { contentType: string; metrics(): Promise<string> }): Promise<Server> {
  const server = createServer((req, res) => {
    const reply = (status: number, body: object) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    const path = (req.url ?? '').split('?')[0];
    if (path === '/healthz') return reply(200, { status: 'ok' });
    if (path === '/metrics' && metrics) {
      metrics.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
          res.end(text);
        },
        (err: Error) => reply(500, { status: 'error', message: err.message }),
      );
      return;
    }
    if (path === '/readyz') {
      readiness().then(
        (failing) => reply(failing.length ? 503 : 200, failing.length ? { status: 'unavailable', failing } : { status: 'ready' }),
        (err: Error) => reply(503, { status: 'unavailable', failing: [err.message] }),
      );
      return;
    }
    reply(404, { status: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE'
          ? new Error(portInUseMessage('HEALTH_PORT', port))
          : err,
      );
    });
    server.listen(port, host, () => resolve());
  });
  return server;
}

export function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}
