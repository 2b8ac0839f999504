// Runs one program that cannot watch the launcher itself (redis-server) and stops it when the launcher
// goes, however it went: the launcher's IPC channel closes even when it is killed with SIGKILL. Plain
// JavaScript, so it starts in a few milliseconds without tsx.
//   node scripts/guard.mjs <program> [args...]     (spawned by scripts/start.ts with an IPC channel)
import { spawn } from 'node:child_process';

const [program, ...args] = process.argv.slice(2);
const child = spawn(program, args, { stdio: ['ignore', 'ignore', 'inherit'] });
const stop = () => {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
};
process.on('disconnect', stop);
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, stop);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
child.on('error', (err) => {
  process.stderr.write(`sdq: could not run ${program}: ${err.message}\n`);
  process.exit(1);
});
