/**
 * The storage backend both apps use (implementations in @sdq/storage): the API writes uploads and signs
 * URLs, the worker reads uploads and writes generated images. Keys are '/'-separated paths such as
 * `generations/<job id>/0.png`; see artifactKey and inputKey.
 */
export interface Storage {
  readonly kind: 's3' | 'local';
  put(key: string, data: Buffer, contentType: string): Promise<void>;
  /** Throws StorageNotFoundError when the key does not exist. */
  get(key: string): Promise<Buffer>;
  /** A URL anyone holding it can GET until it expires (S3 presigned, or the API's HMAC-signed route). */
  signedUrl(key: string, expiresInSeconds: number): Promise<string>;
  /** Removes every object whose key starts with prefix; returns how many. */
  deletePrefix(prefix: string): Promise<number>;
  /** Resolves when the backend answers (readiness); throws otherwise. */
  check(): Promise<void>;
  close?(): Promise<void>;
}

export class StorageNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`no stored object ${key}`);
    this.name = 'StorageNotFoundError';
  }
}

/** The backend could not be reached or refused a write: the client may retry (503), it is not the client's fault. */
export class StorageUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorageUnavailableError';
  }
}
