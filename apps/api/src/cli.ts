/**
 * `npx sdq`: the operator CLI. Talks to Redis through the same modules as the API (store, accounts,
 * @sdq/credits), configured by the same environment (REDIS_URL, QUEUE_PREFIX, STARTING_CREDITS).
 */
import { parseArgs } from 'node:util';
import { KEY_SCOPES, type KeyScope, printableName, ServiceError } from '@sdq/contracts';
import { CreditsService, creditsString, type VerifyProblem } from '@sdq/credits';
import { AccountsService } from './accounts.service';
import { type Config, loadConfig } from './config';
import { closestName, optionErrorMessage } from '@sdq/pipeline/suggest';
import { Store } from './store';

const HELP = `sdq: operate an sdq deployment (reads REDIS_URL, QUEUE_PREFIX and STARTING_CREDITS like the API)

Usage:
  sdq accounts create --name <name> [--credits <n>] [--scope <s>] [--tier <t>]
                                        create an account and its first API key; --credits is the
                                        starting balance (default: STARTING_CREDITS, 25); --tier its
                                        priority tier, one of PRIORITY_TIERS (default: DEFAULT_TIER)
  sdq accounts list                     list accounts with their balances
  sdq keys create <account> [--scope read|generate|admin]
                                        make a new API key (shown once; scope default generate)
  sdq keys list <account>               list an account's keys (ids and scopes, never keys)
  sdq keys revoke <key id or key>       revoke a key at once
  sdq credits grant <account> <n> [--reason <text>]
                                        add n credits (negative: take them away, never below zero)
  sdq credits balance <account>         an account's balance
  sdq ledger list <account> [--limit <n>]
                                        an account's newest ledger entries
  sdq ledger verify                     prove every balance equals the sum of its ledger and every hold
                                        is consistent; exits 1 and prints the problems otherwise
  sdq --help                            this text

<account> is an account id or its exact name. Add --json for machine-readable output.
`;

class UsageError extends Error {}

