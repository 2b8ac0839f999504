/**
 * `npx sdq`: the operator CLI. Talks to Redis through the same store module as the API, configured by
 * the same environment (REDIS_URL, QUEUE_PREFIX).
 */
import { parseArgs } from 'node:util';
import { loadConfig } from './config';
import { Store } from './store';

const HELP = `sdq: operate an sdq deployment (reads REDIS_URL and QUEUE_PREFIX like the API)

Usage:
  sdq accounts create --name <name> [--credits <n>]   create an account and its first API key
  sdq accounts list                                    list accounts
  sdq keys create <account id or name>                 make a new API key (shown once)
  sdq keys list <account id or name>                   list an account's keys (ids, never keys)
  sdq keys revoke <key id or key>                      revoke a key at once
  sdq --help                                           this text
`;

class UsageError extends Error {}

async function connect(): Promise<Store> {
  const config = loadConfig();
  const store = new Store(config.redisUrl, config.queuePrefix, config.redisTimeoutMs);
  store.redis.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cannot reach Redis at ${config.redisUrl} (set REDIS_URL)`)), Math.max(config.redisTimeoutMs, 3000));
    store.redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return store;
}

async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { name: { type: 'string' }, credits: { type: 'string' }, help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } },
  });
  const [group, action, arg] = positionals;
  if (values.help || !group) {
    process.stdout.write(HELP);
    return;
  }
  const out = (human: string, data: unknown) => console.log(values.json ? JSON.stringify(data) : human);
  const command = `${group} ${action ?? ''}`.trim();
  const known = ['accounts create', 'accounts list', 'keys create', 'keys list', 'keys revoke'];
  if (!known.includes(command)) throw new UsageError(`unknown command: ${command}`);

  const store = await connect();
  try {
    switch (command) {
      case 'accounts create': {
        if (!values.name) throw new UsageError('accounts create needs --name');
        const credits = values.credits === undefined ? 0 : Number(values.credits);
        if (!Number.isFinite(credits) || credits < 0) throw new UsageError(`--credits must be a number >= 0 (got ${values.credits})`);
        const account = await store.createAccount(values.name, credits);
        const { key, apiKey } = await store.createApiKey(account.id);
        out(`account ${account.id} (${account.name}), credits ${account.credits}\nkey ${key.id}\napi key (shown once): ${apiKey}`, { ...account, key_id: key.id, api_key: apiKey });
        break;
      }
      case 'accounts list': {
        const accounts = await store.listAccounts();
        out(accounts.map((a) => `${a.id}\t${a.name}\t${a.credits}\t${a.created_at}`).join('\n') || '(no accounts)', accounts);
        break;
      }
      case 'keys create':
      case 'keys list': {
        if (!arg) throw new UsageError(`${command} needs an account id or name`);
        const account = await store.findAccount(arg);
        if (!account) throw new UsageError(`no account ${arg}`);
        if (command === 'keys list') {
          const keys = await store.listApiKeys(account.id);
          out(keys.map((k) => `${k.id}\t${k.hint}...\t${k.created_at}\t${k.revoked_at ? `revoked ${k.revoked_at}` : 'active'}`).join('\n'), keys);
        } else {
          const { key, apiKey } = await store.createApiKey(account.id);
          out(`key ${key.id} for ${account.id}\napi key (shown once): ${apiKey}`, { ...key, api_key: apiKey });
        }
        break;
      }
      case 'keys revoke': {
        if (!arg) throw new UsageError('keys revoke needs a key id or the key');
        const key = await store.revokeApiKey(arg);
        if (!key) throw new UsageError('no such key');
        out(`key ${key.id} revoked at ${key.revoked_at}`, key);
        break;
      }
    }
  } finally {
    await store.close();
  }
}

run(process.argv.slice(2)).catch((err: Error) => {
  console.error(`sdq: ${err.message}`);
  if (err instanceof UsageError) console.error('run `sdq --help` for usage');
  process.exit(err instanceof UsageError ? 2 : 1);
});
