/**
 * Credits in Redis: holds, settlements, releases and grants over an append-only ledger per account.
 *
 * A job's full cost is held when it is accepted (reserve), then the hold is closed exactly once: settled
 * when the job succeeded, released (given back) when it failed for good, was canceled, expired or no
 * longer exists. Every movement of money and every close is one Lua script that changes the balance,
 * the hold and the ledger together, so no crash can leave them disagreeing, and closing a hold that is
 * already closed changes nothing and says so: settle and release may be called as often as anyone likes,
 * by whoever sees a job end first.
 *
 * The balance key is a cache of the ledger's sum, kept in step by the same scripts; verify() proves it.
 * Amounts are integer micro-credits (see amounts.ts). Nothing here logs; errors hold no secrets.
 */
import type { Redis } from 'ioredis';
import { creditsString } from './amounts';
import { type CreditKeys, creditKeys } from './keys';
import { LuaScript } from '@sdq/contracts';

export const LEDGER_ENTRY_TYPES = ['grant', 'hold', 'settle', 'release', 'adjust'] as const;
export type LedgerEntryType = (typeof LEDGER_ENTRY_TYPES)[number];

/** One ledger entry. Amounts in micro-credits; the balance is the sum of `amount`. */
export interface LedgerEntry {
  /** The Redis stream id ("1718000000000-0"): increasing, and the pagination cursor. */
  id: string;
  type: LedgerEntryType;
  /** Signed: hold < 0, release > 0, settle 0, grant > 0, adjust either. */
  amount: number;
  job_id?: string;
  reason?: string;
  /** settle only: the amount charged (moved by the hold). */
  charged?: number;
  /** ISO 8601. */
  created_at: string;
}

export const HOLD_STATES = ['held', 'settled', 'released'] as const;
export type HoldState = (typeof HOLD_STATES)[number];

export interface Hold {
  job_id: string;
  account_id: string;
  /** Micro-credits held (and, once settled, charged). */
  amount: number;
  state: HoldState;
  /** ISO 8601. */
  created_at: string;
  closed_at?: string;
  /** Why it was released. */
  reason?: string;
  /** Once settled: what was charged (the amount, less the refund of filtered images). */
  charged?: number;
}

export type ReserveResult =
  | { ok: true; status: 'reserved'; hold: Hold; balance: number }
  /** The job already had a hold (in any state): nothing changed. */
  | { ok: true; status: 'existing'; hold: Hold }
  | { ok: false; status: 'insufficient_balance'; cost: number; balance: number; message: string }
  | { ok: false; status: 'too_many_active_jobs'; active: number; max_active: number; message: string };

export type SettleResult =
  | { status: 'settled'; charged: number }
  | { status: 'already_settled'; charged: number }
  /** Released earlier: nothing is charged. */
  | { status: 'already_released'; amount: number }
  | { status: 'not_found' };

export type ReleaseResult =
  | { status: 'released'; amount: number; balance: number }
  | { status: 'already_released'; amount: number }
  /** Settled earlier: the charge stands. */
  | { status: 'already_settled'; charged: number }
  | { status: 'not_found' };

export type GrantResult =
  | { status: 'ok'; entry_id: string; balance: number }
  /** A tagged grant that was already made: nothing changed. */
  | { status: 'duplicate'; balance: number }
  /** An adjust that would take the balance below zero: nothing changed. */
  | { status: 'insufficient_balance'; balance: number };

export type VerifyProblem =
  | { kind: 'balance_mismatch'; account_id: string; balance: number; ledger_sum: number }
  | { kind: 'negative_balance'; account_id: string; balance: number }
  | { kind: 'hold_settled_and_released'; account_id: string; job_id: string }
  | { kind: 'hold_closed_twice'; account_id: string; job_id: string }
  | { kind: 'hold_recorded_twice'; account_id: string; job_id: string }
  | { kind: 'close_without_hold'; account_id: string; job_id: string }
  | { kind: 'release_amount_mismatch'; account_id: string; job_id: string; held: number; released: number }
  | { kind: 'open_hold_mismatch'; account_id: string; job_id: string; detail: string };

export interface VerifyReport {
  /** No problems. */
  ok: boolean;
  accounts: number;
  entries: number;
  problems: VerifyProblem[];
  /** Holds still open (jobs queued or running, or awaiting the reaper). */
  open_holds: Hold[];
}

export interface CreditsServiceOptions {
  /** Key prefix of the deployment (the queue prefix). */
  prefix: string;
  /** How long a closed hold is kept, so late duplicate settle/release calls still see it. Default 7 days. */
  closedHoldTtlSeconds?: number;
  /** Clock, Unix ms. Default Date.now. */
  now?: () => number;
}

