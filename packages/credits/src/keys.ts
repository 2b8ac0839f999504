/**
 * Every Redis key of this package, in one place. They sit under the deployment's key prefix (the queue
 * prefix, "sdq" by default) beside the API store's `<prefix>:account:<id>` and `<prefix>:job:<id>`, so an
 * account's keys share the `<prefix>:account:<id>:` stem and a hold sits beside its job.
 *
 *   <prefix>:account:<id>:balance       string   micro-credits; always the sum of the ledger
 *   <prefix>:account:<id>:ledger        stream   append-only entries (type, amount, job_id, reason, at, charged)
 *   <prefix>:account:<id>:holds         set      the account's open holds (job ids): jobs queued or running
 *   <prefix>:account:<id>:grant-tags    set      tags of once-only grants ("starting")
 *   <prefix>:hold:<job id>              hash     job_id, account_id, amount, state, created_at, closed_at, reason
 *   <prefix>:holds                      zset     every open hold, scored by creation time (reaper, verify)
 *   <prefix>:ledger-accounts            set      accounts that have a ledger (verify)
 *   <prefix>:idempotency:<id>:<sha256>  hash     an Idempotency-Key's claim: state, body, job_id, token
 *   <prefix>:rate:<subject>             zset     a rate limiter's window (one member per request)
 *
 * Idempotency keys are stored hashed: a client's key may be long or hold any character.
 */
export interface CreditKeys {
  balance(accountId: string): string;
  ledger(accountId: string): string;
  accountHolds(accountId: string): string;
  grantTags(accountId: string): string;
  hold(jobId: string): string;
  openHolds: string;
  ledgerAccounts: string;
  idempotency(accountId: string, keyHash: string): string;
  rate(subject: string): string;
}

export function creditKeys(prefix: string): CreditKeys {
  if (!prefix) throw new Error('a key prefix is required');
  return {
    balance: (id) => `${prefix}:account:${id}:balance`,
    ledger: (id) => `${prefix}:account:${id}:ledger`,
    accountHolds: (id) => `${prefix}:account:${id}:holds`,
    grantTags: (id) => `${prefix}:account:${id}:grant-tags`,
    hold: (jobId) => `${prefix}:hold:${jobId}`,
    openHolds: `${prefix}:holds`,
    ledgerAccounts: `${prefix}:ledger-accounts`,
    idempotency: (id, keyHash) => `${prefix}:idempotency:${id}:${keyHash}`,
    rate: (subject) => `${prefix}:rate:${subject}`,
  };
}
