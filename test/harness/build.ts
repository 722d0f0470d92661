import { execFileSync } from 'node:child_process';
import { REPO } from './processes.js';

/** Integration tests run the built programs, exactly as users do: build them once first. */
export default function setup(): void {
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: REPO, stdio: 'inherit' });
}
