import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../hub/store/db.js';
import { ObjectStore } from '../../hub/store/objects.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);

/**
 * Leaves better-sqlite3 (a native addon) out of the bundle, imported by absolute path: Node
 * resolves an ES module's bare imports from the importing file's directory, not from the working
 * directory, and the bundle lives in a temporary directory with no node_modules above it.
 */
const betterSqliteFromRepo: Plugin = {
  name: 'better-sqlite3-from-repo',
  setup(b) {
    b.onResolve({ filter: /^better-sqlite3$/ }, () => ({ path: require.resolve('better-sqlite3'), external: true }));
  },
};

async function bundleWriter(outfile: string): Promise<void> {
  await build({
    entryPoints: [join(repoRoot, 'test/unit/fixtures/store-writer.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    external: ['better-sqlite3'],
    plugins: [betterSqliteFromRepo],
    logLevel: 'silent',
  });
}

describe('ObjectStore durability', () => {
  let dir: string;
  let child: ChildProcess | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'flotilla-durability-'));
  });
  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    child = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every acknowledged write when the process is killed with SIGKILL', async () => {
    const script = join(dir, 'store-writer.mjs');
    const dbFile = join(dir, 'hub.db');
    await bundleWriter(script);

    const proc = spawn(process.execPath, [script, dbFile], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    const acked: string[] = [];
    let partial = '';
    let stderr = '';
    let killed = false;
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      acked.push(...lines);
      // Killed mid-loop: the writer is between creates, or inside one, when the signal lands.
      if (!killed && acked.length >= 200) {
        killed = true;
        proc.kill('SIGKILL');
      }
    });
    // 'close' comes after stdout has ended, so every acknowledgement written before the kill is in.
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => proc.on('close', (_code, sig) => resolve(sig)));
    expect(signal, `writer exited on its own; stderr:\n${stderr}`).toBe('SIGKILL');
    expect(acked.length).toBeGreaterThanOrEqual(200);

    // Reopening recovers the WAL left behind by the killed process.
    const db = openDatabase(dbFile);
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      const store = new ObjectStore(db);
      const missing = acked.filter((name) => store.get('Pod', 'default', name) === undefined);
      expect(missing).toEqual([]);
      const stored = store.list('Pod').items.length;
      // At most the one create in flight at the kill can be stored without an acknowledgement.
      expect(stored === acked.length || stored === acked.length + 1).toBe(true);
      expect(Number(store.currentResourceVersion())).toBe(stored);
      expect(store.list('Pod', { selector: { requirements: [{ key: 'batch', operator: 'In', values: ['3'] }] } }).items.length).toBeGreaterThan(0);
    } finally {
      db.close();
    }
  }, 30_000);
});
