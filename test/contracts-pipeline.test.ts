import { describe, expect, it } from 'vitest';
import { SAMPLERS as CONTRACT_SAMPLERS } from '@sdq/contracts';
import { SAMPLERS as PIPELINE_SAMPLERS } from '@sdq/pipeline/samplers';

describe('contracts agree with the pipeline', () => {
  it('the API accepts exactly the samplers the pipeline runs', () => {
    expect([...CONTRACT_SAMPLERS].sort()).toEqual([...PIPELINE_SAMPLERS].sort());
  });
});
