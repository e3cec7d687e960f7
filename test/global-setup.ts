import { execFileSync } from 'node:child_process';

/**
 * Tests that run the command line use `dist/`; compile it once before any test so they
 * always exercise the code under test, not an older build.
 */
export default function setup(): void {
  // For work in progress elsewhere in the tree: the caller has built dist/ (or needs none).
  if (process.env.ROOTCAST_TEST_SKIP_BUILD === '1') return;
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
