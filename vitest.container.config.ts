import { defineConfig } from 'vitest/config';

// The container tests (CI's "containers" stage, `npm run test:container`): the image, the
// compose file and the Kubernetes manifests played out with real containers. They need a Docker
// engine and the images .ci/run builds, so they are not part of `npm test`. One file at a time:
// they share the Docker engine and the machine's two cores.
export default defineConfig({
  test: {
    include: ['test/container/**/*.test.ts'],
    environment: 'node',
    testTimeout: 600_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
  },
});
