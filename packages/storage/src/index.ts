import type { Storage } from '@sdq/contracts';
import { LocalStorage, type LocalStorageOptions } from './local-storage';
import { S3Storage, type S3StorageOptions } from './s3-storage';

export { LocalStorage, type LocalStorageOptions, LOCAL_ARTIFACTS_PATH, checkLocalSignature, signLocalUrl } from './local-storage';
export { S3Storage, type S3StorageOptions } from './s3-storage';
export { type Storage, StorageNotFoundError } from '@sdq/contracts';

/** S3 when the options name a bucket, else the local folder: both apps build storage the same way. */
export type StorageOptions = { s3: S3StorageOptions } | { local: LocalStorageOptions };

export function createStorage(opts: StorageOptions): Storage {
  return 's3' in opts ? new S3Storage(opts.s3) : new LocalStorage(opts.local);
}
export { STORAGE_ENV, storageConfigFromEnv, type StorageConfig, type StorageEnv, type S3Config } from './config';
