/**
 * How a service process lives under `npm start` (scripts/start.ts), which spawns each one with an IPC
 * channel. The channel closes when the launcher goes, however it went (SIGKILL, an OOM kill, a closed
 * terminal), so a process that watches it never outlives the launcher as an orphan holding its port.
 */

/**
 * How long an orphan's graceful stop may take: its Redis may have gone with the launcher (a private
 * redis-server stops with it), and a stop that waits on a Redis that is gone would wait for ever. A job
 * cut short is not lost: its lock expires and another worker takes it.
 */
const ORPHAN_GRACE_MS = Number(process.env.SDQ_ORPHAN_GRACE_MS ?? 10_000);

/**
 * Under the launcher: when its channel closes, stop as on SIGTERM (the process's own graceful stop).
 * Call it first thing: a launcher that goes while this process is still starting must stop it too.
 */
export function stopWithLauncher(): void {
  if (!process.send) return;
  if (!process.connected) process.exit(1);
  process.once('disconnect', () => {
    setTimeout(() => process.exit(1), ORPHAN_GRACE_MS).unref();
    process.kill(process.pid, 'SIGTERM');
  });
  // The channel must not keep the process alive by itself.
  (process.channel as { unref?: () => void } | undefined)?.unref?.();
}

/** One line naming the variable to set, for a port another process holds (EADDRINUSE). */
export function portInUseMessage(variable: string, port: number): string {
  return `${variable} ${port} is in use (another sdq, or another program): set ${variable} to a free port${variable === 'PORT' ? '' : ', or 0 for any'}`;
}
