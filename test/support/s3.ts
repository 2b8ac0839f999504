/**
 * A real S3 protocol server for tests, with one bucket: MinIO through testcontainers where a Docker
 * engine runs, else s3rver in-process on a free port (SDQ_TEST_S3=s3rver forces s3rver). Either way the
 * real @aws-sdk/client-s3 talks HTTP to it; the S3 client is never mocked.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { dockerAvailable, genericContainer } from './containers';

export interface TestS3 {
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  close(): Promise<void>;
}

export async function startTestS3(bucket = 'sdq-test'): Promise<TestS3> {
  if (process.env.SDQ_TEST_S3 !== 's3rver' && dockerAvailable()) return startMinio(bucket);
  const directory = mkdtempSync(join(tmpdir(), 'sdq-s3-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: bucket }] });
  const { port } = (await server.run()) as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    // s3rver's fixed credentials: it checks signatures, so presigned URLs are really verified.
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    close: async () => {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

async function startMinio(bucket: string): Promise<TestS3> {
  const credentials = { accessKeyId: 'sdq-test-access', secretAccessKey: 'sdq-test-secret-0123456789' };
  const { container, Wait } = await genericContainer('minio/minio:latest');
  const started = await container
    .withEnvironment({ MINIO_ROOT_USER: credentials.accessKeyId, MINIO_ROOT_PASSWORD: credentials.secretAccessKey })
    .withCommand(['server', '/data'])
    .withExposedPorts(9000)
    .withWaitStrategy(Wait.forHttp('/minio/health/live', 9000))
    .start();
  const endpoint = `http://127.0.0.1:${started.getMappedPort(9000)}`;
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  return { endpoint, bucket, credentials, close: async () => void (await started.stop({ timeout: 1 })) };
}
