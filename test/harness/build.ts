import { execFileSync } from 'node:child_process';
import { REPO } from './processes.js';

/**
 * Integration tests run the built programs, exactly as users do: build them once first. Each
 * project that needs the build names this setup; one run builds once.
 */
export default function setup(): void {
  if (process.env.FLOTILLA_TEST_BUILT === String(process.pid)) return;
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: REPO, stdio: 'inherit' });
  process.env.FLOTILLA_TEST_BUILT = String(process.pid);
}
