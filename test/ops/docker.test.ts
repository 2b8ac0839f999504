/**
 * No Docker engine runs where sdq is developed, so the images and the compose file are checked as files:
 * the facts an operator relies on (CUDA only in the GPU image, non-root users, models as a volume, health
 * checks, Redis durability, one GPU per worker replica, secrets only from .env) are asserted here, and
 * each service's environment is run through the config parser of the app it starts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../apps/api/src/config';
import { parseWorkerConfig } from '../../apps/worker/src/config';
import { parseConfig as parseDeliveryConfig } from '../../apps/webhooks/src/config';

interface Service {
  build?: { context: string; dockerfile: string };
  image?: string;
  command?: string[] | string;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  healthcheck?: { test: string[] };
  restart?: string;
  profiles?: string[];
  container_name?: string;
  deploy?: { resources?: { reservations?: { devices?: { driver: string; count: number; capabilities: string[] }[] } } };
}

const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services;

/** A Dockerfile as instructions: [keyword, rest], continuation lines joined, comments dropped. */
function dockerfile(path: string): [string, string][] {
  const text = readFileSync(path, 'utf8').replace(/\\\n\s*/g, ' ');
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const [keyword, ...rest] = line.split(/\s+/);
      return [keyword.toUpperCase(), rest.join(' ')];
    });
}
const all = (file: [string, string][], keyword: string) => file.filter(([k]) => k === keyword).map(([, rest]) => rest);
/** The last stage: what the image is. */
const finalStage = (file: [string, string][]) => file.slice(file.map(([k]) => k).lastIndexOf('FROM'));

/** Compose's ${VAR:-default} as the default and ${VAR:?message} as a stand-in an operator's .env gives. */
function resolved(env: Record<string, string> = {}): Record<string, string> {
  const stand: Record<string, string> = { ADMIN_TOKEN: 'a'.repeat(32), MINIO_ROOT_PASSWORD: 'b'.repeat(16) };
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => [k, String(v).replace(/\$\{(\w+)(:-([^}]*)|:\?[^}]*)?\}/g, (_m, name, _d, fallback) => stand[name] ?? fallback ?? '')]),
  );
}

describe('Dockerfile.gpu', () => {
  const file = dockerfile('Dockerfile.gpu');
  const last = finalStage(file);

  it('is a multi-stage build whose runtime is CUDA 12 + cuDNN 9 with Node 20, the CUDA provider downloaded', () => {
    expect(all(file, 'FROM').length).toBeGreaterThanOrEqual(2);
    expect(last[0][1]).toMatch(/^nvidia\/cuda:12\.[\d.]+-cudnn(9-)?-?runtime-/);
    expect(all(last, 'COPY').join('\n')).toMatch(/--from=node:20\S* \/usr\/local\/bin\/node/);
    const env = all(file, 'ENV').join(' ');
    expect(env).toMatch(/ONNXRUNTIME_NODE_INSTALL_CUDA=v12/);
    expect(env).not.toMatch(/ONNXRUNTIME_NODE_INSTALL=skip/);
    // npm ci runs in a build stage; its tools do not reach the runtime. ffmpeg is a runtime tool (MP4 animations): the one package installed there
    const run = all(last, 'RUN').join(' ');
    expect(run).not.toMatch(/npm ci/);
    expect([...run.matchAll(/apt-get install -y --no-install-recommends ([^&]+)/g)].map((m) => m[1].trim())).toEqual(['ffmpeg']);
  });

  it('runs the worker as a non-root user, CUDA only unless told, models a volume, healthy when ready', () => {
    const user = all(last, 'USER').at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)$/);
    expect(all(last, 'ENV').join(' ')).toMatch(/EXECUTION_PROVIDERS=cuda(\s|$)/);
    expect(all(last, 'VOLUME').join(' ')).toContain('/models');
    expect(all(file, 'COPY').join('\n')).not.toMatch(/^models\b/m);
    expect(all(last, 'HEALTHCHECK').join(' ')).toMatch(/readyz/);
    expect(all(last, 'CMD').at(-1)).toContain('dist/worker.js');
    // compiled in the image: nothing compiles TypeScript while a worker starts
    expect(all(last, 'RUN').join(' ')).toContain('node scripts/build.mjs');
  });
});

describe('Dockerfile (CPU: API, webhook delivery, CPU workers)', () => {
  const file = dockerfile('Dockerfile');
  const last = finalStage(file);

  it('ships no CUDA: Node 20 images throughout, the CUDA download off', () => {
    for (const from of all(file, 'FROM')) expect(from).toMatch(/^node:20/);
    expect(readFileSync('Dockerfile', 'utf8')).not.toMatch(/nvidia|cuda:/i);
    expect(all(file, 'ENV').join(' ')).toMatch(/ONNXRUNTIME_NODE_INSTALL=skip/);
  });

  it('runs as a non-root user with models a volume and a readiness health check', () => {
    expect(all(last, 'USER').at(-1)).not.toMatch(/^(root|0)$/);
    expect(all(last, 'VOLUME').join(' ')).toContain('/models');
    expect(all(last, 'HEALTHCHECK').join(' ')).toMatch(/readyz/);
    expect(all(last, 'CMD').at(-1)).toContain('dist/api.js');
    expect(all(last, 'RUN').join(' ')).toContain('node scripts/build.mjs');
  });
});

