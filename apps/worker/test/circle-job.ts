/** The worker tests' job: tiny-sd's red circle on blue, 128x128, seed 3, with what a test changes. */
import type { GenerationParams, JobPayload } from '@sdq/contracts';

export function circleJob(jobId: string, params: Partial<GenerationParams> = {}): JobPayload {
  return {
    version: 1,
    jobId,
    accountId: 'acct_test',
    engineId: 'tiny-sd',
    createdAt: Date.now(),
    kind: 'text-to-image',
    params: { prompts: [{ text: 'a large red circle in the center on a blue background' }], width: 128, height: 128, steps: 20, cfgScale: 7, samples: 1, seed: 3, outputFormat: 'png', ...params },
  };
}
