// Stability's sampler names (the v1 API's "sampler" field) and the diffusers scheduler each one means:
// every name of Stability's v1 list, plus PNDM, LCM, a Karras variant and SD3's flow sampler.
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
  // k-diffusion's sample_dpm_2_ancestral: K_DPM_2 aimed at the ancestral sigma, then fresh noise.
  K_DPM_2_ANCESTRAL: { overrides: { _class_name: 'KDPM2AncestralDiscreteScheduler', use_karras_sigmas: false } },
  // k-diffusion's sample_lms: linear multistep over the last four slopes.
  K_LMS: { overrides: { _class_name: 'LMSDiscreteScheduler', use_karras_sigmas: false } },
  // DPM-Solver++ in single-step pairs with fresh noise at every update (diffusers' sde-dpmsolver++),
  // the nearest diffusers has to k-diffusion's sample_dpmpp_2s_ancestral.
  K_DPMPP_2S_ANCESTRAL: {
    overrides: {
      _class_name: 'DPMSolverSinglestepScheduler',
      algorithm_type: 'sde-dpmsolver++',
      solver_order: 2,
      solver_type: 'midpoint',
      lower_order_final: true,
      final_sigmas_type: 'zero',
      use_karras_sigmas: false,
    },
  },
  // k-diffusion's sample_dpmpp_sde, two model calls per step but the last (order 2); its Brownian-tree
  // noise is drawn from the job's seeded generator instead (dpm-solver-sde.ts says how).
  K_DPMPP_SDE: { overrides: { _class_name: 'DPMSolverSDEScheduler', use_karras_sigmas: false } },
  // SD3's rectified flow: the only sampler of flow-matching families, never of the others.
  FLOW_MATCH_EULER: { overrides: { _class_name: 'FlowMatchEulerDiscreteScheduler' } },
} satisfies Record<string, SamplerScheduler>;

export type SamplerName = keyof typeof SAMPLER_SCHEDULERS;

/** The sampler names sdq accepts, in Stability's spelling. */
export const SAMPLERS = Object.keys(SAMPLER_SCHEDULERS) as SamplerName[];

/**
 * The sampler a model's own scheduler_config.json amounts to (what a request naming none runs), or
 * undefined when sdq has no name for its class. DPM++ 2M tells its Karras variant by use_karras_sigmas.
 */
export function samplerOfSchedulerConfig(config: SchedulerConfig): SamplerName | undefined {
  const matches = SAMPLERS.filter((name) => (SAMPLER_SCHEDULERS[name].overrides as SchedulerConfig)._class_name === config._class_name);
  const karras = config.use_karras_sigmas === true;
  return matches.find((name) => ((SAMPLER_SCHEDULERS[name].overrides as SchedulerConfig).use_karras_sigmas ?? false) === karras) ?? matches[0];
}

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
