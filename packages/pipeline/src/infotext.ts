/**
 * The sampler as AUTOMATIC1111 names it in its infotext (the PNG `parameters` text that A1111, its
 * png-info and most image tools read): sdq's sampler names, and the scheduler classes an engine's own
 * config names when no sampler was asked for.
 */
const A1111_NAMES: Readonly<Record<string, string>> = {
  K_EULER_ANCESTRAL: 'Euler a',
  EulerAncestralDiscreteScheduler: 'Euler a',
  K_EULER: 'Euler',
  EulerDiscreteScheduler: 'Euler',
  // SD3's flow sampler is A1111's (Forge's) Euler
  FLOW_MATCH_EULER: 'Euler',
  FlowMatchEulerDiscreteScheduler: 'Euler',
  K_LMS: 'LMS',
  LMSDiscreteScheduler: 'LMS',
  K_HEUN: 'Heun',
  HeunDiscreteScheduler: 'Heun',
  K_DPM_2: 'DPM2',
  KDPM2DiscreteScheduler: 'DPM2',
  K_DPM_2_ANCESTRAL: 'DPM2 a',
  KDPM2AncestralDiscreteScheduler: 'DPM2 a',
  K_DPMPP_2S_ANCESTRAL: 'DPM++ 2S a',
  DPMSolverSinglestepScheduler: 'DPM++ 2S a',
  K_DPMPP_2M: 'DPM++ 2M',
  DPMSolverMultistepScheduler: 'DPM++ 2M',
  K_DPMPP_2M_KARRAS: 'DPM++ 2M Karras',
  K_DPMPP_SDE: 'DPM++ SDE',
  DPMSolverSDEScheduler: 'DPM++ SDE',
  DDIM: 'DDIM',
  DDIMScheduler: 'DDIM',
  PNDM: 'PLMS',
  PNDMScheduler: 'PLMS',
  LCM: 'LCM',
  LCMScheduler: 'LCM',
  DDPM: 'DDPM',
  DDPMScheduler: 'DDPM',
};

export function a1111SamplerName(sampler: string, config?: { use_karras_sigmas?: unknown }): string {
  const name = Object.hasOwn(A1111_NAMES, sampler) ? A1111_NAMES[sampler] : sampler;
  // an engine whose own DPM++ 2M config turns Karras sigmas on is A1111's DPM++ 2M Karras
  return name === 'DPM++ 2M' && config?.use_karras_sigmas === true ? 'DPM++ 2M Karras' : name;
}
