/**
 * /v1/admin: accounts, keys and credits for operators (ADMIN_TOKEN, or an API key with scope admin), and
 * model pulls from the Hub (pulls.ts).
 * The CLI (`npx sdq`) does the same through accounts.service.ts.
 */
import { type Request, type Response, Router } from 'express';
import { CreateAccountRequest, CreateKeyRequest, GrantCreditsRequest, PullModelRequest, ServiceError, SetTierRequest, SetSafetyRequest } from '@sdq/contracts';
import { toCredits } from '@sdq/credits';
import type { AccountsService } from './accounts.service';
import { jsonBody } from './body';
import type { EnginePresence } from './presence';
import type { Pulls } from './pulls';
import { parseBody } from './validate';

export function adminRoutes(accounts: AccountsService, presence: Pick<EnginePresence, 'list'>, tiers: Map<string, number>, pulls: Pick<Pulls, 'start' | 'get' | 'remove'>): Router {
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
  // models at run time: a pull from the Hub runs in the background; its state is readable from any API process
  router.post('/models', async (req, res) => {
    const pull = await pulls.start(parseBody(PullModelRequest, req.body));
    res.status(202).location(`/v1/admin/models/pulls/${pull.id}`).json(pull);
  });
  router.delete('/models/:id', async (req, res) => {
    await pulls.remove(String(req.params.id));
    res.json({ id: String(req.params.id), removed: true });
  });
  router.get('/models/pulls/:id', async (req, res) => {
    const pull = await pulls.get(String(req.params.id));
    if (!pull) throw new ServiceError('not_found', `pull ${String(req.params.id).slice(0, 64)} not found`);
    res.json(pull);
  });
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
  router.put(
    '/accounts/:id/safety',
    async (req, res) => {
      const { mode } = parseBody(SetSafetyRequest, req.body);
      const account = await accounts.setSafety(String(req.params.id), mode);
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
