// The schedulers against diffusers, as diffusers' own scheduler tests do it: a known dummy model drives
// each scheduler through a whole trajectory. torch cannot be installed here, so the expected values come
// from scripts/reference/schedulers.py, a separate numpy re-derivation of diffusers' maths
// (fixtures/schedulers.json; rerun the script to regenerate). The dummy model and the shared rng:
//   x0[i] = sin(0.01 i) * initNoiseSigma, 64 elements; out = scaleModelInput(x, t) * t / (t + 1)
//   rng.randn(n) = cos(0.37 k) for a counter k = 0, 1, 2, ... running over the whole case
//   img2img cases: setBeginIndex(b); x = addNoise(cos(0.05 i), randn(64), timesteps[b]); run timesteps[b..]
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  createScheduler,
  DDIMScheduler,
  DPMSolverMultistepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  InvalidSamplerError,
  LCMScheduler,
  PNDMScheduler,
  SAMPLERS,
  schedulerConfigForSampler,
  UnsupportedSchedulerError,
  type Rng,
  type Scheduler,
} from '../src/schedulers/index';

interface Summary { sum: number; absSum: number; head: number[] }
interface Case {
  class: string;
  case: string;
  config: Record<string, unknown>;
  steps: number;
  beginIndex?: number;
  timesteps: number[];
  sigmas?: number[];
  initNoiseSigma: number;
  trajectory: Summary[];
  final: number[];
}

const fixture = JSON.parse(readFileSync(new URL('./fixtures/schedulers.json', import.meta.url), 'utf8')) as { cases: Case[] };
const N = 64;
const REL = 1e-4;

function cosRng(): Rng {
  let k = 0;
  return {
    randn(n) {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Math.cos(0.37 * k++);
      return out;
    },
  };
}

function close(actual: number, expected: number, what: string, floor = 1e-9): void {
  const ok = Math.abs(actual - expected) <= REL * Math.abs(expected) + floor;
  if (!ok) expect.fail(`${what}: got ${actual}, expected ${expected} (relative error ${Math.abs(actual - expected) / Math.abs(expected)})`);
}

function dummyModel(scheduler: Scheduler, x: Float32Array, t: number): Float32Array {
  const input = scheduler.scaleModelInput(x, t);
  const out = new Float32Array(input.length);
  for (let i = 0; i < input.length; i++) out[i] = input[i] * (t / (t + 1));
  return out;
}

function run(c: Case): { scheduler: Scheduler; trajectory: Summary[]; final: Float32Array } {
  const scheduler = createScheduler({ _class_name: c.class, ...c.config });
  scheduler.setTimesteps(c.steps);
  const rng = cosRng();
  let timesteps = scheduler.timesteps;
  let x: Float32Array = Float32Array.from({ length: N }, (_, i) => Math.sin(0.01 * i) * scheduler.initNoiseSigma);
  if (c.beginIndex !== undefined) {
    scheduler.setBeginIndex(c.beginIndex);
    const original = Float32Array.from({ length: N }, (_, i) => Math.cos(0.05 * i));
    x = scheduler.addNoise(original, rng.randn(N), timesteps[c.beginIndex]);
    timesteps = timesteps.slice(c.beginIndex);
  }
  const trajectory: Summary[] = [];
  for (const t of timesteps) {
    x = scheduler.step(dummyModel(scheduler, x, t), t, x, rng).prevSample;
    let sum = 0;
    let absSum = 0;
    for (const v of x) [sum, absSum] = [sum + v, absSum + Math.abs(v)];
    trajectory.push({ sum, absSum, head: Array.from(x.subarray(0, 4)) });
  }
  return { scheduler, trajectory, final: x };
}

const label = (c: Case) => `${c.class} ${c.case} ${c.steps} steps${c.beginIndex === undefined ? '' : ` from step ${c.beginIndex}`}`;
const floatTimesteps = new Set([
  'EulerDiscreteScheduler',
  'EulerAncestralDiscreteScheduler',
  'FlowMatchEulerDiscreteScheduler',
  'HeunDiscreteScheduler',
  'KDPM2DiscreteScheduler',
  'KDPM2AncestralDiscreteScheduler',
  'LMSDiscreteScheduler',
  'DPMSolverSDEScheduler',
]);
// Timesteps found from a sigma by float32 log interpolation (Karras, the KDPM2 and SDE midpoints): numpy and V8 may differ by an ulp there.
const interpolatedTimesteps = (c: Case) =>
  c.config.use_karras_sigmas || ['KDPM2DiscreteScheduler', 'KDPM2AncestralDiscreteScheduler', 'DPMSolverSDEScheduler'].includes(c.class);

