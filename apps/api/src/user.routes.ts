/** /v1/user: the caller's own account, balance and ledger (any scope may read them), as Stability's. */
import { type Request, type Response, Router } from 'express';
import { toCredits } from '@sdq/credits';
import type { AccountsService } from './accounts.service';

export function userRoutes(accounts: AccountsService): Router {
  const router = Router();
  router.get(
    '/v1/user/balance',
    async (req, res) => {
      res.json({ credits: toCredits(await accounts.balance(req.accountId!)) });
    },
  );
  router.get(
    '/v1/user/account',
    async (req, res) => {
      const account = await accounts.get(req.accountId!);
      res.json({
        id: account.id,
        name: account.name,
        email: account.email,
        profile_picture: null,
        organizations: [],
        created_at: account.created_at,
        credits: toCredits(await accounts.balance(account.id)),
        key: { id: req.keyId!, scope: req.scope! },
      });
    },
  );
  router.get(
    '/v1/user/ledger',
    async (req, res) => {
      res.json(await accounts.ledger(req.accountId!, req.query));
    },
  );
  return router;
}
