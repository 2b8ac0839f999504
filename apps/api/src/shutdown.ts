/**
 * The API's graceful stop (SIGTERM): no new connections, a 503 with `Connection: close` for a request that
 * arrives on a kept-alive one, every Server-Sent Events stream ended with a `shutdown` event (so clients
 * reconnect elsewhere rather than see a broken stream), in-flight requests finished within
 * API_SHUTDOWN_GRACE_MS, then the rest cut.
 */
import type { RequestHandler } from 'express';
import { ServiceError } from '@sdq/contracts';

export class Shutdown {
  stopping = false;
  private readonly streams = new Set<() => void>();

  /** An open event stream registers how it ends itself; the returned function unregisters it. */
  track(end: () => void): () => void {
    this.streams.add(end);
    return () => this.streams.delete(end);
  }

  /** Ends every open event stream now. */
  endStreams(): void {
    for (const end of [...this.streams]) end();
  }

  /** While stopping: refuse new requests, asking the client to reconnect (to another instance). */
  refuseWhileStopping(): RequestHandler {
    return (_req, res, next) => {
      if (!this.stopping) return next();
      res.set('Connection', 'close');
      next(new ServiceError('service_unavailable', 'this API process is shutting down; retry (another instance will answer)'));
    };
  }
}