describe('schedulers follow diffusers over whole trajectories (numpy reference)', () => {
  it.each(fixture.cases.map((c) => [label(c), c] as const))('%s', (_, c) => {
    const { scheduler, trajectory, final } = run(c);
    expect(scheduler.name).toBe(c.class);
    expect(scheduler.timesteps.length).toBe(c.timesteps.length);
    scheduler.timesteps.forEach((t, i) => {
      if (!floatTimesteps.has(c.class)) expect(t, `timesteps[${i}]`).toBe(c.timesteps[i]);
      // Karras timesteps come from float32 log-sigma interpolation, where numpy and V8 may differ by an ulp
      else expect(Math.abs(t - c.timesteps[i]), `timesteps[${i}]`).toBeLessThanOrEqual(interpolatedTimesteps(c) ? 1e-3 : 1e-6);
    });
    if (c.sigmas) c.sigmas.forEach((s, i) => close(scheduler.sigmas![i], s, `sigmas[${i}]`));
    else expect(scheduler.sigmas).toBeUndefined();
    close(scheduler.initNoiseSigma, c.initNoiseSigma, 'initNoiseSigma');
    expect(trajectory.length).toBe(c.trajectory.length);
    trajectory.forEach((got, step) => {
      const want = c.trajectory[step];
      close(got.sum, want.sum, `step ${step} sum`, 1e-6);
      close(got.absSum, want.absSum, `step ${step} absSum`, 1e-6);
      want.head.forEach((v, i) => close(got.head[i], v, `step ${step} x[${i}]`));
    });
    // The latent is float32 and of order 1, so 1e-7 absolute is its resolution: an element that cancels
    // to near 0 (the SDE sampler's) is compared to that, not to its own tiny size.
    c.final.forEach((v, i) => close(final[i], v, `final x[${i}]`, 1e-7));
  });
});

// SD 1.5's scheduler config (its own class is PNDM; these keys are what the other classes read)
const SD15 = {
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  beta_end: 0.012,
  num_train_timesteps: 1000,
  steps_offset: 1,
  timestep_spacing: 'leading',
  clip_sample: false,
  set_alpha_to_one: false,
  skip_prk_steps: true,
};

