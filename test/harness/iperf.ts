import { execFile, spawn } from 'node:child_process';
import { IPERF3, NSENTER } from './netns.js';
import { waitFor } from './processes.js';

// TCP throughput between two network namespaces with iperf3: the server in one (a device's, or
// a pod's, entered by its namespace path), the client in the other. The same binary measures
// every path, so the figures differ only by the path the packets take.

export const IPERF_PORT = 5201;

/** `nsenter --net=PATH` for a namespace given by name (/var/run/netns/NAME) or by path. */
function enter(netns: string): string[] {
  return [NSENTER, `--net=${netns.startsWith('/') ? netns : `/var/run/netns/${netns}`}`, '--'];
}

/**
 * One iperf3 run of `seconds` from `client` to `address` where `server` listens; the receiver's
 * figure in bits per second. The server serves this one run (-1) and is ended by its pid.
 */
export async function iperf3(opts: { server: string; client: string; address: string; seconds?: number; parallel?: number }): Promise<number> {
  const seconds = opts.seconds ?? 5;
  const serverArgv = [...enter(opts.server), IPERF3, '-s', '-1', '--forceflush', '-p', String(IPERF_PORT)];
  const server = spawn(serverArgv[0]!, serverArgv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  server.stdout.on('data', (d: Buffer) => (out += d.toString()));
  server.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => server.once('exit', () => r()));
  try {
    await waitFor('the iperf3 server to listen', () => {
      if (server.exitCode !== null) throw new Error(`iperf3 server exited: ${out}`);
      return out.includes('Server listening');
    }, 10_000, 50);
    const clientArgv = [...enter(opts.client), IPERF3, '-c', opts.address, '-p', String(IPERF_PORT), '-t', String(seconds), '-P', String(opts.parallel ?? 1), '-J'];
    const json = await new Promise<string>((resolve, reject) => {
      execFile(clientArgv[0]!, clientArgv.slice(1), { timeout: (seconds + 20) * 1000, maxBuffer: 16 << 20 }, (err, stdout) => {
        if (err && !stdout) reject(new Error(`iperf3 client to ${opts.address}: ${err.message}`));
        else resolve(stdout);
      });
    });
    const result = JSON.parse(json) as { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
    if (result.error) throw new Error(`iperf3 to ${opts.address}: ${result.error}`);
    const bps = result.end?.sum_received?.bits_per_second;
    if (!bps) throw new Error(`iperf3 to ${opts.address} reported no figure`);
    return bps;
  } finally {
    if (server.exitCode === null && server.pid !== undefined) server.kill('SIGKILL');
    await exited;
  }
}
