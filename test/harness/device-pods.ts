import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { TestDockerd } from './dockerd.js';
import { engineContainers } from './fleet.js';

// A device made of a harness dockerd's namespace with a real agent in it (the overlay's
// two-device files): commands in its namespace, its pod's sandbox and app container.

const execFileP = promisify(execFile);
const IP = '/usr/sbin/ip';

/** A device as these helpers see it: its node name and its dockerd. */
export interface PodDevice {
  node: string;
  dockerd: TestDockerd;
}

/** Runs a command in the device's network namespace; its stdout. */
export async function inDevice(d: PodDevice, ...args: string[]): Promise<string> {
  return (await execFileP(IP, ['netns', 'exec', d.dockerd.netns, ...args])).stdout;
}

/** The running infra container of the device's pod, and its pod IP. */
export async function sandbox(d: PodDevice): Promise<{ id: string; ip: string } | undefined> {
  const [c] = (await engineContainers(d.dockerd.docker, { 'flotilla.node': d.node, 'flotilla.container': 'POD' })).filter((x) => x.state === 'running');
  if (!c) return undefined;
  const ip = Object.values((await d.dockerd.docker.getContainer(c.id).inspect()).NetworkSettings.Networks)[0]?.IPAddress;
  return ip ? { id: c.id, ip } : undefined;
}

/** Runs a command in the device's app container and returns its output. */
export async function execIn(d: PodDevice, cmd: string[]): Promise<{ code: number; output: string }> {
  const [app] = (await engineContainers(d.dockerd.docker, { 'flotilla.node': d.node, 'flotilla.container': 'app' })).filter((x) => x.state === 'running');
  if (!app) throw new Error(`no running app container on ${d.node}`);
  const exec = await d.dockerd.docker.getContainer(app.id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, Tty: true });
  const stream = await exec.start({ hijack: true, stdin: false, Tty: true });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve());
  });
  return { code: (await exec.inspect()).ExitCode ?? -1, output: Buffer.concat(chunks).toString('utf8').trim() };
}

/** Kills wireguard-go daemons of these interface names left by an agent that died (they keep a namespace alive). */
export function killStrayDaemons(names: string[]): void {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (cmdline[0]?.endsWith('wireguard-go') && names.some((n) => cmdline.includes(n))) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}