describe('facts checkable by hand from diffusers source', () => {
  it('DDIM, SD 1.5 config, 50 steps: leading spacing 1000 // 50 = 20 plus steps_offset 1 gives 981, 961, ..., 1', () => {
    const s = new DDIMScheduler(SD15);
    s.setTimesteps(50);
    expect(s.timesteps).toEqual(Array.from({ length: 50 }, (_, i) => 981 - 20 * i));
  });

  it('PNDM (PLMS), SD 1.5 config, 50 steps: the second timestep is evaluated twice', () => {
    const s = new PNDMScheduler(SD15);
    s.setTimesteps(50);
    expect(s.timesteps.slice(0, 4)).toEqual([981, 961, 961, 941]);
    expect(s.timesteps.length).toBe(51);
    expect(s.timesteps.at(-1)).toBe(1);
  });

  it('trailing spacing with 4 steps gives 999, 749, 499, 249', () => {
    for (const make of [
      (c: Record<string, unknown>) => new DDIMScheduler(c),
      (c: Record<string, unknown>) => new EulerDiscreteScheduler(c),
      (c: Record<string, unknown>) => new EulerAncestralDiscreteScheduler(c),
      (c: Record<string, unknown>) => new DPMSolverMultistepScheduler(c),
    ]) {
      const s = make({ ...SD15, timestep_spacing: 'trailing' });
      s.setTimesteps(4);
      expect(s.timesteps, s.name).toEqual([999, 749, 499, 249]);
    }
  });

  it('linspace spacing rounds halves to even like numpy: 999 * 4/24 = 166.5 -> 166', () => {
    const s = new DDIMScheduler({ ...SD15, timestep_spacing: 'linspace' });
    s.setTimesteps(25);
    expect(s.timesteps.at(-5)).toBe(166);
  });

  it('Euler, SD 1.5 config: sigma_max = 14.6146; initNoiseSigma is sqrt(sigma_max² + 1) only over the full table', () => {
    const s = new EulerDiscreteScheduler(SD15);
    // before setTimesteps the table reaches t = 999; leading spacing adds the +1
    expect(s.initNoiseSigma).toBeCloseTo(Math.sqrt(14.6146 ** 2 + 1), 3);
    expect(s.initNoiseSigma).toBeCloseTo(14.6488, 3);
    // after setTimesteps(50) the top timestep is 981, whose sigma is 13.1204
    s.setTimesteps(50);
    expect(s.sigmas[0]).toBeCloseTo(13.1204, 3);
    expect(s.initNoiseSigma).toBeCloseTo(Math.sqrt(13.1204 ** 2 + 1), 3);
    // trailing and linspace start at t = 999 and use the bare sigma
    const trailing = new EulerDiscreteScheduler({ ...SD15, timestep_spacing: 'trailing' });
    trailing.setTimesteps(50);
    expect(trailing.initNoiseSigma).toBeCloseTo(14.6146, 3);
    expect(trailing.sigmas.length).toBe(51);
    expect(trailing.sigmas.at(-1)).toBe(0);
  });

  it('LCM with original_inference_steps 50 and 4 steps gives 999, 759, 499, 259', () => {
    const s = new LCMScheduler(SD15);
    s.setTimesteps(4);
    expect(s.timesteps).toEqual([999, 759, 499, 259]);
  });

  it('LCM boundary condition at t = 0: c_skip = 1 and c_out = 0, so the sample passes through', () => {
    const s = new LCMScheduler(SD15);
    s.setTimesteps(1);
    s.timesteps = [0];
    const x = Float32Array.of(0.5, -2, 3);
    const { prevSample } = s.step(Float32Array.of(9, 9, 9), 0, x);
    expect(Array.from(prevSample)).toEqual([0.5, -2, 3]);
  });

  it('DPM++ 2M Karras, SD 1.5 config, 25 steps: sigmas run from 14.6146 to 0.0292 and then 0', () => {
    const s = new DPMSolverMultistepScheduler({ ...SD15, use_karras_sigmas: true });
    s.setTimesteps(25);
    expect(s.sigmas![0]).toBeCloseTo(14.6146, 3);
    expect(s.sigmas![24]).toBeCloseTo(0.0292, 4);
    expect(s.sigmas![25]).toBe(0);
    expect(s.timesteps[0]).toBe(999);
    expect(s.timesteps.at(-1)).toBe(0);
  });

  it('a timestep that occurs twice starts at its second occurrence, unless setBeginIndex says otherwise', () => {
    const schedule = () => {
      const s = new DPMSolverMultistepScheduler({ ...SD15, use_karras_sigmas: true });
      s.setTimesteps(50);
      return s;
    };
    const timesteps = schedule().timesteps;
    const first = timesteps.findIndex((t, i) => timesteps.indexOf(t, i + 1) > i);
    expect(first).toBeGreaterThan(0); // 50 Karras steps repeat t = 1
    const second = timesteps.indexOf(timesteps[first], first + 1);
    const x = Float32Array.from({ length: 8 }, (_, i) => Math.sin(i));
    const stepFrom = (s: DPMSolverMultistepScheduler) => Array.from(s.step(x, timesteps[first], x).prevSample);
    const byTimestep = stepFrom(schedule());
    const atSecond = schedule();
    atSecond.setBeginIndex(second);
    const atFirst = schedule();
    atFirst.setBeginIndex(first);
    expect(byTimestep).toEqual(stepFrom(atSecond));
    expect(byTimestep).not.toEqual(stepFrom(atFirst));
  });

  it('addNoise without a begin index uses the sigma of timestep t', () => {
    const s = new EulerDiscreteScheduler(SD15);
    s.setTimesteps(10);
    const noisy = s.addNoise(Float32Array.of(1, 2), Float32Array.of(1, -1), s.timesteps[3]);
    expect(noisy[0]).toBeCloseTo(1 + s.sigmas![3], 5);
    expect(noisy[1]).toBeCloseTo(2 - s.sigmas![3], 5);
  });
});

