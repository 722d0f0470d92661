import { once } from 'node:events';
import { HubClient, objectPath, type ClientOptions } from './client.js';
import { parseDuration } from './commands.js';
import { CliError } from './errors.js';

export interface LogsOptions extends ClientOptions {
  container?: string;
  follow?: boolean;
  tail?: string;
  since?: string;
  previous?: boolean;
  namespace?: string;
}

/** `flotilla logs POD`: a container's output, read from the device through the hub, as kubectl logs. */
export async function logsCommand(target: string, opts: LogsOptions, write: (text: string) => void | Promise<void>): Promise<void> {
  const name = podName(target);
  const query = new URLSearchParams();
  if (opts.container) query.set('container', opts.container);
  if (opts.follow) query.set('follow', 'true');
  if (opts.tail !== undefined) {
    const n = Number(opts.tail);
    if (!Number.isInteger(n) || n < -1) throw CliError.usage(`--tail: '${opts.tail}' is not a number of lines (-1 for all)`);
    if (n >= 0) query.set('tailLines', String(n));
  }
  if (opts.since) query.set('sinceSeconds', String(parseDuration(opts.since)));
  if (opts.previous) query.set('previous', 'true');
  const client = new HubClient(opts);
  const path = `${objectPath('pods', true, opts.namespace ?? 'default', name)}/log${query.size ? `?${query}` : ''}`;
  await client.streamText(path, write);
}

/** NAME, or pod/NAME as kubectl takes it. */
function podName(target: string): string {
  const slash = target.indexOf('/');
  if (slash < 0) return target;
  const kind = target.slice(0, slash);
  if (!['pod', 'pods', 'po'].includes(kind)) throw CliError.usage(`logs takes a pod, not '${kind}'`);
  const name = target.slice(slash + 1);
  if (!name) throw CliError.usage('logs needs a pod name');
  return name;
}

/**
 * Writes to stdout as fast as its reader takes it, and ends quietly when the reader goes away
 * (`flotilla logs -f POD | head`), as a Unix filter does.
 */
export function stdoutWriter(): (text: string) => Promise<void> {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  return async (text) => {
    if (!process.stdout.write(text)) await once(process.stdout, 'drain');
  };
}
