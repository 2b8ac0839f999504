/**
 * Accounts with their money: creation with the starting balance, balances, operator grants and
 * adjustments, ledgers, keys. The admin API and the CLI both use this, so `POST /v1/admin/accounts` and
 * `npx sdq accounts create` agree. Amounts arrive and leave as decimal credits; inside they are
 * micro-credits (@sdq/credits).
 */
import { displayNameProblem, type KeyScope, LedgerQuery, ServiceError, type LedgerEntryObject } from '@sdq/contracts';
import { type CreditsService, type LedgerEntry, parseCredits, toCredits } from '@sdq/credits';
import { type Account, newId, type Store } from './store';
import { parseBody } from './validate';

export interface AccountsServiceOptions {
  /** Micro-credits a new account gets when its creator names no amount (STARTING_CREDITS). */
  startingCredits: number;
}

export class AccountsService {
  constructor(
    private readonly store: Store,
    private readonly credits: CreditsService,
    private readonly opts: AccountsServiceOptions,
  ) {}

  /**
   * Creates an account, its starting balance and its first key. `credits` (decimal) is the starting
   * balance; omitted, the configured starting grant. The grant is made first, under the new id: a failure
   * after it leaves credits on an id no key can reach, never an account short of its grant.
   */
  async create(name: string, opts: { credits?: number | string; scope?: KeyScope; email?: string; tier?: string } = {}) {
    const problem = displayNameProblem(name);
    if (problem) throw new ServiceError('bad_request', `name: ${problem}`, { field: 'name' });
    const amount = opts.credits === undefined ? this.opts.startingCredits : amountOf('credits', opts.credits, { allowZero: true });
    const id = newId('acct');
    if (amount > 0) await this.credits.grantStarting(id, amount);
    const account = await this.store.createAccount(name, id, opts.email ?? '', opts.tier ?? '');
    const { key, apiKey } = await this.store.createApiKey(account.id, opts.scope);
    return { account, balance: amount, key, apiKey };
  }

  /** Sets the account's priority tier (a name the caller checked); its next jobs queue at that priority. */
  async setTier(idOrName: string, tier: string): Promise<Account> {
    const account = await this.get(idOrName);
    await this.store.setAccountTier(account.id, tier);
    return { ...account, tier };
  }

  /** Sets the account's safety mode (null: back to SAFETY_MODE); its next jobs carry it. */
  async setSafety(idOrName: string, mode: string | null): Promise<Account> {
    const account = await this.get(idOrName);
    await this.store.setAccountSafety(account.id, mode ?? '');
    return { ...account, safety_mode: mode ?? '' };
  }

  async get(idOrName: string): Promise<Account> {
    const account = await this.store.findAccount(idOrName);
    if (!account) throw new ServiceError('not_found', `account ${idOrName} not found`);
    return account;
  }

  /** Micro-credits. */
  balance(accountId: string): Promise<number> {
    return this.credits.balance(accountId);
  }

  async list(): Promise<(Account & { credits: number })[]> {
    const accounts = await this.store.listAccounts();
    const balances = await Promise.all(accounts.map((a) => this.credits.balance(a.id)));
    return accounts.map((a, i) => ({ ...a, credits: toCredits(balances[i]) }));
  }

  /**
   * An operator's grant (amount > 0) or adjustment (amount < 0, refused below zero), in decimal credits.
   * With `tag` (an Idempotency-Key), at most once per account and tag.
   */
  async grant(idOrName: string, amount: number | string, opts: { reason?: string; tag?: string } = {}) {
    const account = await this.get(idOrName);
    const micro = amountOf('amount', amount, { allowNegative: true });
    const reason = opts.reason ?? (micro > 0 ? 'operator grant' : 'operator adjustment');
    const tag = opts.tag === undefined ? undefined : `op:${opts.tag}`;
    if (tag !== undefined && (opts.tag!.length === 0 || opts.tag!.length > 200)) {
      throw new ServiceError('invalid_idempotency_key', `Idempotency-Key: must be 1 to 200 characters here (got ${opts.tag!.length})`);
    }
    const result = micro > 0 ? await this.credits.grant(account.id, micro, reason, { tag }) : await this.credits.adjust(account.id, micro, reason, { tag });
    if (result.status === 'insufficient_balance') {
      throw new ServiceError('conflict', `the balance is ${toCredits(result.balance)} credits: adjusting it by ${toCredits(micro)} would take it below zero`);
    }
    return {
      account_id: account.id,
      type: micro > 0 ? 'grant' : 'adjust',
      amount: toCredits(micro),
      reason,
      credits: toCredits(result.balance),
      entry_id: result.status === 'ok' ? result.entry_id : null,
      duplicate: result.status === 'duplicate',
    };
  }

  /** A page of an account's ledger, newest first, in decimal credits. */
  async ledger(accountId: string, query: unknown): Promise<{ data: LedgerEntryObject[]; next_cursor: string | null }> {
    const { limit, cursor } = parseBody(LedgerQuery, query);
    const page = await this.credits.ledger(accountId, { limit, cursor });
    return { data: page.entries.map(ledgerEntryObject), next_cursor: page.next_cursor };
  }

  async createKey(idOrName: string, scope?: KeyScope) {
    const account = await this.get(idOrName);
    return this.store.createApiKey(account.id, scope);
  }

  async listKeys(idOrName: string) {
    return this.store.listApiKeys((await this.get(idOrName)).id);
  }

  revokeKey(idOrKey: string) {
    return this.store.revokeApiKey(idOrKey);
  }

  /**
   * Accounts created before the ledger kept their starting credits on the account record: each gets them
   * as its tagged starting grant (once, however often this runs), then the old field goes.
   */
  async migrateLegacyCredits(): Promise<number> {
    let migrated = 0;
    for (const { id, credits } of await this.store.legacyCredits()) {
      let amount = 0;
      try {
        amount = parseCredits(credits, { allowZero: true });
      } catch {
        // An unreadable legacy value grants nothing; the account keeps working.
      }
      if (amount > 0 && (await this.credits.grantStarting(id, amount)).status === 'ok') migrated++;
      await this.store.clearLegacyCredits(id);
    }
    return migrated;
  }
}

export function ledgerEntryObject(entry: LedgerEntry): LedgerEntryObject {
  return {
    id: entry.id,
    type: entry.type,
    amount: toCredits(entry.amount),
    job_id: entry.job_id ?? null,
    reason: entry.reason ?? null,
    charged: entry.charged === undefined ? null : toCredits(entry.charged),
    created_at: entry.created_at,
  };
}

/** Decimal credits typed by a person -> micro-credits, or 400 naming the value. */
function amountOf(field: string, value: number | string, opts: { allowNegative?: boolean; allowZero?: boolean }): number {
  try {
    return parseCredits(value, opts);
  } catch (err) {
    throw new ServiceError('bad_request', (err as Error).message, { field });
  }
}
