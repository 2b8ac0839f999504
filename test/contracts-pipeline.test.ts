import { describe, expect, it } from 'vitest';
import { A1111_SAMPLERS, SAMPLERS as CONTRACT_SAMPLERS, STYLE_PRESET_NAMES as CONTRACT_STYLES } from '@sdq/contracts';
import { a1111SamplerName } from '@sdq/pipeline/infotext';
import { STYLE_PRESET_NAMES as ENGINE_STYLES } from '@sdq/pipeline/engines';
import { SAMPLERS as PIPELINE_SAMPLERS } from '@sdq/pipeline/samplers';

describe('contracts agree with the pipeline', () => {
  it('the API accepts exactly the samplers the pipeline runs', () => {
    expect([...CONTRACT_SAMPLERS].sort()).toEqual([...PIPELINE_SAMPLERS].sort());
  });

  it("the A1111 dialect's sampler names are the ones the pipeline writes in its infotext", () => {
    for (const [name, sampler] of Object.entries(A1111_SAMPLERS)) expect(a1111SamplerName(sampler), sampler).toBe(name);
    expect(a1111SamplerName('DPMSolverMultistepScheduler', { use_karras_sigmas: true })).toBe('DPM++ 2M Karras');
  });

  it('engine manifests may set exactly the style presets the API accepts', () => {
    expect([...CONTRACT_STYLES].sort()).toEqual([...ENGINE_STYLES].sort());
  });
});
