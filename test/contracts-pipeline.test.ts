import { describe, expect, it } from 'vitest';
import { SAMPLERS as CONTRACT_SAMPLERS, STYLE_PRESET_NAMES as CONTRACT_STYLES } from '@sdq/contracts';
import { STYLE_PRESET_NAMES as ENGINE_STYLES } from '@sdq/pipeline/engines';
import { SAMPLERS as PIPELINE_SAMPLERS } from '@sdq/pipeline/samplers';

describe('contracts agree with the pipeline', () => {
  it('the API accepts exactly the samplers the pipeline runs', () => {
    expect([...CONTRACT_SAMPLERS].sort()).toEqual([...PIPELINE_SAMPLERS].sort());
  });

  it('engine manifests may set exactly the style presets the API accepts', () => {
    expect([...CONTRACT_STYLES].sort()).toEqual([...ENGINE_STYLES].sort());
  });
});