/** Default starting grant of a new account: 25 credits. */
export const DEFAULT_STARTING_GRANT = 25_000_000;
/** Default limit on an account's jobs queued or running. */
export const DEFAULT_MAX_ACTIVE_JOBS = 10;

const script = (name: string) => LuaScript.load(new URL(`./${name}`, import.meta.url));
const SCRIPTS = {
  reserve: script('reserve.lua'),
  settle: script('settle.lua'),
  release: script('release.lua'),
  grant: script('grant.lua'),
};

const MAX_REASON_LENGTH = 500;
const CURSOR = /^\d+-\d+$/;

/** A caller's mistake (bad id, amount, cursor); the API answers 400. */
export class CreditsInputError extends Error {
  readonly code = 'invalid_credits_input';
  constructor(message: string) {
    super(message);
    this.name = 'CreditsInputError';
  }
}

export class CreditsService {
  readonly keys: CreditKeys;
  private readonly closedTtl: number;
  private readonly now: () => number;

  constructor(
    private readonly redis: Redis,
    opts: CreditsServiceOptions,
  ) {
    this.keys = creditKeys(opts.prefix);
    this.closedTtl = opts.closedHoldTtlSeconds ?? 7 * 24 * 3600;
    this.now = opts.now ?? Date.now;
  }

  // --- holds -------------------------------------------------------------------------------------

  /**
   * Holds `amount` micro-credits for a job, if the balance covers it and the account has fewer than
   * `maxActive` open holds (default DEFAULT_MAX_ACTIVE_JOBS; 0 = no limit). A job that already has a
   * hold gets it back unchanged.
   */
  async reserve(accountId: string, jobId: string, amount: number, opts: { maxActive?: number; refundPerImage?: number } = {}): Promise<ReserveResult> {
    checkId('account id', accountId);
    checkId('job id', jobId);
    checkAmount(amount, { positive: true });
    const maxActive = opts.maxActive ?? DEFAULT_MAX_ACTIVE_JOBS;
    if (!Number.isSafeInteger(maxActive) || maxActive < 0) throw new CreditsInputError(`maxActive must be an integer >= 0 (got ${maxActive})`);
    const k = this.keys;
    const now = this.now();
    const reply = (await SCRIPTS.reserve.run(
      this.redis,
      [k.hold(jobId), k.openHolds, k.accountHolds(accountId), k.ledger(accountId), k.balance(accountId), k.ledgerAccounts],
      [accountId, jobId, amount, maxActive, now, opts.refundPerImage ?? 0],
    )) as string[];
    switch (reply[0]) {
      case 'reserved':
        return {
          ok: true,
          status: 'reserved',
          hold: { job_id: jobId, account_id: accountId, amount, state: 'held', created_at: iso(now) },
          balance: Number(reply[1]),
        };
      case 'existing':
        return {
          ok: true,
          status: 'existing',
          hold: { job_id: jobId, account_id: reply[1], amount: Number(reply[2]), state: reply[3] as HoldState, created_at: iso(Number(reply[4])) },
        };
      case 'insufficient_balance': {
        const balance = Number(reply[1]);
        return {
          ok: false,
          status: 'insufficient_balance',
          cost: amount,
          balance,
          message: `this request costs ${creditsString(amount)} credits and the balance is ${creditsString(balance)}`,
        };
      }
      case 'too_many_active_jobs': {
        const active = Number(reply[1]);
        return {
          ok: false,
          status: 'too_many_active_jobs',
          active,
          max_active: maxActive,
          message: `the account has ${active} jobs queued or running, the most allowed at once (${maxActive})`,
        };
      }
      default:
        throw unexpected('reserve', reply);
    }
  }

  /** Charges a job's hold (its job succeeded). Exactly once; later calls report what happened. */
  /** `filtered`: the job's images the safety checker filtered, given back if its hold was taken with a refund per image. */
  async settle(jobId: string, opts: { filtered?: number } = {}): Promise<SettleResult> {
    checkId('job id', jobId);
    const accountId = await this.holdAccount(jobId);
    if (!accountId) return { status: 'not_found' };
    const k = this.keys;
    const reply = (await SCRIPTS.settle.run(
      this.redis,
      [k.hold(jobId), k.openHolds, k.accountHolds(accountId), k.ledger(accountId), k.balance(accountId)],
      [jobId, this.now(), this.closedTtl, opts.filtered ?? 0],
    )) as string[];
    switch (reply[0]) {
      case 'settled':
      case 'already_settled':
        return { status: reply[0], charged: Number(reply[1]) };
      case 'already_released':
        return { status: 'already_released', amount: Number(reply[1]) };
      case 'not_found':
        return { status: 'not_found' };
      default:
        throw unexpected('settle', reply);
    }
  }