describe('the scheduler contract', () => {
  const classes = ['PNDMScheduler', 'DDIMScheduler', 'DDPMScheduler', 'EulerDiscreteScheduler', 'EulerAncestralDiscreteScheduler', 'DPMSolverMultistepScheduler', 'LCMScheduler', 'FlowMatchEulerDiscreteScheduler'];

  it.each(classes)('%s: scaleModelInput returns a new array and leaves its input alone', (className) => {
    const s = createScheduler({ _class_name: className, ...SD15 });
    s.setTimesteps(10);
    const x = Float32Array.of(1, 2, 3);
    const scaled = s.scaleModelInput(x, s.timesteps[0]);
    expect(scaled).not.toBe(x);
    expect(Array.from(x)).toEqual([1, 2, 3]);
  });

  it.each(classes)('%s: order 1, unknown config keys ignored, defaults for missing keys', (className) => {
    const s = createScheduler({ _class_name: className, _diffusers_version: '0.30.0', not_a_key: 42 });
    expect(s.name).toBe(className);
    expect(s.order).toBe(1);
  });

  it('Heun is order 2: every timestep but the first twice, the corrector ends each pair', () => {
    const s = createScheduler({ _class_name: 'HeunDiscreteScheduler', ...SD15 });
    s.setTimesteps(4);
    expect(s.order).toBe(2);
    expect(s.timesteps).toHaveLength(7);
    expect(s.timesteps[1]).toBe(s.timesteps[2]);
    expect(s.sigmas).toHaveLength(8);
    expect(s.sigmas!.at(-1)).toBe(0);
  });

  it('DDPM adds noise of the posterior variance except at t = 0, and needs an rng for it', () => {
    const s = createScheduler({ _class_name: 'DDPMScheduler', ...SD15, clip_sample: false });
    s.setTimesteps(10);
    const x = Float32Array.of(0.5, -0.5);
    expect(() => s.step(x, s.timesteps[0], x)).toThrow(/needs an rng/);
    // At t = 0 (the last step of a leading grid with steps_offset 0) no noise is drawn.
    const last = createScheduler({ _class_name: 'DDPMScheduler', clip_sample: false });
    last.setTimesteps(10);
    expect(last.timesteps.at(-1)).toBe(0);
    const drawn: number[] = [];
    const rng = { randn: (n: number) => (drawn.push(n), new Float32Array(n)) };
    last.step(x, 0, x, rng);
    expect(drawn).toEqual([]);
    last.step(x, last.timesteps[0], x, rng);
    expect(drawn).toEqual([2]);
  });

  it('K_LMS: the first step has only one slope, so it is the Euler step', () => {
    const lms = createScheduler({ _class_name: 'LMSDiscreteScheduler', ...SD15 });
    const euler = createScheduler({ _class_name: 'EulerDiscreteScheduler', ...SD15 });
    lms.setTimesteps(10);
    euler.setTimesteps(10);
    const x = Float32Array.from({ length: 8 }, (_, i) => i - 3.5);
    const out = Float32Array.from({ length: 8 }, (_, i) => Math.sin(i));
    const a = lms.step(out, lms.timesteps[0], x).prevSample;
    const b = euler.step(out, euler.timesteps[0], x).prevSample;
    a.forEach((v, i) => close(v, b[i], `x[${i}]`, 1e-6));
    // the second step weighs two different slopes (the basis sums to 1, so equal slopes would be Euler's)
    const out2 = Float32Array.from({ length: 8 }, (_, i) => Math.cos(i));
    const a2 = lms.step(out2, lms.timesteps[1], a).prevSample;
    const b2 = euler.step(out2, euler.timesteps[1], a).prevSample;
    expect(Math.max(...a2.map((v, i) => Math.abs(v - b2[i])))).toBeGreaterThan(1e-4);
  });

  it('K_DPMPP_SDE draws one latent-sized normal per noisy half-step and none on the last (Euler) step', () => {
    const s = createScheduler({ _class_name: 'DPMSolverSDEScheduler', ...SD15 });
    s.setTimesteps(5);
    expect(s.order).toBe(2);
    expect(s.timesteps).toHaveLength(9);
    const drawn: number[] = [];
    const rng = { randn: (n: number) => (drawn.push(n), new Float32Array(n).fill(0.5)) };
    let x: Float32Array = Float32Array.from({ length: 6 }, (_, i) => i / 6);
    for (const t of s.timesteps) x = s.step(s.scaleModelInput(x, t), t, x, rng).prevSample;
    expect(drawn).toEqual(Array(8).fill(6));
    expect(x.every(Number.isFinite)).toBe(true);
  });

  it('2S ancestral: integer timesteps on numpy\'s grid and fresh noise at every step', () => {
    const s = createScheduler(schedulerConfigForSampler(SD15, 'K_DPMPP_2S_ANCESTRAL'));
    s.setTimesteps(6);
    // numpy's linspace(0, 999, 7) rounded half to even, the last dropped, descending
    expect(s.timesteps).toEqual([999, 832, 666, 500, 333, 166]);
    const drawn: number[] = [];
    const rng = { randn: (n: number) => (drawn.push(n), new Float32Array(n)) };
    let x: Float32Array = Float32Array.of(0.3, -0.7);
    for (const t of s.timesteps) x = s.step(x, t, x, rng).prevSample;
    expect(drawn).toEqual(Array(6).fill(2));
  });

  it('the ancestral and SDE samplers refuse to step without an rng', () => {
    for (const sampler of ['K_DPM_2_ANCESTRAL', 'K_DPMPP_2S_ANCESTRAL', 'K_DPMPP_SDE']) {
      const s = createScheduler(schedulerConfigForSampler(SD15, sampler));
      s.setTimesteps(4);
      const x = new Float32Array(4);
      expect(() => s.step(x, s.timesteps[0], x), sampler).toThrow(/needs an rng/);
    }
  });

  it('Euler ancestral and LCM refuse to step without an rng', () => {
    const a = new EulerAncestralDiscreteScheduler(SD15);
    a.setTimesteps(4);
    const x = new Float32Array(4);
    expect(() => a.step(x, a.timesteps[0], x)).toThrow(/needs an rng/);
    const lcm = new LCMScheduler(SD15);
    lcm.setTimesteps(4);
    expect(() => lcm.step(x, lcm.timesteps[0], x)).toThrow(/needs an rng/);
  });

  it('reads the embedded tiny-sd model config', () => {
    const config = JSON.parse(readFileSync(new URL('../../../models/tiny-sd/scheduler/scheduler_config.json', import.meta.url), 'utf8'));
    const s = createScheduler(config);
    expect(s).toBeInstanceOf(EulerDiscreteScheduler);
    s.setTimesteps(20);
    expect(s.timesteps[0]).toBe(951);
  });

  it('createScheduler names an unsupported class', () => {
    expect(() => createScheduler({ _class_name: 'UniPCMultistepScheduler' })).toThrow(UnsupportedSchedulerError);
    expect(() => createScheduler({ _class_name: 'UniPCMultistepScheduler' })).toThrow(/"UniPCMultistepScheduler"/);
    expect(() => createScheduler({})).toThrow(/unsupported scheduler/);
    expect(() => createScheduler({ _class_name: 'toString' })).toThrow(UnsupportedSchedulerError);
  });

  it('rejects bad option values with the value and what was expected', () => {
    expect(() => new DDIMScheduler({ beta_schedule: 'cubic' })).toThrow(/beta_schedule must be one of .* \(got "cubic"\)/);
    expect(() => new EulerDiscreteScheduler({ num_train_timesteps: '1000' })).toThrow(/num_train_timesteps must be a number/);
    expect(() => new DPMSolverMultistepScheduler({ algorithm_type: 'sde-dpmsolver++' })).toThrow(/algorithm_type/);
  });
});

