import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config';
import { Store } from '../src/store';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';

const run = promisify(execFile);

describe('config', () => {
  it('applies defaults', () => {
    const config = parseConfig({}, () => 'random-secret');
    expect(config).toMatchObject({
      port: 3000,
      redisUrl: 'redis://127.0.0.1:6379',
      queuePrefix: 'sdq',
      modelsDir: './models',
      syncWait: 120,
      maxPixels: 1_048_576,
      resultRetention: 86_400,
      storage: { local: { dir: '.data/artifacts', secret: 'random-secret' } },
    });
  });

  it.each([
    [{ PORT: 'abc' }, /^Invalid environment: PORT must be a number/],
    [{ PORT: '70000' }, /^Invalid environment: PORT /],
    [{ REDIS_URL: 'http://x' }, /^Invalid environment: REDIS_URL must be redis:\/\/, rediss:\/\/, redis\+sentinel:\/\/ or redis\+cluster:\/\//],
    [{ S3_ENDPOINT: 'http://minio:9000' }, /^Invalid environment: S3_BUCKET is required when S3_ENDPOINT is set$/],
    [{ LOG_LEVEL: 'loud' }, /^Invalid environment: LOG_LEVEL /],
    [{ ADMIN_TOKEN: 'short' }, /^Invalid environment: ADMIN_TOKEN must be at least 16 characters \(got "\*\*\*"\)$/],
    [{ AWS_ACCESS_KEY_ID: 'x' }, /^Invalid environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/],
    [{ SYNC_WAIT: '-1' }, /^Invalid environment: SYNC_WAIT /],
    [{ WEBHOOK_ALLOWED_HOSTS: 'hooks.internal,http://x/' }, /^Invalid environment: WEBHOOK_ALLOWED_HOSTS invalid allowed host "http:\/\/x\/": expected a host name or an IP address/],
    [{ WEBHOOK_RETRY_DELAYS_MS: '5s,1m' }, /^Invalid environment: WEBHOOK_RETRY_DELAYS_MS must be up to 20 comma-separated whole numbers of milliseconds/],
    [{ WEBHOOK_TIMEOUT_MS: '0' }, /^Invalid environment: WEBHOOK_TIMEOUT_MS /],
  ])('refuses %o', (env, message) => {
    expect(() => parseConfig(env)).toThrow(message);
  });

  it('reads the webhook settings, with the retry schedule of the issue by default', () => {
    const defaults = parseConfig({}).webhooks;
    expect(defaults).toMatchObject({ timeoutMs: 10_000, secretGraceMs: 86_400_000, concurrency: 16, sweepIntervalMs: 30_000 });
    expect(defaults.retryDelaysMs).toEqual([5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000]);
    expect([...defaults.allowedHosts.names, ...defaults.allowedHosts.addresses]).toEqual([]);
    const given = parseConfig({ WEBHOOK_ALLOWED_HOSTS: 'Hooks.Internal., [::1], 10.0.0.7', WEBHOOK_RETRY_DELAYS_MS: '100, 200', WEBHOOK_SECRET_GRACE: '0' }).webhooks;
    expect([...given.allowedHosts.names]).toEqual(['hooks.internal']);
    expect([...given.allowedHosts.addresses]).toEqual(['0:0:0:0:0:0:0:1', '10.0.0.7']);
    expect(given.retryDelaysMs).toEqual([100, 200]);
    expect(given.secretGraceMs).toBe(0);
  });

  it('chooses S3 when S3_BUCKET is set', () => {
    expect(parseConfig({ S3_BUCKET: 'b', S3_ENDPOINT: 'http://127.0.0.1:9000', S3_FORCE_PATH_STYLE: 'true' }).storage).toEqual({
      s3: { bucket: 'b', endpoint: 'http://127.0.0.1:9000', region: 'us-east-1', forcePathStyle: true, credentials: undefined },
    });
  });
});

describe('sdq CLI', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => {
    await redis.close();
  });
  const sdq = (...args: string[]) =>
    run('node', ['apps/api/bin/sdq.js', ...args], { env: { ...process.env, REDIS_URL: redis.url, QUEUE_PREFIX: redis.prefix }, cwd: new URL('../../..', import.meta.url).pathname });

  it('creates and lists accounts, creates and revokes keys', async () => {
    const help = await sdq('--help');
    expect(help.stdout).toContain('accounts create');
    const created = JSON.parse((await sdq('accounts', 'create', '--name', 'alice', '--credits', '10', '--json')).stdout);
    expect(created).toMatchObject({ name: 'alice', credits: 10, api_key: expect.stringMatching(/^sk-/) });
    expect((await sdq('accounts', 'list')).stdout).toContain('alice');
    const key = JSON.parse((await sdq('keys', 'create', 'alice', '--json')).stdout);

    const store = new Store(redis.url, redis.prefix, 2000);
    await new Promise((r) => store.redis.once('ready', r));
    try {
      expect(await store.authenticate(created.api_key)).toEqual({ accountId: created.id, keyId: created.key_id, scope: 'generate' });
      await sdq('keys', 'revoke', created.key_id);
      await sdq('keys', 'revoke', key.api_key);
      expect(await store.authenticate(created.api_key)).toBeUndefined();
      expect(await store.authenticate(key.api_key)).toBeUndefined();
      // Only hashes are stored: the key itself appears nowhere in Redis.
      const dump = await Promise.all((await store.redis.keys(`${redis.prefix}:*`)).map((k) => store.redis.dumpBuffer(k)));
      expect(dump.some((d) => d?.toString('latin1').includes(created.api_key))).toBe(false);
    } finally {
      await store.close();
    }
    await expect(sdq('keys', 'revoke', 'key_nope')).rejects.toMatchObject({ code: 2 });
    await expect(sdq('accounts', 'create')).rejects.toMatchObject({ code: 2 });
    // a priority tier from PRIORITY_TIERS, and none other
    const vip = JSON.parse((await sdq('accounts', 'create', '--name', 'vip', '--tier', 'priority', '--json')).stdout);
    expect(vip).toMatchObject({ name: 'vip', tier: 'priority' });
    await expect(sdq('accounts', 'create', '--name', 'x', '--tier', 'gold')).rejects.toMatchObject({ code: 2 });
  });

  it('refuses a name with control characters, and prints a stored one escaped, never raw', async () => {
    const refused = await sdq('accounts', 'create', '--name', 'evil\u001b[2J').catch((e) => e);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('name: must not contain control characters');
    // one written before names were checked
    const store = new Store(redis.url, redis.prefix, 2000);
    await new Promise((r) => store.redis.once('ready', r));
    try {
      await store.createAccount('old\u001b[2Jname\nsecond line');
    } finally {
      await store.close();
    }
    const { stdout } = await sdq('accounts', 'list');
    expect(stdout).not.toContain('\u001b');
    expect(stdout).toContain('old\\u001b[2Jname\\u000asecond line');
  });

  it('refuses a second account of a name, and never picks one of several accounts sharing a name', async () => {
    const first = JSON.parse((await sdq('accounts', 'create', '--name', 'bob', '--json')).stdout);
    const again = await sdq('accounts', 'create', '--name', 'bob').catch((e) => e);
    expect(again.code).toBe(2);
    expect(again.stderr.trim()).toBe(`sdq: error (usage): an account named "bob" exists already (${first.id}): choose another name; run \`sdq --help\` for usage`);
    // the admin API may make two of a name: the CLI then takes the id only
    const store = new Store(redis.url, redis.prefix, 2000);
    await new Promise((r) => store.redis.once('ready', r));
    let twin;
    try {
      twin = await store.createAccount('bob');
    } finally {
      await store.close();
    }
    const ambiguous = await sdq('credits', 'grant', 'bob', '5').catch((e) => e);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toContain(`sdq: error (conflict): account name "bob" names 2 accounts (`);
    expect(ambiguous.stderr).toContain(twin.id);
    expect(JSON.parse((await sdq('credits', 'balance', first.id, '--json')).stdout).credits).toBe(25);
    expect(JSON.parse((await sdq('credits', 'grant', twin.id, '5', '--json')).stdout)).toMatchObject({ account_id: twin.id });
  });

  it('says a mistake in one line with its code and a hint, never a stack trace', async () => {
    for (const [args, line] of [
      [['accounts', 'create', '--nmae', 'x'], /^sdq: error \(usage\): --nmae is not an option \(did you mean --name\?\); run `sdq --help` for usage$/],
      [['acounts', 'list'], /^sdq: error \(usage\): unknown command: acounts list \(did you mean accounts list\?\); run `sdq --help` for usage$/],
      [['credits', 'balance', 'nobody'], /^sdq: error \(not_found\): account nobody not found; run `sdq --help` for usage$/],
    ] as const) {
      const err = await sdq(...args).catch((e) => e);
      expect(err.code, args.join(' ')).toBe(2);
      expect(err.stderr.trim()).toMatch(line);
      expect(err.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});