  /**
   * Gives a job's hold back (failed for good, canceled, expired, gone). Exactly once; later calls, or a
   * call after settle, change nothing and report what happened. `reason` goes in the ledger entry.
   */
  async release(jobId: string, reason: string): Promise<ReleaseResult> {
    checkId('job id', jobId);
    checkReason(reason);
    const accountId = await this.holdAccount(jobId);
    if (!accountId) return { status: 'not_found' };
    const k = this.keys;
    const reply = (await SCRIPTS.release.run(
      this.redis,
      [k.hold(jobId), k.openHolds, k.accountHolds(accountId), k.ledger(accountId), k.balance(accountId)],
      [jobId, reason, this.now(), this.closedTtl],
    )) as string[];
    switch (reply[0]) {
      case 'released':
        return { status: 'released', amount: Number(reply[1]), balance: Number(reply[2]) };
      case 'already_released':
        return { status: 'already_released', amount: Number(reply[1]) };
      case 'already_settled':
        return { status: 'already_settled', charged: Number(reply[1]) };
      case 'not_found':
        return { status: 'not_found' };
      default:
        throw unexpected('release', reply);
    }
  }

  /** A job's hold, open or closed (closed ones are kept closedHoldTtlSeconds). */
  async hold(jobId: string): Promise<Hold | undefined> {
    checkId('job id', jobId);
    return toHold(await this.redis.hgetall(this.keys.hold(jobId)));
  }

  /**
   * What a job object shows as `credits_charged`, in micro-credits: the amount once settled, 0 once
   * released, null while the hold is open or when there is none.
   */
  async charged(jobId: string): Promise<number | null> {
    const hold = await this.hold(jobId);
    if (hold?.state === 'settled') return hold.charged ?? hold.amount;
    if (hold?.state === 'released') return 0;
    return null;
  }

  /** Open holds, oldest first. */
  async openHolds(opts: { limit?: number; olderThan?: number } = {}): Promise<Hold[]> {
    const max = opts.olderThan === undefined ? '+inf' : `(${opts.olderThan}`;
    const ids = await this.redis.zrangebyscore(this.keys.openHolds, '-inf', max, 'LIMIT', 0, opts.limit ?? 1000);
    const holds = await Promise.all(ids.map((id) => this.hold(id)));
    return holds.filter((h): h is Hold => !!h);
  }

  /** The number of an account's open holds: its jobs queued or running. */
  async activeJobs(accountId: string): Promise<number> {
    checkId('account id', accountId);
    return this.redis.scard(this.keys.accountHolds(accountId));
  }

  // --- grants ------------------------------------------------------------------------------------

  /**
   * Adds credits (> 0). With `tag`, at most once per account and tag (an operator's request id, a
   * migration step): a repeat is 'duplicate' and changes nothing.
   */
  async grant(accountId: string, amount: number, reason: string, opts: { tag?: string } = {}): Promise<GrantResult> {
    checkAmount(amount, { positive: true });
    return this.move(accountId, 'grant', amount, reason, opts.tag);
  }

  /** An operator's correction, signed (not 0); refused if it would take the balance below zero. */
  async adjust(accountId: string, amount: number, reason: string, opts: { tag?: string } = {}): Promise<GrantResult> {
    checkAmount(amount, { positive: false });
    if (amount === 0) throw new CreditsInputError('an adjustment must not be 0');
    return this.move(accountId, 'adjust', amount, reason, opts.tag);
  }

  /** A new account's starting credits (default DEFAULT_STARTING_GRANT), once per account however often it is called. */
  async grantStarting(accountId: string, amount = DEFAULT_STARTING_GRANT): Promise<GrantResult> {
    if (amount === 0) return { status: 'duplicate', balance: await this.balance(accountId) };
    return this.grant(accountId, amount, 'starting grant', { tag: 'starting' });
  }

  private async move(accountId: string, type: 'grant' | 'adjust', amount: number, reason: string, tag = ''): Promise<GrantResult> {
    checkId('account id', accountId);
    checkReason(reason);
    if (tag.length > 200) throw new CreditsInputError('tag must be at most 200 characters');
    const k = this.keys;
    const reply = (await SCRIPTS.grant.run(
      this.redis,
      [k.ledger(accountId), k.balance(accountId), k.ledgerAccounts, k.grantTags(accountId)],
      [accountId, type, amount, reason, this.now(), tag],
    )) as string[];
    switch (reply[0]) {
      case 'ok':
        return { status: 'ok', balance: Number(reply[1]), entry_id: reply[2] };
      case 'duplicate':
      case 'insufficient_balance':
        return { status: reply[0], balance: Number(reply[1]) };
      default:
        throw unexpected(type, reply);
    }
  }

