// Stability's sampler names (the v1 API's "sampler" field) and the diffusers scheduler each one means.
// The rest of Stability's list (K_DPMPP_2S_ANCESTRAL, K_DPM_2_ANCESTRAL, K_LMS, K_DPMPP_SDE)
// is not supported yet and is rejected like any unknown name.
import type { SchedulerConfig } from './scheduler';

interface SamplerScheduler {
  /** Used only where the model's config says nothing. */
  defaults?: SchedulerConfig;
  /** Always win over the model's config. */
  overrides: SchedulerConfig;
}

const DPMPP_2M = {
  _class_name: 'DPMSolverMultistepScheduler',
  algorithm_type: 'dpmsolver++',
  solver_order: 2,
  solver_type: 'midpoint',
  lower_order_final: true,
  euler_at_final: false,
  final_sigmas_type: 'zero',
};

const SAMPLER_SCHEDULERS = {
  // DDIM's own default clip_sample = true clamps latents to ±1, which ruins latent-diffusion images;
  // SD's configs set it false, and a config written for another class (tiny-sd's Euler) says nothing.
  DDIM: { defaults: { clip_sample: false }, overrides: { _class_name: 'DDIMScheduler' } },
  K_EULER: { overrides: { _class_name: 'EulerDiscreteScheduler', use_karras_sigmas: false } },
  K_EULER_ANCESTRAL: { overrides: { _class_name: 'EulerAncestralDiscreteScheduler' } },
  K_DPMPP_2M: { overrides: { ...DPMPP_2M, use_karras_sigmas: false } },
  K_DPMPP_2M_KARRAS: { overrides: { ...DPMPP_2M, use_karras_sigmas: true } },
  PNDM: { overrides: { _class_name: 'PNDMScheduler', skip_prk_steps: true } },
  LCM: { overrides: { _class_name: 'LCMScheduler' } },
  // DDPM's own default clip_sample = true suits pixel-space models only, as DDIM's does.
  DDPM: { defaults: { clip_sample: false }, overrides: { _class_name: 'DDPMScheduler', variance_type: 'fixed_small' } },
  // Two model calls per step but the last (order 2), as k-diffusion's sample_heun.
  K_HEUN: { overrides: { _class_name: 'HeunDiscreteScheduler', use_karras_sigmas: false } },
  // k-diffusion's sample_dpm_2: a midpoint step, two model calls per step but the last (order 2).
  K_DPM_2: { overrides: { _class_name: 'KDPM2DiscreteScheduler', use_karras_sigmas: false } },
  // SD3's rectified flow: the only sampler of flow-matching families, never of the others.
  FLOW_MATCH_EULER: { overrides: { _class_name: 'FlowMatchEulerDiscreteScheduler' } },
} satisfies Record<string, SamplerScheduler>;

export type SamplerName = keyof typeof SAMPLER_SCHEDULERS;

/** The sampler names sdq accepts, in Stability's spelling. */
export const SAMPLERS = Object.keys(SAMPLER_SCHEDULERS) as SamplerName[];

export class InvalidSamplerError extends Error {
  readonly code = 'invalid_sampler';

  constructor(readonly sampler: string) {
    super(`unknown sampler ${JSON.stringify(sampler)}; valid samplers: ${SAMPLERS.join(', ')}`);
    this.name = 'InvalidSamplerError';
  }
}

/**
 * The scheduler config for a sampler: the model's own scheduler_config.json with the sampler's
 * class and options merged over it. No sampler: the model's config as it is.
 */
export function schedulerConfigForSampler(baseConfig: SchedulerConfig, samplerName?: string): SchedulerConfig {
  if (samplerName === undefined) return { ...baseConfig };
  if (!Object.hasOwn(SAMPLER_SCHEDULERS, samplerName)) throw new InvalidSamplerError(samplerName);
  const sampler: SamplerScheduler = SAMPLER_SCHEDULERS[samplerName as SamplerName];
  return { ...sampler.defaults, ...baseConfig, ...sampler.overrides };
}
