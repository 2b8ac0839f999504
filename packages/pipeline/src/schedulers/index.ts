// The diffusion schedulers, one per file after diffusers, each built from a model's
// scheduler/scheduler_config.json by its _class_name.
import { DDIMScheduler } from './ddim';
import { DDPMScheduler } from './ddpm';
import { DPMSolverMultistepScheduler } from './dpm-solver-multistep';
import { DPMSolverSDEScheduler } from './dpm-solver-sde';
import { DPMSolverSinglestepScheduler } from './dpm-solver-singlestep';
import { EulerDiscreteScheduler } from './euler';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral';
import { FlowMatchEulerDiscreteScheduler } from './flow-match-euler';
import { HeunDiscreteScheduler } from './heun';
import { KDPM2DiscreteScheduler } from './kdpm2';
import { KDPM2AncestralDiscreteScheduler } from './kdpm2-ancestral';
import { LCMScheduler } from './lcm';
import { LMSDiscreteScheduler } from './lms';
import { PNDMScheduler } from './pndm';

import type { Scheduler, SchedulerConfig } from './scheduler';

export type { Rng, Scheduler, SchedulerConfig, StepResult } from './scheduler';

const SCHEDULERS: Record<string, new (config: SchedulerConfig) => Scheduler> = {
  DDIMScheduler,
  DDPMScheduler,
  DPMSolverMultistepScheduler,
  DPMSolverSDEScheduler,
  DPMSolverSinglestepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  FlowMatchEulerDiscreteScheduler,
  HeunDiscreteScheduler,
  KDPM2AncestralDiscreteScheduler,
  KDPM2DiscreteScheduler,
  LCMScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
};

/** The _class_name values createScheduler accepts. */
export const SCHEDULER_CLASSES = Object.keys(SCHEDULERS);

export class UnsupportedSchedulerError extends Error {
  readonly code = 'unsupported_scheduler';

  constructor(readonly className: unknown) {
    super(`unsupported scheduler ${JSON.stringify(className)} (scheduler_config.json _class_name); supported: ${SCHEDULER_CLASSES.join(', ')}`);
    this.name = 'UnsupportedSchedulerError';
  }
}

/** The scheduler named by config._class_name, configured by the rest of config (unknown keys are ignored). */
export function createScheduler(config: SchedulerConfig): Scheduler {
  const className = config._class_name;
  if (typeof className !== 'string' || !Object.hasOwn(SCHEDULERS, className)) throw new UnsupportedSchedulerError(className);
  return new SCHEDULERS[className](config);
}

export {
  DDIMScheduler,
  DDPMScheduler,
  DPMSolverMultistepScheduler,
  DPMSolverSDEScheduler,
  DPMSolverSinglestepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  FlowMatchEulerDiscreteScheduler,
  HeunDiscreteScheduler,
  KDPM2AncestralDiscreteScheduler,
  KDPM2DiscreteScheduler,
  LCMScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
};
export { InvalidSamplerError, SAMPLERS, schedulerConfigForSampler } from './samplers';
export type { SamplerName } from './samplers';
