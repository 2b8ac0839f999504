/**
 * Models at run time, as the admin API speaks of them: a pull from the Hugging Face Hub (@sdq/hub does
 * it) and its progress, readable from any API process.
 */
import { z } from 'zod';

export const PullModelRequest = z
  .strictObject({
    repo: z.string().min(3).max(200).describe('The Hub repo, owner/name.'),
    revision: z.string().min(1).max(200).optional().describe('A branch, tag or commit. Default main.'),
    name: z.string().min(1).max(100).optional().describe("The engine id it becomes. Default: the repo's name."),
    subfolder: z.string().min(1).max(300).optional().describe('The folder of the repo holding the pipeline. Default: its root.'),
  })
  .meta({ id: 'PullModelRequest' });
export type PullModelRequest = z.infer<typeof PullModelRequest>;

export const PULL_STATES = ['running', 'succeeded', 'failed'] as const;

export const PullObject = z
  .object({
    id: z.string(),
    state: z.enum(PULL_STATES),
    repo: z.string(),
    revision: z.string(),
    subfolder: z.string().nullable(),
    engine: z.string().describe('The engine id the pull makes.'),
    commit: z.string().nullable().describe('The commit the revision resolved to, once known.'),
    file: z.string().nullable().describe('The file being fetched.'),
    bytes_done: z.number().int(),
    bytes_total: z.number().int().nullable().describe('Once the file list is read.'),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    created_at: z.string(),
    finished_at: z.string().nullable(),
  })
  .meta({ id: 'PullObject' });
export type PullObject = z.infer<typeof PullObject>;