describe('docker-compose.yml', () => {
  it('Redis: AOF every second, noeviction, its data on a volume', () => {
    const redis = services.redis;
    const command = ([] as string[]).concat(redis.command ?? []).join(' ');
    expect(command).toMatch(/--appendonly yes/);
    expect(command).toMatch(/--appendfsync everysec/);
    expect(command).toMatch(/--maxmemory-policy noeviction/);
    const volume = redis.volumes!.find((v) => v.endsWith(':/data'))!;
    expect(Object.keys(compose.volumes)).toContain(volume.split(':')[0]);
  });

  it('MinIO with its bucket created at start, before the services that store', () => {
    expect(services.minio.image).toMatch(/^minio\/minio/);
    expect(([] as string[]).concat(services['minio-init'].command ?? []).join(' ')).toMatch(/mc mb --ignore-existing/);
    for (const name of ['api', 'webhooks', 'worker']) {
      expect((services[name] as { depends_on: Record<string, { condition: string }> }).depends_on['minio-init'].condition, name).toBe('service_completed_successfully');
    }
  });

  it('the API and delivery come from the CPU image, workers from the GPU image, one NVIDIA GPU per replica', () => {
    expect(services.api.build!.dockerfile).toBe('Dockerfile');
    expect(services.webhooks.build!.dockerfile).toBe('Dockerfile');
    const worker = services.worker;
    expect(worker.build!.dockerfile).toBe('Dockerfile.gpu');
    expect(worker.deploy!.resources!.reservations!.devices).toEqual([{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }]);
    // `--scale worker=N` needs replicas that claim no fixed host port or name
    expect(worker.ports).toBeUndefined();
    expect(worker.container_name).toBeUndefined();
  });

  it('webhook delivery is its own app and mounts no models (it learns the engines from Redis)', () => {
    const webhooks = services.webhooks;
    expect(([] as string[]).concat(webhooks.command ?? [])).toContain('dist/webhooks.js');
    expect(webhooks.volumes ?? []).toEqual([]);
    expect(resolved(webhooks.environment).MODELS_DIR).toBeUndefined();
  });

  it('a cpu profile runs CPU workers from the CPU image, reserving no GPU', () => {
    const cpu = services['worker-cpu'];
    expect(cpu.profiles).toEqual(['cpu']);
    expect(cpu.build!.dockerfile).toBe('Dockerfile');
    expect(cpu.environment!.EXECUTION_PROVIDERS).toBe('cpu');
    expect(cpu.deploy?.resources).toBeUndefined();
  });

  it('every long-running service has a health check; the one-shot bucket job is the only one without', () => {
    for (const [name, service] of Object.entries(services)) {
      if (service.restart === 'no') continue;
      expect(service.healthcheck?.test, name).toBeDefined();
    }
    expect(Object.entries(services).filter(([, s]) => !s.healthcheck).map(([n]) => n)).toEqual(['minio-init']);
  });

  it('takes its secrets from .env only: required variables, none written in the file; .env.example names them; .env is ignored', () => {
    const text = readFileSync('docker-compose.yml', 'utf8');
    for (const secret of ['ADMIN_TOKEN', 'MINIO_ROOT_PASSWORD']) {
      expect(text).toMatch(new RegExp(`\\$\\{${secret}:\\?`));
      expect(readFileSync('.env.example', 'utf8')).toMatch(new RegExp(`^${secret}=$`, 'm'));
    }
    expect(readFileSync('.gitignore', 'utf8')).toMatch(/^\.env$/m);
    // every variable compose reads is one .env.example mentions
    const read = new Set([...text.matchAll(/\$\{(\w+)/g)].map((m) => m[1]));
    const example = readFileSync('.env.example', 'utf8');
    for (const name of read) expect(example, name).toContain(name);
  });

  it("each service's command exists and its environment is valid for the app it starts", () => {
    for (const [name, service] of Object.entries(services)) {
      const command = ([] as string[]).concat(service.command ?? []);
      // dist/<name>.js is built from the entry scripts/entries.json names
      const bundle = command.find((part) => /^dist\/[\w-]+\.js$/.test(part));
      if (!bundle) continue;
      const entries = JSON.parse(readFileSync('scripts/entries.json', 'utf8')) as Record<string, string>;
      const entry = entries[bundle.slice('dist/'.length, -'.js'.length)];
      expect(entry, `${name}: ${bundle} is not a bundle scripts/build.mjs makes`).toBeDefined();
      expect(existsSync(entry), `${name}: ${entry}`).toBe(true);
      const env = resolved(service.environment);
      if (entry.startsWith('apps/worker/')) expect(() => parseWorkerConfig(env), name).not.toThrow();
      else if (entry.startsWith('apps/webhooks/')) expect(() => parseDeliveryConfig(env), name).not.toThrow();
      else expect(() => parseConfig(env), name).not.toThrow();
    }
  });

  it('the operations page gives a new operator the three commands', () => {
    const readme = readFileSync('docs/operations.md', 'utf8');
    expect(readme).toContain('cp .env.example .env');
    expect(readme).toContain('docker compose up -d --build --scale worker=4');
    expect(readme).toContain('docker compose --profile cpu up -d --build --scale worker=0');
  });
});
