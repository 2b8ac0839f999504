/**
 * Containers for tests, through testcontainers, on machines with a Docker engine. Machines without one
 * (like the development machines here) use a private redis-server and s3rver instead; see redis.ts and
 * s3.ts for the order in which they are tried.
 */
import { existsSync } from 'node:fs';

/** A Docker engine is reachable: DOCKER_HOST is set or the default socket exists. */
export function dockerAvailable(): boolean {
  if (process.env.SDQ_TEST_NO_DOCKER) return false;
  return Boolean(process.env.DOCKER_HOST) || existsSync('/var/run/docker.sock');
}

/** Loaded only when used, so machines without Docker never pay for the import. */
export async function genericContainer(image: string) {
  const { GenericContainer, Wait } = await import('testcontainers');
  return { container: new GenericContainer(image), Wait };
}
