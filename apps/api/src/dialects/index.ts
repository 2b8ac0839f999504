/**
 * The dialects the API speaks, each a folder: its routes, its error body and (in openapi.ts, for now)
 * its OpenAPI paths. A dialect imports the submission kit (../submission) and never another dialect.
 * The error handler asks the first dialect that owns a path to shape the body; Stability v1's shape,
 * sdq's own, answers the rest.
 */
import { a1111Errors } from './a1111/errors';
import type { ErrorShape } from './error-shape';
import { falErrors } from './fal/errors';
import { openaiErrors } from './openai/errors';
import { replicateErrors } from './replicate/errors';
import { stabilityV1Errors } from './stability-v1/errors';
import { v2betaErrors } from './stability-v2beta/errors';

export { a1111Routes } from './a1111/routes';
export { falRoutes } from './fal/routes';
export { openaiModels, openaiRoutes } from './openai/routes';
export { replicateModels, replicateRoutes } from './replicate/routes';
export { generationRoutes as stabilityV1Routes } from './stability-v1/routes';
export { v2betaEngines, v2betaRoutes } from './stability-v2beta/routes';

/** In the order they are asked: the catch-all last. */
export const ERROR_SHAPES: readonly ErrorShape[] = [v2betaErrors, a1111Errors, openaiErrors, replicateErrors, falErrors, stabilityV1Errors];

/** The shape of the dialect that owns the path. */
export function errorShapeFor(path: string): ErrorShape {
  return ERROR_SHAPES.find((shape) => shape.owns(path))!;
}
