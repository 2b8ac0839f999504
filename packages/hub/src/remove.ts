/**
 * Removing an engine from MODELS_DIR: its folder goes (a symbolic link only unlinks: what it points at
 * is the operator's). The API stops describing it at its next look, and its queued jobs fail, refunded.
 */
import { existsSync, lstatSync } from 'node:fs';
import { rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { engineIdFor, PullInputError } from './names';
import { PullError } from './pull';

export async function removeModel(modelsDir: string, id: string): Promise<{ dir: string }> {
  // the same rule as a pull's --name: an engine id, never a path
  if (engineIdFor('x/x', id) !== id || id.startsWith('.')) throw new PullInputError('name', `must be an engine id, got ${JSON.stringify(id.slice(0, 200))}`);
  const dir = join(modelsDir, id);
  if (!existsSync(dir) && !isLink(dir)) throw new PullError('not_found', `no engine ${id} under ${modelsDir}`);
  if (isLink(dir)) await unlink(dir);
  else await rm(dir, { recursive: true, force: true });
  return { dir };
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
