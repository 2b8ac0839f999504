/** What an engine folder weighs on disk, and what changes when its files do. */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** A folder's files (three levels down), with size and time; none when it cannot be read now. */
function folderFiles(dir: string): { path: string; size: number; mtimeMs: number }[] {
  const files: { path: string; size: number; mtimeMs: number }[] = [];
  const walk = (d: string, depth: number) => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      const stats = statSync(path);
      if (stats.isDirectory()) {
        if (depth < 3) walk(path, depth + 1);
      } else files.push({ path, size: stats.size, mtimeMs: stats.mtimeMs });
    }
  };
  try {
    walk(dir, 0);
  } catch {
    return [];
  }
  return files;
}

/** An engine's weight: the bytes of its graphs and external data on disk (every file but configs and text). */
export function weightOf(dir: string): number {
  return folderFiles(dir).reduce((sum, f) => sum + (/\.(json|txt|md)$/i.test(f.path) ? 0 : f.size), 0);
}

/** The names, sizes and times of a folder's files: what changes when a copy goes on or a file is replaced. */
export function filesSignature(dir: string): string {
  return folderFiles(dir).map((f) => `${f.path}:${f.size}:${f.mtimeMs}`).join('|');
}
