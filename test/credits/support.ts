/**
 * Helpers for the credits suites: accounts made through the admin API, calls with a key, the books read
 * straight from Redis (@sdq/credits' verify), and waits for every hold to close. Built on the e2e
 * support (in-process API, real workers, real Redis and models).
 */
import { Redis } from 'ioredis';
import { CreditsService, type VerifyReport } from '@sdq/credits';
import { ADMIN_TOKEN, type Service, waitFor } from '../e2e/support';

export interface TestAccount {
  id: string;
  api_key: string;
  key_id: string;
}

export async function createAccount(service: Pick<Service, 'url'>, body: { name?: string; credits?: number } = {}): Promise<TestAccount> {
  const res = await admin(service, '/v1/admin/accounts', { method: 'POST', body: JSON.stringify({ name: 'credits', ...body }) });
  if (res.status !== 201) throw new Error(`account creation failed: ${res.status} ${await res.text()}`);
  return (await res.json()) as TestAccount;
}

export function admin(service: Pick<Service, 'url'>, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(service.url + path, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });
}

/** fetch with the key; a string body is sent as JSON. */
export function call(service: Pick<Service, 'url'>, key: string, path: string, init: RequestInit = {}): Promise<Response> {
  const json: Record<string, string> = typeof init.body === 'string' ? { 'content-type': 'application/json' } : {};
  return fetch(service.url + path, { ...init, headers: { authorization: `Bearer ${key}`, ...json, ...(init.headers as Record<string, string>) } });
}

export async function balance(service: Pick<Service, 'url'>, key: string): Promise<number> {
  const res = await call(service, key, '/v1/user/balance');
  if (res.status !== 200) throw new Error(`balance: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { credits: number }).credits;
}

export async function getJob(service: Pick<Service, 'url'>, key: string, id: string): Promise<any> {
  return (await call(service, key, `/v1/jobs/${id}`)).json();
}

/** The books of one deployment (key prefix), read directly from Redis. */
export class Books {
  private readonly redis: Redis;
  readonly credits: CreditsService;

  constructor(url: string, prefix: string) {
    this.redis = new Redis(url, { maxRetriesPerRequest: 1 });
    this.credits = new CreditsService(this.redis, { prefix });
  }

  verify(): Promise<VerifyReport> {
    return this.credits.verify();
  }

  /** Waits until no hold is open, then proves the books. */
  async settled(timeoutMs = 30_000): Promise<VerifyReport> {
    await waitFor(async () => (await this.credits.openHolds()).length === 0, 'every hold to be closed', timeoutMs);
    return this.verify();
  }

  close(): void {
    this.redis.disconnect();
  }
}

/** Micro-credits as the API shows them, for exact comparisons of decimal sums. */
export const micro = (credits: number) => Math.round(credits * 1_000_000);
