/**
 * The CPUs this process may use: its affinity (os.availableParallelism) bounded by a cgroup CPU quota (a
 * container's --cpus). onnxruntime's own default for intra-op threads is its guess of physical cores,
 * which on a 2-vCPU machine is 1: an SD 1.5-sized UNet ran 16 s a step with it and 10 s with 2 threads.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export function availableCpus(): number {
  let cpus = availableParallelism();
  const quota = cgroupQuota();
  if (quota !== undefined) cpus = Math.min(cpus, Math.max(1, Math.floor(quota)));
  return Math.max(1, cpus);
}

/** CPUs a cgroup quota allows (quota / period), or undefined without one. */
function cgroupQuota(): number | undefined {
  try {
    // cgroup v2: "max 100000" (none) or "200000 100000"
    const [quota, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (quota !== 'max' && Number(period) > 0) return Number(quota) / Number(period);
    return undefined;
  } catch {
    // cgroup v1
  }
  try {
    const quota = Number(readFileSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us', 'utf8'));
    const period = Number(readFileSync('/sys/fs/cgroup/cpu/cpu.cfs_period_us', 'utf8'));
    return quota > 0 && period > 0 ? quota / period : undefined;
  } catch {
    return undefined;
  }
}
