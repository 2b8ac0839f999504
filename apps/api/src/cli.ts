/**
 * `npx sdq`: the operator CLI. Talks to Redis through the same modules as the API (store, accounts,
 * @sdq/credits), configured by the same environment (REDIS_URL, QUEUE_PREFIX, STARTING_CREDITS).
 */
import { parseArgs } from 'node:util';
import { optionErrorMessage } from '@sdq/pipeline/suggest';
import { UsageError } from './cli-usage';

const HELP = `sdq: operate an sdq deployment (reads REDIS_URL, QUEUE_PREFIX and STARTING_CREDITS like the API)

Usage:
  sdq accounts create --name <name> [--credits <n>] [--scope <s>] [--tier <t>]
                                        create an account and its first API key; --credits is the
                                        starting balance (default: STARTING_CREDITS, 25); --tier its
                                        priority tier, one of PRIORITY_TIERS (default: DEFAULT_TIER)
  sdq accounts list                     list accounts with their balances
  sdq keys create <account> [--scope read|generate|admin]
                                        make a new API key (shown once; scope default generate)
  sdq keys list <account>               list an account's keys (ids and scopes, never keys)
  sdq keys revoke <key id or key>       revoke a key at once
  sdq credits grant <account> <n> [--reason <text>]
                                        add n credits (negative: take them away, never below zero)
  sdq credits balance <account>         an account's balance
  sdq ledger list <account> [--limit <n>]
                                        an account's newest ledger entries
  sdq ledger verify                     prove every balance equals the sum of its ledger and every hold
                                        is consistent; exits 1 and prints the problems otherwise
  sdq models pull <owner/name>[@<revision>] [--name <engine id>] [--subfolder <dir>]
                                        download a diffusers ONNX repo from the Hugging Face Hub
                                        (HF_ENDPOINT, HF_TOKEN) into MODELS_DIR/<engine id>: only what a
                                        pipeline reads, pinned to its commit, resumed and verified
  sdq models pull --lora|--embedding <owner/name>[@<revision>] <file.safetensors> [--name <stem>]
                                        one LoRA or embedding file into LORA_DIR / EMBEDDINGS_DIR,
                                        verified and checked to parse before it is used
  sdq models list                       the engines under MODELS_DIR: family, live workers, size, origin
  sdq models rm <engine id>             remove an engine's folder: the API drops it, its queued jobs
                                        fail (refunded), running ones finish
  sdq --help                            this text

<account> is an account id or its exact name. Add --json for machine-readable output.
`;

async function run(argv: string[]): Promise<number> {
  // "-5" is an amount, not an option: parseArgs would read it as the short option -5.
  const NEGATIVE = /^-\d/;
  const options = {
    name: { type: 'string' },
    credits: { type: 'string' },
    scope: { type: 'string' },
    reason: { type: 'string' },
    limit: { type: 'string' },
    tier: { type: 'string' },
    subfolder: { type: 'string' },
    lora: { type: 'boolean' },
    embedding: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    json: { type: 'boolean' },
  } as const;
  let parsed;
  try {
    parsed = parseArgs({ args: argv.map((a) => (NEGATIVE.test(a) ? `\u0000${a}` : a)), allowPositionals: true, options });
  } catch (err) {
    throw new UsageError(optionErrorMessage(err, Object.keys(options)));
  }
  const values = parsed.values;
  const [group, action, ...args] = parsed.positionals.map((p) => p.replace(/^\u0000/, ''));
  if (values.help || !group) {
    process.stdout.write(HELP);
    return 0;
  }
  // the commands and all they load come only now: --help answers without them
  const { runCommand } = await import('./cli-commands');
  return runCommand(group, action, args, values);
}

// One line, never a stack trace (SDQ_DEBUG=1 prints it): the code, what went wrong, where to look.
run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    // A ServiceError is the operator's mistake (unknown account, bad amount): a usage error. Known by its
    // name, so that this file need not load @sdq/contracts before --help answers.
    const service = err.name === 'ServiceError' ? (err as Error & { code: string; status: number }) : undefined;
    // a pull that cannot be done says what to do itself (HF_TOKEN, the revision, free disk): no stack hint
    const pull = err.name === 'PullError' ? (err as Error & { code: string }) : undefined;
    const usage = err instanceof UsageError || err.name === 'PullInputError' || (service !== undefined && service.status < 500);
    const code = service ? service.code : pull ? pull.code : usage ? 'usage' : 'internal';
    const hint = usage ? '; run `sdq --help` for usage' : pull ? '' : process.env.SDQ_DEBUG ? `\n${err.stack}` : ' (SDQ_DEBUG=1 shows where)';
    console.error(`sdq: error (${code}): ${err.message}${hint}`);
    process.exit(usage ? 2 : 1);
  },
);
