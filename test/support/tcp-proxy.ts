/**
 * A TCP proxy that can be cut: a dependency (S3 here) becomes unreachable and comes back without being
 * stopped itself, whatever serves it (s3rver in-process or MinIO in a container). While cut, the port
 * refuses connections and every open connection is reset.
 */
import { createServer, type Server, type Socket, connect } from 'node:net';

export interface TcpProxy {
  url: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const upstream = new URL(target);
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((client) => {
        const remote = connect(Number(upstream.port), upstream.hostname);
        for (const socket of [client, remote]) {
          sockets.add(socket);
          socket.on('close', () => sockets.delete(socket));
          socket.on('error', () => {
            client.destroy();
            remote.destroy();
          });
        }
        client.pipe(remote).pipe(client);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as { port: number }).port;
        server = s;
        resolve();
      });
    });
  const unlisten = async () => {
    const s = server;
    server = undefined;
    for (const socket of sockets) socket.resetAndDestroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return { url: `${upstream.protocol}//127.0.0.1:${port}`, cut: unlisten, restore: listen, close: unlisten };
}
