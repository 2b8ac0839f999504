/** The answers of GET /v1/loras and GET /v1/embeddings (sdq's listing of LORA_DIR and EMBEDDINGS_DIR). */
import { z } from 'zod';

const Skipped = z.array(z.object({ file: z.string(), reason: z.string() })).describe('Files of the folder not taken, with why (pickle formats are never loaded).');

export const LoraObject = z
  .object({
    name: z.string().describe('The file stem: what `loras[].name` and `<lora:name:weight>` use.'),
    bytes: z.number().int(),
    modules: z.number().int().describe('Layers the file changes.'),
    components: z.record(z.string(), z.number().int()).describe('Modules per graph: unet, text_encoder, text_encoder_2.'),
    engines: z.array(z.string()).describe('Generation engines whose layers it names (the ones a request may use it with).'),
    metadata: z.record(z.string(), z.string()).describe("The safetensors header's __metadata__ (kohya's ss_* training notes)."),
  })
  .meta({ id: 'LoraObject' });

export const LoraList = z.object({ loras: z.array(LoraObject), skipped: Skipped }).meta({ id: 'LoraList' });

export const EmbeddingObject = z
  .object({
    name: z.string().describe('The trigger word: the file stem, matched as a whole word in any prompt.'),
    bytes: z.number().int(),
    vectors: z.number().int().describe('Token vectors the word stands for.'),
    width: z.number().int().describe("Each vector's width (768 SD 1.x, 1024 SD 2.x; SDXL files have two)."),
    engines: z.array(z.string()).describe('Generation engines whose text encoders take it.'),
  })
  .meta({ id: 'EmbeddingObject' });

export const EmbeddingList = z.object({ embeddings: z.array(EmbeddingObject), skipped: Skipped }).meta({ id: 'EmbeddingList' });
