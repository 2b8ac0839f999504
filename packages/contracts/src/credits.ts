/**
 * Credits at the API's edge: the request and response shapes of balances, the ledger, prices, dry runs,
 * operator grants and key scopes. Amounts here are decimal credits as clients see them; inside sdq they
 * are integer micro-credits (@sdq/credits). The API validates with these and /openapi.json is generated
 * from them.
 */
import { z } from 'zod';
import { SAFETY_MODES } from './jobs';

/**
 * What an API key may do, each including the one before: `read` (engines, jobs, events, balance, account,
 * ledger), `generate` (also create and cancel jobs; the default), `admin` (also /v1/admin).
 */
export const KEY_SCOPES = ['read', 'generate', 'admin'] as const;
export type KeyScope = (typeof KEY_SCOPES)[number];
export const DEFAULT_KEY_SCOPE: KeyScope = 'generate';

/** True when a key of scope `has` may do what needs `needs`. */
export function scopeAllows(has: KeyScope, needs: KeyScope): boolean {
  return KEY_SCOPES.indexOf(has) >= KEY_SCOPES.indexOf(needs);
}

/** A decimal number of credits: at most 6 decimal places (checked exactly by the API). */
const credits = (description: string) => z.number().finite().describe(description);

const TierName = z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'must be a tier name (PRIORITY_TIERS)');

/** PUT /v1/admin/accounts/{id}/tier. */
export const SetTierRequest = z.object({ tier: TierName }).meta({ id: 'SetTierRequest' });

/** PUT /v1/admin/accounts/{id}/safety: the account's own safety mode, or null for SAFETY_MODE's. */
export const SetSafetyRequest = z
  .object({ mode: z.enum(SAFETY_MODES).nullable().describe('blur, black, refuse, flag or off; null: the account follows SAFETY_MODE again.') })
  .meta({ id: 'SetSafetyRequest' });

/** C0 and C1 controls, DEL, and the bidirectional overrides: text that can rewrite a terminal or reorder a line. */
const CONTROL_CHARACTERS = /[\p{Cc}\u202a-\u202e\u2066-\u2069]/u;

/** Why a display name is refused, or undefined: names reach terminals and logs, so none may carry controls. */
export function displayNameProblem(name: string): string | undefined {
  return CONTROL_CHARACTERS.test(name) ? 'must not contain control characters (escapes, newlines, NUL, bidi overrides)' : undefined;
}

/** A name as a terminal may print it: controls written as \u escapes, everything else as it is. */
export function printableName(name: string): string {
  return name.replace(new RegExp(CONTROL_CHARACTERS.source, 'gu'), (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}

export const CreateAccountRequest = z
  .object({
    name: z
      .string()
      .trim()
      .min(1)
      .max(200)
      .refine((name) => !displayNameProblem(name), { message: displayNameProblem('\u0000')! }),
    email: z.email().max(320).optional().describe("Shown as the account's e-mail (GET /v1/user/account). Default: none (\"\")."),
    credits: credits('Starting balance in credits (>= 0, at most 6 decimal places). Omitted: the starting grant (STARTING_CREDITS, default 25).')
      .min(0)
      .optional(),
    tier: TierName.optional().describe('Its priority tier, one of PRIORITY_TIERS. Default: DEFAULT_TIER.'),
  })
  .meta({ id: 'CreateAccountRequest' });
export type CreateAccountRequest = z.infer<typeof CreateAccountRequest>;

export const CreateKeyRequest = z
  .object({ scope: z.enum(KEY_SCOPES).default(DEFAULT_KEY_SCOPE).describe('read, generate (default) or admin.') })
  .meta({ id: 'CreateKeyRequest' });

export const GrantCreditsRequest = z
  .object({
    amount: credits('Credits to add; negative takes credits away (refused if the balance would go below zero). Not 0.'),
    reason: z.string().trim().min(1).max(500).optional().describe('Recorded in the ledger. Default "operator grant" / "operator adjustment".'),
  })
  .meta({ id: 'GrantCreditsRequest' });
export type GrantCreditsRequest = z.infer<typeof GrantCreditsRequest>;

export const LedgerQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional(),
});

export const BalanceResponse = z.object({ credits: z.number().describe('Decimal credits, exact to the micro-credit.') }).meta({ id: 'Balance' });

/** GET /v1/user/account, shaped like Stability's (`id`, `email`, `profile_picture`, `organizations`). */
export const AccountResponse = z
  .object({
    id: z.string(),
    name: z.string(),
    email: z.string().describe('The e-mail the operator gave when creating the account, or "" (a string always, as Stability\'s spec requires).'),
    profile_picture: z.string().nullable().describe('Always null.'),
    organizations: z.array(z.object({ id: z.string(), name: z.string(), role: z.string(), is_default: z.boolean() })).describe('Always empty.'),
    created_at: z.string(),
    credits: z.number(),
    /** The key that made the call. */
    key: z.object({ id: z.string(), scope: z.enum(KEY_SCOPES) }),
  })
  .meta({ id: 'Account' });

