import { execFile } from 'node:child_process';

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
 * written to its stdin: how a WireGuard configuration with a private key reaches `wg` without
 * touching the disk.
 */
export function run(cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
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
