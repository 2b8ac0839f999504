/**
 * Real HTTP receivers for delivery tests, on loopback only (127.0.0.0/8 or ::1): no test may send a packet
 * anywhere else.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** performance.now() when the body had arrived. */
  at: number;
}

export type Handler = (req: ReceivedRequest, res: ServerResponse, index: number) => void;

export interface Receiver {
  port: number;
  /** A URL on this receiver; `host` as written in the URL (default the address it listens on). */
  url(path?: string, host?: string): string;
  requests: ReceivedRequest[];
  handler: Handler;
  close(): Promise<void>;
}

const ok: Handler = (_req, res) => res.end('ok');

export async function startReceiver(handler: Handler = ok, address: '127.0.0.1' | '127.0.0.2' | '127.0.0.3' | '::1' = '127.0.0.1'): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const receiver = { requests, handler } as Receiver;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const received = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: performance.now() };
      requests.push(received);
      receiver.handler(received, res, requests.length - 1);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  const port = (server.address() as AddressInfo).port;
  const defaultHost = address.includes(':') ? `[${address}]` : address;
  receiver.port = port;
  receiver.url = (path = '/hook', host = defaultHost) => `http://${host}:${port}${path}`;
  receiver.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return receiver;
}
