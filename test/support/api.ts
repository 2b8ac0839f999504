/**
 * Starts the API in-process against a private Redis (see redis.ts) with a temporary MODELS_DIR of fake
 * engines (engine discovery reads only JSON files) and local or S3 storage.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseConfig, type Config } from '../../apps/api/src/config';
import { startServer, type RunningServer } from '../../apps/api/src/app';
import { freePort } from './redis';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/** gen-a: 128x128 generation engine; gen-idle: one no worker serves; up-x2: an upscaler. */
export function makeModelsDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sdq-models-'));
  for (const id of ['gen-a', 'gen-idle']) {
    mkdirSync(join(dir, id, 'unet'), { recursive: true });
    mkdirSync(join(dir, id, 'vae_decoder'), { recursive: true });
    // A vae_encoder folder: the engine does image-to-image and masking too.
    mkdirSync(join(dir, id, 'vae_encoder'), { recursive: true });
    writeFileSync(join(dir, id, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline' }));
    writeFileSync(join(dir, id, 'unet', 'config.json'), JSON.stringify({ sample_size: 16 }));
    writeFileSync(join(dir, id, 'vae_decoder', 'config.json'), JSON.stringify({ block_out_channels: [32, 32, 32, 32] }));
  }
  mkdirSync(join(dir, 'up-x2'));
  writeFileSync(join(dir, 'up-x2', 'model.onnx'), '');
  writeFileSync(join(dir, 'up-x2', 'config.json'), JSON.stringify({ scale: 2 }));
  return dir;
}

export interface TestApi {
  server: RunningServer;
  config: Config;
  url: string;
  /** Calls the API with the admin token. */
  admin(path: string, init?: RequestInit): Promise<Response>;
  /** Creates an account; returns its id and key. */
  account(name?: string): Promise<{ id: string; api_key: string; key_id: string }>;
  close(): Promise<void>;
}

export async function startTestApi(env: Record<string, string | undefined>, opts: { logger?: pino.Logger } = {}): Promise<TestApi> {
  const modelsDir = makeModelsDir();
  const artifactsDir = mkdtempSync(join(tmpdir(), 'sdq-artifacts-'));
  // A known port, so PUBLIC_URL (job urls, local artifact URLs) names it.
  const port = await freePort();
  const config = parseConfig({
    PORT: String(port),
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    HOST: '127.0.0.1',
    ADMIN_TOKEN,
    MODELS_DIR: modelsDir,
    ARTIFACTS_DIR: artifactsDir,
    ARTIFACT_URL_SECRET: 'test-artifact-secret-0123456789',
    SYNC_WAIT: '10',
    // teardown: requests a test left waiting are cut after 2 s, not the default 10
    API_SHUTDOWN_GRACE_MS: '2000',
    REDIS_TIMEOUT_MS: '500',
    LOG_LEVEL: 'silent',
    // The API alone, with stub workers that claim no presence: jobs are queued whoever serves them.
    REQUIRE_WORKER: 'false',
    ...env,
  });
  const logger = opts.logger ?? pino({ level: 'silent' });
  const server = await startServer(config, { logger });
  const admin = (path: string, init: RequestInit = {}) =>
    fetch(server.url + path, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
  return {
    server,
    config,
    url: server.url,
    admin,
    account: async (name = 'alice') => {
      const res = await admin('/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name, credits: 10 }) });
      if (res.status !== 201) throw new Error(`account creation failed: ${res.status} ${await res.text()}`);
      return (await res.json()) as { id: string; api_key: string; key_id: string };
    },
    close: async () => {
      await server.close();
      rmSync(modelsDir, { recursive: true, force: true });
      rmSync(artifactsDir, { recursive: true, force: true });
    },
  };
}
