/**
 * Webhook settings and logs of the caller's own account: the default webhook, the signing secret and
 * its rotation, a job's deliveries and redelivery. Deliveries themselves are made by the delivery
 * process (webhooks-main.ts), never here.
 *
 * Scopes: a `read` key sees a job's deliveries (status, like the job itself); the secret and the default
 * webhook are credentials and settings, so reading or changing them needs `generate`.
 */
import { type NextFunction, type Request, type Response, Router } from 'express';
import { issueMessage, issuePath, ServiceError, SetWebhookRequest } from '@sdq/contracts';
import { type DefaultWebhook, validateWebhookUrl, type Webhooks } from '@sdq/webhooks';
import { requireScope } from './auth';
import { jsonBody } from './body';
import type { Config } from './config';
import type { JobsService } from './jobs.service';

function defaultWebhookView(hook: DefaultWebhook | undefined) {
  if (!hook) return { url: null, enabled: false, updated_at: null, disabled_at: null, disabled_reason: null };
  return { ...hook, updated_at: hook.updated_at || null };
}

export function webhookRoutes(deps: { config: Config; jobs: JobsService; webhooks: Webhooks }): Router {
  const { config, jobs, webhooks } = deps;
  const router = Router();
  const json = jsonBody('16kb');
  const generate = requireScope('generate');
  // Secrets and settings are never cached on the way.
  const noStore = (_req: Request, res: Response, next: NextFunction) => {
    res.set('Cache-Control', 'no-store');
    next();
  };

  router.get(
    '/v1/user/webhook',
    generate,
    noStore,
    async (req, res) => {
      res.json(defaultWebhookView(await webhooks.accounts.getDefaultWebhook(req.accountId!)));
    },
  );
  router.put(
    '/v1/user/webhook',
    generate,
    noStore,
    json,
    async (req: Request, res: Response) => {
      if (!req.is('application/json')) throw new ServiceError('invalid_mime_type', `body: this endpoint takes application/json (got ${req.headers['content-type'] ?? 'no Content-Type'})`, { field: 'body' });
      const parsed = SetWebhookRequest.safeParse(req.body ?? {});
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new ServiceError(issue.path[0] === 'url' ? 'invalid_webhook' : 'bad_request', issueMessage(issue, SetWebhookRequest, req.body), { field: issuePath(issue.path) });
      }
      const { url } = parsed.data;
      if (url === null) {
        await webhooks.accounts.removeDefaultWebhook(req.accountId!);
        res.json(defaultWebhookView(undefined));
        return;
      }
      const check = await validateWebhookUrl(url, config.webhooks.allowedHosts);
      if (!check.ok) throw new ServiceError('invalid_webhook', `url: ${check.message}`, { field: 'url' });
      res.json(defaultWebhookView(await webhooks.accounts.setDefaultWebhook(req.accountId!, url)));
    },
  );
  router.delete(
    '/v1/user/webhook',
    generate,
    noStore,
    async (req, res) => {
      await webhooks.accounts.removeDefaultWebhook(req.accountId!);
      res.json(defaultWebhookView(undefined));
    },
  );

  router.get(
    '/v1/webhooks/secret',
    generate,
    noStore,
    async (req, res) => {
      res.json({ secret: await webhooks.accounts.secret(req.accountId!) });
    },
  );
  router.post(
    '/v1/webhooks/secret/rotate',
    generate,
    noStore,
    async (req, res) => {
      const rotated = await webhooks.accounts.rotate(req.accountId!);
      req.log.info('webhook secret rotated');
      res.json(rotated);
    },
  );

  router.get(
    '/v1/jobs/:id/webhooks',
    async (req, res) => {
      const record = await jobs.getOwn(req.accountId!, String(req.params.id));
      res.json({ data: await webhooks.deliveries.list(record.id) });
    },
  );
  router.post(
    '/v1/jobs/:id/webhooks/:delivery/redeliver',
    generate,
    async (req, res) => {
      const record = await jobs.getOwn(req.accountId!, String(req.params.id));
      const delivery = await webhooks.redeliver(record.id, String(req.params.delivery));
      if (!delivery) throw new ServiceError('not_found', `delivery ${req.params.delivery} of job ${record.id} not found`);
      const view = (await webhooks.deliveries.list(record.id)).find((d) => d.id === delivery.id);
      req.log.info({ delivery_id: delivery.id, redelivery_of: delivery.redeliveryOf }, 'webhook redelivery queued');
      res.status(202).json(view);
    },
  );
  return router;
}
