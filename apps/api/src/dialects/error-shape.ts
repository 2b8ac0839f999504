import type { ServiceError } from '@sdq/contracts';

/** How a dialect answers an error: which paths are its own, and the body it gives them. */
export interface ErrorShape {
  /** True for a path this dialect serves (its prefix: errors before its routes match are its too). */
  owns(path: string): boolean;
  /** The response body for a catalogue error; `id` is the request id. */
  body(id: string, err: ServiceError): unknown;
}
