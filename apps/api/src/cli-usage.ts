/** A mistake in how the operator called the CLI: one line, with a hint to --help. */
export class UsageError extends Error {}