  // --- reading -----------------------------------------------------------------------------------

  /** Micro-credits; 0 for an account with no ledger. */
  async balance(accountId: string): Promise<number> {
    checkId('account id', accountId);
    return Number((await this.redis.get(this.keys.balance(accountId))) ?? 0);
  }

  /**
   * An account's entries, newest first. `cursor` is the `next_cursor` of the page before (entries older
   * than it follow); `limit` default 50, 1 to 1000.
   */
  async ledger(accountId: string, opts: { limit?: number; cursor?: string } = {}): Promise<{ entries: LedgerEntry[]; next_cursor: string | null }> {
    checkId('account id', accountId);
    const limit = opts.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new CreditsInputError(`limit must be an integer from 1 to 1000 (got ${limit})`);
    if (opts.cursor !== undefined && !CURSOR.test(opts.cursor)) throw new CreditsInputError('cursor: is not a cursor this ledger returned');
    const start = opts.cursor === undefined ? '+' : `(${opts.cursor}`;
    // One more than asked, to know whether a next page exists.
    const raw = await this.redis.xrevrange(this.keys.ledger(accountId), start, '-', 'COUNT', limit + 1);
    const entries = raw.slice(0, limit).map(([id, fields]) => toEntry(id, fields));
    return { entries, next_cursor: raw.length > limit ? entries[entries.length - 1].id : null };
  }

  /**
   * Proves the books: for every account with a ledger (or a balance key), the balance equals the sum of
   * its ledger and is not negative; every hold is closed at most once, never both settled and released
   * (a settle's refund of filtered images, a `release` with the reason content_filtered, adds up with it),
   * a release gives back what was held, and the account's open holds are the holds its ledger has not
   * closed. Reads each account at one instant (the balance, holds and last entry together), then its
   * entries up to that instant, so it runs beside live traffic.
   */
  async verify(): Promise<VerifyReport> {
    const accounts = new Set(await this.redis.smembers(this.keys.ledgerAccounts));
    // A balance key outside the set can only come from a write that bypassed the scripts: check it too.
    const [head, tail] = this.keys.balance('\n').split('\n');
    let cursor = '0';
    do {
      const [next, found] = await this.redis.scan(cursor, 'MATCH', `${head}*${tail}`, 'COUNT', 1000);
      for (const key of found) accounts.add(key.slice(head.length, key.length - tail.length));
      cursor = next;
    } while (cursor !== '0');

    const problems: VerifyProblem[] = [];
    let entries = 0;
    for (const accountId of [...accounts].sort()) entries += await this.verifyAccount(accountId, problems);
    return { ok: problems.length === 0, accounts: accounts.size, entries, problems, open_holds: await this.openHolds({ limit: 100_000 }) };
  }

