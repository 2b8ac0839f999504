/**
 * The storage variables, shared by the API and the worker so one environment file serves both:
 * S3 when S3_BUCKET is set (credentials from the usual AWS variables), else a local folder.
 */
import { z } from 'zod';
import { ConfigError, envBool, envUrl } from '@sdq/contracts';

export const STORAGE_ENV = {
  S3_BUCKET: z.string().min(1).optional(),
  S3_ENDPOINT: envUrl(['http:', 'https:']).optional(),
  /** Default us-east-1. */
  S3_REGION: z.string().min(1).default('us-east-1'),
  /** Default false. */
  S3_FORCE_PATH_STYLE: envBool.default(false),
  AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  /** Local storage folder (when S3_BUCKET is unset); the API and the workers must share it. Default .data/artifacts. */
  ARTIFACTS_DIR: z.string().min(1).default('.data/artifacts'),
};

const StorageEnvSchema = z.object(STORAGE_ENV);
export type StorageEnv = z.infer<typeof StorageEnvSchema>;

export interface S3Config {
  bucket: string;
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

export type StorageConfig = { s3: S3Config } | { local: { dir: string } };

/** The storage half of a parsed environment, with the checks that span several variables. */
export function storageConfigFromEnv(e: StorageEnv): StorageConfig {
  if (e.S3_ENDPOINT && !e.S3_BUCKET) throw new ConfigError('Invalid environment: S3_BUCKET is required when S3_ENDPOINT is set');
  if (!!e.AWS_ACCESS_KEY_ID !== !!e.AWS_SECRET_ACCESS_KEY) {
    throw new ConfigError('Invalid environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together');
  }
  if (!e.S3_BUCKET) return { local: { dir: e.ARTIFACTS_DIR } };
  const credentials = e.AWS_ACCESS_KEY_ID ? { accessKeyId: e.AWS_ACCESS_KEY_ID, secretAccessKey: e.AWS_SECRET_ACCESS_KEY! } : undefined;
  return { s3: { bucket: e.S3_BUCKET, endpoint: e.S3_ENDPOINT, region: e.S3_REGION, forcePathStyle: e.S3_FORCE_PATH_STYLE, credentials } };
}
