/**
 * Prices at the API's edge: what a job costs (from @sdq/credits' price table), an engine's prices for
 * GET /v1/engines/list, and the answer of a dry run. Amounts are micro-credits until they leave here.
 */
import type { EngineInfo } from '@sdq/pipeline/engines';
import type { DryRunResponse, EnginePricing, GenerationParams, JobName, NewJobOf } from '@sdq/contracts';
import { type Cost, displayCredits, type PriceTable, toCredits } from '@sdq/credits';
import type { z } from 'zod';
import type { NewJob } from './jobs.service';

/** Steps of the example price an engine shows (Stability quotes prices at 30 steps). */
const EXAMPLE_STEPS = 30;

/** The price table entry an engine is priced by: its manifest's `price`, its own id, else its family's default. */
export function priceEntry(prices: PriceTable, engine: EngineInfo): string {
  if (engine.manifest.price) return engine.manifest.price;
  const familyPrice = engine.kind === 'generation' ? engine.familyPrice : undefined;
  return familyPrice && !prices.names(engine.id) ? familyPrice : engine.id;
}

/** A generation's price: per image (size and steps), times samples. */
const perImage = (prices: PriceTable, entry: string, { width, height, steps, samples, loras }: GenerationParams): Cost => prices.generation(entry, { width, height, steps, samples, loras: loras?.length ?? 0 });

/** Text-to-image: with hires fix, both passes (the first at its size and steps, the second at the target's). */
const textToImage = (prices: PriceTable, entry: string, params: GenerationParams): Cost => {
  const first = perImage(prices, entry, params);
  if (!params.hires) return first;
  const { width, height, steps } = params.hires;
  const second = perImage(prices, entry, { ...params, width, height, steps: steps ?? params.steps, loras: [] });
  return { per_image: first.per_image + second.per_image, samples: first.samples, total: first.total + second.total };
};

/** Each job kind's price rule, by its name: a new kind does not compile until it has one. */
const PRICE_RULES: { [K in JobName]: (prices: PriceTable, entry: string, params: NewJobOf<K>['params']) => Cost } = {
  'text-to-image': textToImage,
  'image-to-image': perImage,
  masking: perImage,
  // an enhance is priced as the generation it runs (its output size, its steps)
  enhance: perImage,
  // an upscale is flat per image
  upscale: (prices, entry) => prices.upscale(entry, { samples: 1 }),
  // an animation is its frames, each priced as a still of its size and steps (the hold covers them all)
  animation: (prices, entry, params) => perImage(prices, entry, { ...params, samples: params.animation.frames }),
};

/** What a job costs, by its kind's price rule. */
export function jobCost(prices: PriceTable, engine: EngineInfo, job: NewJob): Cost {
  const rule = PRICE_RULES[job.kind] as (prices: PriceTable, entry: string, params: NewJob['params']) => Cost;
  return rule(prices, priceEntry(prices, engine), job.params);
}

/** An engine's prices, with one image at its native size and 30 steps as the example. */
export function enginePricing(prices: PriceTable, engine: EngineInfo): z.infer<typeof EnginePricing> {
  const price = prices.engine(priceEntry(prices, engine));
  if (engine.kind === 'upscale') {
    return {
      kind: 'upscale',
      k: null,
      offset: null,
      min_credits: null,
      upscale: toCredits(price.upscale),
      per_image: null,
      min_steps: null,
      flat: null,
      per_lora: null,
      example: { width: null, height: null, steps: null, credits: toCredits(price.upscale), display: displayCredits(price.upscale) },
    };
  }
  const width = engine.nativeWidth;
  const height = engine.nativeHeight;
  const example = prices.generation(priceEntry(prices, engine), { width, height, steps: EXAMPLE_STEPS }).per_image;
  return {
    kind: 'generation',
    k: price.k,
    offset: price.offset,
    min_credits: toCredits(price.min_credits),
    upscale: null,
    per_image: price.per_image === undefined ? null : toCredits(price.per_image),
    flat: price.per_image === undefined ? null : price.flat,
    min_steps: price.per_image === undefined ? null : price.min_steps,
    per_lora: toCredits(price.lora),
    example: { width, height, steps: EXAMPLE_STEPS, credits: toCredits(example), display: displayCredits(example) },
  };
}

export function dryRun(engineId: string, job: NewJob, cost: Cost, balance: number): z.infer<typeof DryRunResponse> {
  return {
    dry_run: true,
    engine: engineId,
    kind: job.kind,
    credits: toCredits(cost.total),
    display: displayCredits(cost.total),
    credits_per_image: toCredits(cost.per_image),
    samples: cost.samples,
    balance: toCredits(balance),
    affordable: balance >= cost.total,
  };
}