  private async verifyAccount(accountId: string, problems: VerifyProblem[]): Promise<number> {
    const k = this.keys;
    // MULTI: the scripts never run between these reads, so they describe one instant.
    const snapshot = await this.redis
      .multi()
      .get(k.balance(accountId))
      .smembers(k.accountHolds(accountId))
      .xrevrange(k.ledger(accountId), '+', '-', 'COUNT', 1)
      .exec();
    if (!snapshot) throw new Error('verify: transaction aborted');
    for (const [err] of snapshot) if (err) throw err;
    const balance = Number((snapshot[0][1] as string | null) ?? 0);
    const openSet = new Set(snapshot[1][1] as string[]);
    const last = (snapshot[2][1] as [string, string[]][])[0]?.[0];

    let sum = 0;
    let count = 0;
    const jobs = new Map<string, { held: number; holds: number; settles: number; charged: number; releases: number; released: number; refunds: number; refunded: number }>();
    let from = '-';
    while (last !== undefined) {
      const page = await this.redis.xrange(k.ledger(accountId), from, last, 'COUNT', 1000);
      for (const [id, fields] of page) {
        const entry = toEntry(id, fields);
        sum += entry.amount;
        count++;
        if (!entry.job_id) continue;
        const job = jobs.get(entry.job_id) ?? { held: 0, holds: 0, settles: 0, charged: 0, releases: 0, released: 0, refunds: 0, refunded: 0 };
        if (entry.type === 'hold') {
          job.holds++;
          job.held = -entry.amount;
        } else if (entry.type === 'settle') {
          job.settles++;
          job.charged = entry.charged ?? 0;
        } else if (entry.type === 'release' && entry.reason === 'content_filtered') {
          // a settle's refund of filtered images (SAFETY_REFUND), written with it
          job.refunds++;
          job.refunded = entry.amount;
        } else if (entry.type === 'release') {
          job.releases++;
          job.released = entry.amount;
        }
        jobs.set(entry.job_id, job);
      }
      if (page.length < 1000 || page[page.length - 1][0] === last) break;
      from = `(${page[page.length - 1][0]}`;
    }

    const at = { account_id: accountId };
    if (sum !== balance) problems.push({ kind: 'balance_mismatch', ...at, balance, ledger_sum: sum });
    if (balance < 0) problems.push({ kind: 'negative_balance', ...at, balance });
    for (const [jobId, job] of jobs) {
      const p = { ...at, job_id: jobId };
      if (job.holds > 1) problems.push({ kind: 'hold_recorded_twice', ...p });
      if (job.holds === 0) problems.push({ kind: 'close_without_hold', ...p });
      if (job.settles > 0 && job.releases > 0) problems.push({ kind: 'hold_settled_and_released', ...p });
      else if (job.settles > 1 || job.releases > 1) problems.push({ kind: 'hold_closed_twice', ...p });
      if (job.releases > 0 && job.released !== job.held) problems.push({ kind: 'release_amount_mismatch', ...p, held: job.held, released: job.released });
      // a refund comes with its settle, and the two add up to what was held
      if (job.refunds > 0 && (job.refunds > 1 || job.settles !== 1 || job.charged + job.refunded !== job.held)) problems.push({ kind: 'release_amount_mismatch', ...p, held: job.held, released: job.refunded });
      const openInLedger = job.holds > 0 && job.settles + job.releases === 0;
      if (openInLedger && !openSet.has(jobId)) problems.push({ kind: 'open_hold_mismatch', ...p, detail: 'open in the ledger but not in the open holds' });
      if (!openInLedger && openSet.has(jobId)) problems.push({ kind: 'open_hold_mismatch', ...p, detail: 'in the open holds but closed (or absent) in the ledger' });
    }
    for (const jobId of openSet) {
      if (!jobs.has(jobId)) problems.push({ kind: 'open_hold_mismatch', ...at, job_id: jobId, detail: 'in the open holds but not in the ledger' });
    }
    return count;
  }

  private async holdAccount(jobId: string): Promise<string | null> {
    // The hold's account never changes, so reading it before the script that closes the hold is safe.
    return this.redis.hget(this.keys.hold(jobId), 'account_id');
  }
}

function toHold(h: Record<string, string>): Hold | undefined {
  if (!h.account_id) return undefined;
  return {
    job_id: h.job_id,
    account_id: h.account_id,
    amount: Number(h.amount),
    state: h.state as HoldState,
    created_at: iso(Number(h.created_at)),
    ...(h.closed_at ? { closed_at: iso(Number(h.closed_at)) } : {}),
    ...(h.reason ? { reason: h.reason } : {}),
    ...(h.charged !== undefined ? { charged: Number(h.charged) } : {}),
  };
}

function toEntry(id: string, fields: string[]): LedgerEntry {
  const f: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) f[fields[i]] = fields[i + 1];
  return {
    id,
    type: f.type as LedgerEntryType,
    amount: Number(f.amount),
    ...(f.job_id ? { job_id: f.job_id } : {}),
    ...(f.reason ? { reason: f.reason } : {}),
    ...(f.charged ? { charged: Number(f.charged) } : {}),
    created_at: iso(Number(f.at)),
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function checkId(name: string, value: string): void {
  if (typeof value !== 'string' || !/^[^\s:*?[\]]{1,200}$/.test(value)) {
    throw new CreditsInputError(`${name} must be 1 to 200 characters without spaces, ':' or glob characters`);
  }
}

function checkAmount(amount: number, opts: { positive: boolean }): void {
  if (!Number.isSafeInteger(amount) || (opts.positive && amount <= 0)) {
    throw new CreditsInputError(`amount must be ${opts.positive ? 'a positive' : 'an'} integer number of micro-credits (got ${amount})`);
  }
}

function checkReason(reason: string): void {
  if (typeof reason !== 'string' || reason.length === 0 || reason.length > MAX_REASON_LENGTH) {
    throw new CreditsInputError(`reason must be 1 to ${MAX_REASON_LENGTH} characters`);
  }
}

function unexpected(op: string, reply: unknown): Error {
  return new Error(`credits ${op}: unexpected reply from Redis: ${JSON.stringify(reply)}`);
}
