/** The engine's size nearest a shape, for dialects that ask by aspect ratio or by a size the engine does not take. */
import type { GenerationEngineInfo } from '@sdq/pipeline/engines';

/**
 * The engine's allowed size closest to a shape at its native pixel count: how far the shape is off
 * (twice) plus how far the area is off, each in log terms, is least; the shape counts double so that a
 * near shape beats the exact area. 1:1 on tiny-sd is 128x128, 16:9 is 192x128; on SD 1.5 16:9 is
 * 704x384; on SDXL (native 1024) each ratio is one of Stability's nine sizes.
 */
export function sizeForShape(engine: GenerationEngineInfo, ratio: number): { width: number; height: number } {
  const native = engine.nativeWidth * engine.nativeHeight;
  const limits = engine.sizes;
  const candidates: [number, number][] = [];
  if (limits?.allowed) {
    for (const size of limits.allowed) candidates.push(size.split('x').map(Number) as [number, number]);
  } else {
    const step = limits?.step ?? 64;
    const minSide = limits?.minSide ?? step;
    const maxPixels = limits?.maxPixels ?? native;
    for (let w = minSide; w * minSide <= maxPixels; w += step) {
      // the two multiples of step either side of the shape's height
      const ideal = w / ratio;
      for (const h of [Math.floor(ideal / step) * step, Math.ceil(ideal / step) * step]) if (h >= minSide && w * h <= maxPixels) candidates.push([w, h]);
    }
  }
  let best: [number, number] = [engine.nativeWidth, engine.nativeHeight];
  let bestScore = Infinity;
  for (const [w, h] of candidates) {
    const score = 2 * Math.abs(Math.log(w / h / ratio)) + Math.abs(Math.log((w * h) / native));
    if (score < bestScore - 1e-12) [best, bestScore] = [[w, h], score];
  }
  return { width: best[0], height: best[1] };
}
