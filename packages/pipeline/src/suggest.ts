/** For the CLIs' "did you mean": the closest of `options` to a mistyped name, within two edits. */
export function closestName(name: string, options: readonly string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    let row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      row = next;
    }
    return row[b.length];
  };
  let best: [string, number] | undefined;
  for (const option of options) {
    const d = distance(name, option);
    if (!best || d < best[1]) best = [option, d];
  }
  return best && best[1] <= 2 ? best[0] : undefined;
}

/** parseArgs's error as a one-line message for a person: an unknown option with a guess, else its own words. */
export function optionErrorMessage(err: unknown, options: readonly string[]): string {
  const message = (err as Error).message;
  const unknown = /Unknown option '(-{1,2}[^']+)'/.exec(message)?.[1];
  if (!unknown) return message.replace(/\. To specify.*$/s, '');
  const guess = closestName(unknown.replace(/^-+/, ''), options);
  return `${unknown} is not an option${guess ? ` (did you mean --${guess}?)` : ''}`;
}
