/**
 * The operator CLI's commands, loaded only once a command is asked for: `sdq --help` answers without
 * loading Redis, the credits scripts or the configuration (it took 1.8 s; now about half a second).
 */
import { KEY_SCOPES, type KeyScope, printableName } from '@sdq/contracts';
import { CreditsService, creditsString, type VerifyProblem } from '@sdq/credits';
import { closestName } from '@sdq/pipeline/suggest';
import { AccountsService } from './accounts.service';
import { type Config, loadConfig } from './config';
import { UsageError } from './cli-usage';
import { Store } from './store';

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

export async function runCommand(
  group: string,
  action: string | undefined,
  args: string[],
  values: { name?: string; credits?: string; scope?: string; reason?: string; limit?: string; tier?: string; subfolder?: string; json?: boolean },
): Promise<number> {
  const out = (human: string, data: unknown) => console.log(values.json ? JSON.stringify(data) : human);
  const command = `${group} ${action ?? ''}`.trim();
  const known = ['accounts create', 'accounts list', 'keys create', 'keys list', 'keys revoke', 'credits grant', 'credits balance', 'ledger list', 'ledger verify', 'models pull', 'models list', 'models rm'];
  if (!known.includes(command)) {
    const guess = closestName(command, known);
    throw new UsageError(`unknown command: ${command}${guess ? ` (did you mean ${guess}?)` : ''}`);
  }
  // models work on MODELS_DIR; a pull needs no Redis
  if (group === 'models') {
    const { modelsCommand } = await import('./cli-models');
    return modelsCommand(action!, args, values, loadConfig());
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
