import { execFile, spawn } from 'node:child_process';

/** A network command that failed: its words and what it printed on stderr, for the caller's message. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | string | undefined,
    readonly stderr: string,
  ) {
    super(`${command} failed${exitCode !== undefined ? ` (${exitCode})` : ''}: ${stderr.trim() || 'no output'}`);
  }
}

/** True when the command itself is not installed (ENOENT from the spawn), not when it ran and failed. */
export function isMissingCommand(err: unknown): boolean {
  return err instanceof CommandError && err.exitCode === 'ENOENT';
}

/**
 * Runs one of the network tools (ip, wg, nft, wireguard-go) and returns its stdout. `input` is
 * written to its stdin (Node's stdin pipes are sockets, which `/dev/stdin` cannot open: `wg
 * syncconf` and `nft -f` are given files instead, see wireguard.ts). `detached` runs it in a session of its own (setsid), so that what it leaves
 * running is not in the caller's process group.
 */
export function run(cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv; detached?: boolean } = {}): Promise<string> {
  if (opts.detached) return runDetached(cmd, args, opts.timeoutMs ?? 15_000, opts.env);
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 15_000, maxBuffer: 64 * 1024 * 1024, ...(opts.env ? { env: opts.env } : {}) }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as { code?: number }).code;
        reject(new CommandError(`${cmd} ${args.slice(0, 4).join(' ')}`, code, String(stderr || err.message)));
      } else resolve(String(stdout));
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** execFile drops spawn's `detached`: the same, through spawn, for a tool that leaves a daemon behind. */
function runDetached(cmd: string, args: readonly string[], timeoutMs: number, env: NodeJS.ProcessEnv | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const words = `${cmd} ${args.slice(0, 4).join(' ')}`;
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new CommandError(words, err.code, err.message));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new CommandError(words, code ?? signal ?? undefined, stderr || `ended by ${signal}`));
    });
  });
}