describe('Stability sampler names', () => {
  const base = JSON.parse(readFileSync(new URL('../../../models/tiny-sd/scheduler/scheduler_config.json', import.meta.url), 'utf8'));
  const expected: Record<string, string> = {
    DDIM: 'DDIMScheduler',
    K_EULER: 'EulerDiscreteScheduler',
    K_EULER_ANCESTRAL: 'EulerAncestralDiscreteScheduler',
    K_DPMPP_2M: 'DPMSolverMultistepScheduler',
    K_DPMPP_2M_KARRAS: 'DPMSolverMultistepScheduler',
    PNDM: 'PNDMScheduler',
    LCM: 'LCMScheduler',
    DDPM: 'DDPMScheduler',
    K_HEUN: 'HeunDiscreteScheduler',
    K_DPM_2: 'KDPM2DiscreteScheduler',
    K_DPM_2_ANCESTRAL: 'KDPM2AncestralDiscreteScheduler',
    K_LMS: 'LMSDiscreteScheduler',
    K_DPMPP_2S_ANCESTRAL: 'DPMSolverSinglestepScheduler',
    K_DPMPP_SDE: 'DPMSolverSDEScheduler',
    FLOW_MATCH_EULER: 'FlowMatchEulerDiscreteScheduler',
  };

  it('lists exactly the supported samplers', () => {
    expect([...SAMPLERS].sort()).toEqual(Object.keys(expected).sort());
  });

  it.each(Object.entries(expected))('%s -> %s, keeping the model config', (sampler, className) => {
    const config = schedulerConfigForSampler(base, sampler);
    expect(config._class_name).toBe(className);
    expect(config.beta_schedule).toBe(base.beta_schedule);
    const s = createScheduler(config);
    expect(s.name).toBe(className);
    s.setTimesteps(4);
  });

  it('K_DPMPP_2M_KARRAS turns Karras sigmas on, K_DPMPP_2M off; PNDM skips PRK; DDIM does not clip latents', () => {
    expect(schedulerConfigForSampler({ ...base, use_karras_sigmas: false }, 'K_DPMPP_2M_KARRAS').use_karras_sigmas).toBe(true);
    expect(schedulerConfigForSampler({ ...base, use_karras_sigmas: true }, 'K_DPMPP_2M').use_karras_sigmas).toBe(false);
    expect(schedulerConfigForSampler(base, 'K_DPMPP_2M')).toMatchObject({ algorithm_type: 'dpmsolver++', solver_order: 2 });
    expect(schedulerConfigForSampler({ ...base, skip_prk_steps: false }, 'PNDM').skip_prk_steps).toBe(true);
    expect(schedulerConfigForSampler(base, 'DDIM').clip_sample).toBe(false);
    expect(schedulerConfigForSampler({ ...base, clip_sample: true }, 'DDIM').clip_sample).toBe(true);
  });

  it('no sampler: the model config unchanged', () => {
    expect(schedulerConfigForSampler(base)).toEqual(base);
  });

  it.each(['K_FOO', 'K_LMS_KARRAS', 'k_lms', '', 'ddim', 'toString'])(
    'rejects %j with InvalidSamplerError listing the valid names',
    (sampler) => {
      let error: unknown;
      try {
        schedulerConfigForSampler(base, sampler);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidSamplerError);
      expect(error).toBeInstanceOf(Error);
      expect((error as InvalidSamplerError).code).toBe('invalid_sampler');
      expect((error as Error).message).toBe(
        `unknown sampler "${sampler}"; valid samplers: DDIM, K_EULER, K_EULER_ANCESTRAL, K_DPMPP_2M, K_DPMPP_2M_KARRAS, PNDM, LCM, DDPM, K_HEUN, K_DPM_2, K_DPM_2_ANCESTRAL, K_LMS, K_DPMPP_2S_ANCESTRAL, K_DPMPP_SDE, FLOW_MATCH_EULER`,
      );
    },
  );
});