export const LEDGER_TYPES = ['grant', 'hold', 'settle', 'release', 'adjust'] as const;

export const LedgerEntryObject = z
  .object({
    id: z.string().describe('Increasing; the cursor of the next page.'),
    type: z.enum(LEDGER_TYPES),
    amount: z.number().describe('Signed credits moved: hold < 0, release > 0, settle 0, grant > 0, adjust either.'),
    job_id: z.string().nullable(),
    reason: z.string().nullable(),
    charged: z.number().nullable().describe('settle only: the credits charged for the job.'),
    created_at: z.string(),
  })
  .meta({ id: 'LedgerEntry' });
export type LedgerEntryObject = z.infer<typeof LedgerEntryObject>;

export const LedgerPage = z.object({ data: z.array(LedgerEntryObject), next_cursor: z.string().nullable() }).meta({ id: 'LedgerPage' });

/** An engine's prices in GET /v1/engines/list (fields beside Stability's id, name, description, type). */
export const EnginePricing = z
  .object({
    kind: z.enum(['generation', 'upscale']),
    /** generation: credits per image = max(min_credits, k * (width * height - offset) * steps / 30). */
    k: z.number().nullable(),
    offset: z.number().nullable(),
    min_credits: z.number().nullable(),
    /** upscale: flat credits per image. */
    upscale: z.number().nullable(),
    /** generation priced per image (SDXL): credits per image at 30 steps, whatever its size; fewer than min_steps cost as min_steps. */
    per_image: z.number().nullable(),
    min_steps: z.number().nullable(),
    /** With per_image: true = the same price whatever the steps (SD3). */
    flat: z.boolean().nullable(),
    /** generation: credits added to each image per LoRA the request applies (PRICES_FILE's `lora`, default 0). */
    per_lora: z.number().nullable(),
    /** The price of one image at the engine's native size and 30 steps (generation) or of one upscale. */
    example: z.object({ width: z.number().nullable(), height: z.number().nullable(), steps: z.number().nullable(), credits: z.number(), display: z.string() }),
  })
  .meta({ id: 'EnginePricing' });

/** What an engine can do (sdq's addition to Stability's engine fields). */
export const EngineCapabilities = z
  .object({
    family: z.string().nullable().describe('stable-diffusion, stable-diffusion-xl; null for an upscaler'),
    modes: z.array(z.enum(['text-to-image', 'image-to-image', 'masking', 'upscale'])),
    native_width: z.number().nullable(),
    native_height: z.number().nullable(),
    sizes: z
      .object({ step: z.number(), min_side: z.number(), max_pixels: z.number(), allowed: z.array(z.string()).nullable() })
      .nullable()
      .describe('Output sizes accepted: exactly `allowed` ("WxH") when set, else multiples of step with each side >= min_side and width x height <= max_pixels.'),
    samplers: z.array(z.string()).nullable(),
    defaults: z.object({ steps: z.number().nullable(), cfg_scale: z.number().nullable(), sampler: z.string().nullable() }),
    workers: z.number().int().describe('Live workers that take its jobs (it loaded, or loaded when a job for it waits); 0 = requests are 503 engine_unavailable (with REQUIRE_WORKER=true) unless a worker is loading it.'),
    loaded_workers: z.number().int().describe('Live workers that have it loaded now (a job starts at once on a free one).'),
    state: z
      .enum(['ready', 'loading', 'available', 'failed', 'unserved'])
      .describe('ready: a live worker has it loaded; loading: one is loading it; available: on disk, no worker has it loaded, one will load it when a request comes (the first waits for the load); failed: it could not be loaded (why: GET /v1/admin/workers); unserved: no live worker may serve it (none runs, or it is not in their ENGINES). Requests for ready, loading and available engines are queued; failed and unserved are 503 engine_unavailable with REQUIRE_WORKER=true.'),
  })
  .meta({ id: 'EngineCapabilities' });

export const EngineObject = z
  .object({
    id: z.string(),
    name: z.string(),
    description: z.string(),
    type: z.literal('PICTURE'),
    pricing: EnginePricing,
    capabilities: EngineCapabilities,
    alias_of: z.string().nullable().describe('For an alias (sdq-engine.json aliases, ENGINE_ALIASES): the engine it reaches.'),
  })
  .meta({ id: 'Engine' });

/** `?dry_run=true` on a generation endpoint: what the request would cost. Nothing is queued or charged. */
export const DryRunResponse = z
  .object({
    dry_run: z.literal(true),
    engine: z.string(),
    kind: z.string(),
    credits: z.number().describe('Exact cost: what a real request holds and, on success, charges.'),
    display: z.string().describe('The cost rounded to 2 places, as Stability shows prices.'),
    credits_per_image: z.number(),
    samples: z.number().int(),
    balance: z.number(),
    affordable: z.boolean(),
  })
  .meta({ id: 'DryRun' });
