/**
 * Prompt moderation at the door: the operator's blocklist (PROMPT_BLOCKLIST_FILE), one term a line. A
 * word or phrase matches case-insensitively on word boundaries (a phrase's spaces match any run of
 * white space); `/regex/flags` is a regular expression (always case-insensitive). Blank lines and lines
 * starting with `#` are skipped. The file is read at start, on SIGHUP and every minute; a file that
 * cannot be read keeps the list in force (said in the log), so a moment's mistake never opens the door.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';

/** How often the file is looked at (its size and time: read again only when they change). */
const LOOK_MS = 60_000;

interface Term {
  /** As written in the file: what the operator's log names. */
  source: string;
  pattern: RegExp;
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** One line of the file as a term, or why it is not one. */
export function parseTerm(line: string): Term | { problem: string } {
  const regex = /^\/(.+)\/([a-z]*)$/s.exec(line);
  if (regex) {
    const flags = new Set([...regex[2], 'i', 'u']);
    flags.delete('g');
    flags.delete('y');
    try {
      return { source: line, pattern: new RegExp(regex[1], [...flags].join('')) };
    } catch (err) {
      return { problem: `not a regular expression (${(err as Error).message})` };
    }
  }
  // a word boundary that knows letters beyond ASCII: no letter, digit or _ on either side
  const words = line.split(/\s+/).map(escape).join('\\s+');
  return { source: line, pattern: new RegExp(`(?<![\\p{L}\\p{N}_])${words}(?![\\p{L}\\p{N}_])`, 'iu') };
}

export class PromptBlocklist {
  private terms: Term[] = [];
  private stamp = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly file: string | undefined,
    private readonly logger?: Pick<Logger, 'info' | 'warn' | 'error'>,
  ) {
    if (file) this.reload({ required: true });
  }

  get size(): number {
    return this.terms.length;
  }

  /**
   * Reads the file again (`force`: even if its size and time are the same). At start a missing or
   * unreadable file stops the API (`required`): an operator who set one must not run without it.
   */
  reload(opts: { required?: boolean; force?: boolean } = {}): void {
    if (!this.file) return;
    let text: string;
    let stamp: string;
    try {
      const stat = statSync(this.file);
      stamp = `${stat.size}:${stat.mtimeMs}`;
      if (!opts.force && stamp === this.stamp) return;
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      const message = `PROMPT_BLOCKLIST_FILE ${this.file} could not be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
      if (opts.required) throw new Error(message);
      this.logger?.error({ terms: this.terms.length }, `${message}: the list read before stays in force`);
      return;
    }
    const terms: Term[] = [];
    for (const [i, raw] of text.split('\n').entries()) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const term = parseTerm(line);
      if ('problem' in term) this.logger?.warn({ file: this.file, line: i + 1 }, `PROMPT_BLOCKLIST_FILE line ${i + 1} skipped: ${term.problem}`);
      else terms.push(term);
    }
    this.terms = terms;
    this.stamp = stamp;
    this.logger?.info({ file: this.file, terms: terms.length }, 'prompt blocklist read');
  }

  /** Looks at the file every minute and on SIGHUP (the API process's; tests call reload). */
  start(): void {
    if (!this.file || this.timer) return;
    this.timer = setInterval(() => this.reload(), LOOK_MS);
    this.timer.unref();
    process.on('SIGHUP', this.onHangup);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    process.off('SIGHUP', this.onHangup);
  }

  private readonly onHangup = () => this.reload({ force: true });

  /** The first term a text matches, as the file wrote it; undefined when none does. */
  match(text: string): string | undefined {
    for (const term of this.terms) if (term.pattern.test(text)) return term.source;
    return undefined;
  }
}
