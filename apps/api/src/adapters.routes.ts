/** sdq's listing of the adapter folders: GET /v1/loras and GET /v1/embeddings (A1111's are in its dialect). */
import { Router } from 'express';
import type { EngineInfo, GenerationEngineInfo } from '@sdq/pipeline/engines';
import type { EmbeddingList, LoraList } from '@sdq/contracts';
import type { z } from 'zod';
import type { AdapterCatalog } from './adapters';

export function adapterRoutes(engines: Map<string, EngineInfo>, adapters: AdapterCatalog): Router {
  const router = Router();
  const generation = () => [...engines.values()].filter((e): e is GenerationEngineInfo => e.kind === 'generation' && e.family !== undefined);
  router.get('/v1/loras', (_req, res) => {
    const body: z.infer<typeof LoraList> = {
      loras: [...adapters.loras().values()].map((f) => ({
        name: f.name,
        bytes: f.bytes,
        modules: f.modules.length,
        components: { ...f.components },
        engines: generation().filter((e) => adapters.loraFits(e, f)).map((e) => e.id),
        metadata: { ...f.metadata },
      })),
      skipped: adapters.skipped('lora'),
    };
    res.json(body);
  });
  router.get('/v1/embeddings', (_req, res) => {
    const body: z.infer<typeof EmbeddingList> = {
      embeddings: [...adapters.embeddings().values()].map((f) => ({
        name: f.name,
        bytes: f.bytes,
        vectors: f.embedding.vectors.count,
        width: f.embedding.vectors.dim,
        engines: generation().filter((e) => adapters.embeddingFits(e, f)).map((e) => e.id),
      })),
      skipped: adapters.skipped('embedding'),
    };
    res.json(body);
  });
  return router;
}
