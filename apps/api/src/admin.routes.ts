/**
 * /v1/admin: accounts, keys and credits for operators (ADMIN_TOKEN, or an API key with scope admin).
 * The CLI (`npx sdq`) does the same through accounts.service.ts.
 */
import { type Request, type Response, Router } from 'express';
import { CreateAccountRequest, CreateKeyRequest, GrantCreditsRequest, ServiceError, SetTierRequest } from '@sdq/contracts';
import { toCredits } from '@sdq/credits';
import type { AccountsService } from './accounts.service';
import { jsonBody } from './body';
import type { EnginePresence } from './presence';
import { parseBody } from './validate';

export function adminRoutes(accounts: AccountsService, presence: Pick<EnginePresence, 'list'>, tiers: Map<string, number>): Router {
  const knownTier = (tier: string | undefined) => {
    if (tier !== undefined && !tiers.has(tier)) throw new ServiceError('bad_request', `tier: ${tier} is not one of the tiers (${[...tiers.keys()].join(', ')}; PRIORITY_TIERS)`, { field: 'tier' });
    return tier;
  };
  const router = Router();
  router.use(jsonBody('64kb'));
  router.get(
    '/workers',
    async (_req, res) => {
      res.json({ data: await presence.list() });
    },
  );
  router.post(
    '/accounts',
    async (req, res) => {
      const body = parseBody(CreateAccountRequest, req.body);
      const { account, balance, key, apiKey } = await accounts.create(body.name, { credits: body.credits, email: body.email, tier: knownTier(body.tier) });
      res.status(201).json({ ...account, credits: toCredits(balance), key_id: key.id, api_key: apiKey });
    },
  );
  router.get(
    '/accounts',
    async (_req, res) => {
      res.json({ data: await accounts.list() });
    },
  );
  router.get(
    '/accounts/:id',
    async (req, res) => {
      const account = await accounts.get(String(req.params.id));
      res.json({ ...account, credits: toCredits(await accounts.balance(account.id)) });
    },
  );
  router.put(
    '/accounts/:id/tier',
    async (req, res) => {
      const { tier } = parseBody(SetTierRequest, req.body);
      const account = await accounts.setTier(String(req.params.id), knownTier(tier)!);
      res.json({ ...account, credits: toCredits(await accounts.balance(account.id)) });
    },
  );
  router.post(
    '/accounts/:id/credits',
    async (req, res) => {
      const body = parseBody(GrantCreditsRequest, req.body);
      // An Idempotency-Key makes the grant once-only: a retried request grants nothing more.
      const tag = req.get('idempotency-key');
      const result = await accounts.grant(String(req.params.id), body.amount, { reason: body.reason, tag });
      res.status(result.duplicate ? 200 : 201).json(result);
    },
  );
  router.get(
    '/accounts/:id/ledger',
    async (req, res) => {
      res.json(await accounts.ledger(String(req.params.id), req.query));
    },
  );
  router.post(
    '/accounts/:id/keys',
    async (req, res) => {
      const body = parseBody(CreateKeyRequest, req.body);
      const { key, apiKey } = await accounts.createKey(String(req.params.id), body.scope);
      res.status(201).json({ ...key, api_key: apiKey });
    },
  );
  router.get(
    '/accounts/:id/keys',
    async (req, res) => {
      res.json({ data: await accounts.listKeys(String(req.params.id)) });
    },
  );
  router.delete(
    '/keys/:id',
    async (req, res) => {
      const key = await accounts.revokeKey(String(req.params.id));
      if (!key) throw new ServiceError('not_found', `key ${req.params.id} not found`);
      res.json(key);
    },
  );
  return router;
}
