/**
 * What a pull may be asked for, checked before any request: a repo id `owner/name`, a revision (branch,
 * tag or commit), a subfolder inside the repo, and the engine id the folder becomes. None may climb out
 * of where it belongs (`..`), and the engine id must name a folder and a queue.
 */
export class PullInputError extends Error {
  constructor(
    readonly field: 'repo' | 'revision' | 'subfolder' | 'name',
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'PullInputError';
  }
}

const PART = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$/;
const ENGINE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export function checkRepo(repo: string): string {
  const parts = repo.split('/');
  if (parts.length !== 2 || !parts.every((p) => PART.test(p) && !p.includes('..') && !p.includes('--'))) {
    throw new PullInputError('repo', `must be owner/name (letters, digits, . _ -), got ${JSON.stringify(repo.slice(0, 200))}`);
  }
  return repo;
}

export function checkRevision(revision: string): string {
  if (!/^[A-Za-z0-9._/-]{1,200}$/.test(revision) || revision.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new PullInputError('revision', `must be a branch, tag or commit without .. or empty parts, got ${JSON.stringify(revision.slice(0, 200))}`);
  }
  return revision;
}

/** '' for the repo's root. */
export function checkSubfolder(subfolder: string | undefined): string {
  if (!subfolder) return '';
  const trimmed = subfolder.replace(/\/+$/, '');
  if (!/^[A-Za-z0-9._/ -]{1,300}$/.test(trimmed) || trimmed.startsWith('/') || trimmed.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new PullInputError('subfolder', `must be a relative path inside the repo without .. or empty parts, got ${JSON.stringify(subfolder.slice(0, 300))}`);
  }
  return trimmed;
}

/** The engine id: given, else the repo's last path part. */
export function engineIdFor(repo: string, name: string | undefined): string {
  const id = name ?? repo.split('/')[1];
  if (!ENGINE_ID.test(id) || id.includes('..')) {
    throw new PullInputError('name', `must be an engine id (letters, digits, . _ -, starting with a letter or digit; no ..), got ${JSON.stringify(id.slice(0, 200))}`);
  }
  return id;
}