async function connect(config: Config): Promise<Store> {
  const store = new Store(config.redisUrl, config.keyPrefix, config.redisTimeoutMs);
  store.redis.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cannot reach Redis at ${config.redisUrl.replace(/\/\/[^@]*@/, '//***@')} (set REDIS_URL)`)), Math.max(config.redisTimeoutMs, 3000));
    store.redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return store;
}

function scopeOf(value: string | undefined): KeyScope | undefined {
  if (value === undefined) return undefined;
  if (!KEY_SCOPES.includes(value as KeyScope)) throw new UsageError(`--scope must be one of ${KEY_SCOPES.join(', ')} (got ${value})`);
  return value as KeyScope;
}

function describeProblem(p: VerifyProblem): string {
  switch (p.kind) {
    case 'balance_mismatch':
      return `account ${p.account_id}: balance ${creditsString(p.balance)} != ledger sum ${creditsString(p.ledger_sum)}`;
    case 'negative_balance':
      return `account ${p.account_id}: negative balance ${creditsString(p.balance)}`;
    case 'release_amount_mismatch':
      return `account ${p.account_id}, job ${p.job_id}: held ${creditsString(p.held)} but released ${creditsString(p.released)}`;
    case 'open_hold_mismatch':
      return `account ${p.account_id}, job ${p.job_id}: ${p.detail}`;
    default:
      return `account ${p.account_id}, job ${p.job_id}: ${p.kind.replaceAll('_', ' ')}`;
  }
}

async function run(argv: string[]): Promise<number> {
  // "-5" is an amount, not an option: parseArgs would read it as the short option -5.
  const NEGATIVE = /^-\d/;
  const options = {
    name: { type: 'string' },
    credits: { type: 'string' },
    scope: { type: 'string' },
    reason: { type: 'string' },
    limit: { type: 'string' },
    tier: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
    json: { type: 'boolean' },
  } as const;
  let parsed;
  try {
    parsed = parseArgs({ args: argv.map((a) => (NEGATIVE.test(a) ? `\u0000${a}` : a)), allowPositionals: true, options });
  } catch (err) {
    throw new UsageError(optionErrorMessage(err, Object.keys(options)));
  }
  const values = parsed.values;
  const [group, action, ...args] = parsed.positionals.map((p) => p.replace(/^\u0000/, ''));
  if (values.help || !group) {
    process.stdout.write(HELP);
    return 0;
  }
  const out = (human: string, data: unknown) => console.log(values.json ? JSON.stringify(data) : human);
  const command = `${group} ${action ?? ''}`.trim();
  const known = ['accounts create', 'accounts list', 'keys create', 'keys list', 'keys revoke', 'credits grant', 'credits balance', 'ledger list', 'ledger verify'];
  if (!known.includes(command)) {
    const guess = closestName(command, known);
    throw new UsageError(`unknown command: ${command}${guess ? ` (did you mean ${guess}?)` : ''}`);
  }
  const arg = (i: number, what: string) => {
    if (args[i] === undefined) throw new UsageError(`${command} needs ${what}`);
    return args[i];
  };

  const config = loadConfig();
  const store = await connect(config);
  const credits = new CreditsService(store.redis, { prefix: config.keyPrefix });
  const accounts = new AccountsService(store, credits, { startingCredits: config.credits.startingCredits });
  try {
    switch (command) {
      case 'accounts create': {
        if (!values.name) throw new UsageError('accounts create needs --name');
        if (values.tier !== undefined && !config.credits.tiers.has(values.tier)) {
          throw new UsageError(`--tier ${values.tier} is not one of the tiers (${[...config.credits.tiers.keys()].join(', ')}; PRIORITY_TIERS)`);
        }
        // names are how the CLI addresses accounts, so it makes no second one of a name
        const same = await store.accountsNamed(values.name);
        if (same.length) throw new UsageError(`an account named ${JSON.stringify(values.name)} exists already (${same.map((a) => a.id).join(', ')}): choose another name`);
        const { account, balance, key, apiKey } = await accounts.create(values.name, { credits: values.credits, scope: scopeOf(values.scope), tier: values.tier });
        out(`account ${account.id} (${printableName(account.name)}), credits ${creditsString(balance)}\nkey ${key.id} (scope ${key.scope})\napi key (shown once): ${apiKey}`, {
          ...account,
          credits: Number(creditsString(balance)),
          key_id: key.id,
          scope: key.scope,
          api_key: apiKey,
        });
        break;
      }
      case 'accounts list': {
        const list = await accounts.list();
        out(list.map((a) => `${a.id}\t${printableName(a.name)}\t${a.credits}\t${a.created_at}`).join('\n') || '(no accounts)', list);
        break;
      }
      case 'keys create': {
        const account = await accounts.get(arg(0, 'an account id or name'));
        const { key, apiKey } = await accounts.createKey(account.id, scopeOf(values.scope));
        out(`key ${key.id} (scope ${key.scope}) for ${account.id}\napi key (shown once): ${apiKey}`, { ...key, api_key: apiKey });
        break;
      }
      case 'keys list': {
        const keys = await accounts.listKeys(arg(0, 'an account id or name'));
        out(keys.map((k) => `${k.id}\t${k.hint}...\t${k.scope}\t${k.created_at}\t${k.revoked_at ? `revoked ${k.revoked_at}` : 'active'}`).join('\n'), keys);
        break;
      }
      case 'keys revoke': {
        const key = await accounts.revokeKey(arg(0, 'a key id or the key'));
        if (!key) throw new UsageError('no such key');
        out(`key ${key.id} revoked at ${key.revoked_at}`, key);
        break;
      }
      case 'credits grant': {
        const result = await accounts.grant(arg(0, 'an account id or name'), arg(1, 'an amount of credits'), { reason: values.reason });
        out(`${result.type} of ${result.amount} credits to ${result.account_id}: balance ${result.credits}`, result);
        break;
      }
      case 'credits balance': {
        const account = await accounts.get(arg(0, 'an account id or name'));
        const balance = creditsString(await accounts.balance(account.id));
        out(`${account.id}\t${balance}`, { id: account.id, credits: Number(balance) });
        break;
      }
      case 'ledger list': {
        const account = await accounts.get(arg(0, 'an account id or name'));
        const page = await accounts.ledger(account.id, { limit: values.limit ?? '20' });
        out(page.data.map((e) => `${e.created_at}\t${e.type}\t${e.amount}\t${e.job_id ?? ''}\t${e.reason ?? ''}`).join('\n') || '(no entries)', page);
        break;
      }
      case 'ledger verify': {
        const report = await credits.verify();
        const summary = `${report.accounts} accounts, ${report.entries} ledger entries, ${report.open_holds.length} open holds`;
        out(report.ok ? `ok: ${summary}` : `${report.problems.length} problem(s) in ${summary}:\n${report.problems.map(describeProblem).join('\n')}`, {
          ok: report.ok,
          accounts: report.accounts,
          entries: report.entries,
          open_holds: report.open_holds.length,
          problems: report.problems,
        });
        return report.ok ? 0 : 1;
      }
    }
    return 0;
  } finally {
    await store.close();
  }
}

// One line, never a stack trace (SDQ_DEBUG=1 prints it): the code, what went wrong, where to look.
run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    // A ServiceError is the operator's mistake (unknown account, bad amount): a usage error.
    const usage = err instanceof UsageError || (err instanceof ServiceError && err.status < 500);
    const code = err instanceof ServiceError ? err.code : usage ? 'usage' : 'internal';
    const hint = usage ? '; run `sdq --help` for usage' : process.env.SDQ_DEBUG ? `\n${err.stack}` : ' (SDQ_DEBUG=1 shows where)';
    console.error(`sdq: error (${code}): ${err.message}${hint}`);
    process.exit(usage ? 2 : 1);
  },
);