describe('FlowMatchEulerDiscreteScheduler (SD3)', () => {
  it('starts from pure noise, passes the input through, and noises as flow matching does', () => {
    const s = createScheduler({ _class_name: 'FlowMatchEulerDiscreteScheduler', shift: 3.0 });
    s.setTimesteps(28);
    expect(s.initNoiseSigma).toBe(1);
    expect(s.timesteps[0]).toBe(1000);
    expect(s.sigmas![28]).toBe(0);
    const x = Float32Array.of(0.5, -2);
    expect(Array.from(s.scaleModelInput(x, s.timesteps[0]))).toEqual([0.5, -2]);
    // x = (1 - sigma) x0 + sigma noise, at the sigma of the timestep given
    const noisy = s.addNoise(Float32Array.of(1, 1), Float32Array.of(0, 2), s.timesteps[9]);
    const sigma = s.sigmas![9];
    expect(noisy[0]).toBeCloseTo(1 - sigma, 6);
    expect(noisy[1]).toBeCloseTo(1 - sigma + 2 * sigma, 6);
  });

  it('refuses the options sdq does not implement, naming them', () => {
    expect(() => createScheduler({ _class_name: 'FlowMatchEulerDiscreteScheduler', use_dynamic_shifting: true })).toThrow(/use_dynamic_shifting = true is not supported/);
    expect(() => createScheduler({ _class_name: 'FlowMatchEulerDiscreteScheduler', shift_terminal: 0.1 })).toThrow(/shift_terminal is not supported/);
  });
});
