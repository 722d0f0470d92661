import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { requireTool, type TestDockerd } from './dockerd.js';
import { REPO, spawnLogged, startAgent, waitFor, type ManagedProcess, type RunningHub } from './processes.js';

// A device as it is in the field: the agent shares a network namespace with its container engine,
// so it reaches its pods' IPs directly. Here that namespace is the harness dockerd's own. The agent
// inside reaches the hub through two relays joined by a unix socket (a file, visible from every
// namespace): no address or route is ever added on the host. Cutting the host-side relay is a
// network partition.

const execFileP = promisify(execFile);
const IP = '/usr/sbin/ip';
const RELAY = join(REPO, 'test', 'harness', 'relay.mjs');

export interface DeviceAgent {
  process: ManagedProcess;
  /** The hub's MQTT URL as the agent inside the namespace uses it. */
  hubUrl: string;
  /** Cuts the device off the hub: every connection through the relay drops, and new ones are refused. */
  partition(): Promise<void>;
  /** Lets the device reach the hub again. */
  heal(): Promise<void>;
}

/**
 * Starts a byte relay (relay.mjs) and waits for the endpoint it listens on; in a network
 * namespace by name (`ip netns exec`) or through a wrapper (`nsenter --net=…`, which keeps /sys).
 */
export async function startRelay(listen: string, connect: string, logPath: string, where: { netns?: string; wrap?: string[] } = {}): Promise<{ process: ManagedProcess; listening: number | string }> {
  const proc = spawnLogged([RELAY, listen, connect], logPath, REPO, {}, where.netns, where.wrap);
  const listening = await waitFor(`the relay ${listen} -> ${connect}`, () => {
    if (proc.exitCode !== undefined) throw new Error(`relay exited with ${proc.exitCode}: ${proc.log()}`);
    const line = proc.log().split('\n').find((l) => l.startsWith('{"listening"'));
    return line ? (JSON.parse(line) as { listening: number | string }).listening : undefined;
  }, 10_000, 50);
  return { process: proc, listening };
}

/**
 * Starts an agent inside `dockerd`'s network namespace, joined to `hub` through a loopback relay.
 * Every process it starts is a ManagedProcess, so `stopAll()` ends it by pid even when a test fails.
 */
export async function startDeviceAgent(opts: { hub: RunningHub; dockerd: TestDockerd; name: string; stateDir: string; labels?: Record<string, string>; extraArgs?: string[] }): Promise<DeviceAgent> {
  requireTool(IP);
  const { hub, dockerd, name } = opts;
  const dir = dirname(opts.stateDir);
  // Loopback carries the relay inside the namespace; a namespace starts with it down.
  await execFileP(IP, ['netns', 'exec', dockerd.netns, IP, 'link', 'set', 'lo', 'up']);
  const socketPath = join(dir, `hub-${name}.sock`);
  const hostSide = () => startRelay(`unix:${socketPath}`, `tcp:127.0.0.1:${hub.mqttPort}`, join(dir, `relay-host-${name}.log`));
  let hostRelay: ManagedProcess | undefined = (await hostSide()).process;
  const deviceRelay = await startRelay('tcp:127.0.0.1:0', `unix:${socketPath}`, join(dir, `relay-device-${name}.log`), { netns: dockerd.netns });
  const hubUrl = `mqtt://127.0.0.1:${deviceRelay.listening}`;
  const agent = startAgent({ hub, name, stateDir: opts.stateDir, dockerHost: dockerd.dockerHost, netns: dockerd.netns, hubUrl, ...(opts.labels ? { labels: opts.labels } : {}), ...(opts.extraArgs ? { extraArgs: opts.extraArgs } : {}) });
  return {
    process: agent,
    hubUrl,
    partition: async () => {
      await hostRelay?.stop();
      hostRelay = undefined;
    },
    heal: async () => {
      hostRelay ??= (await hostSide()).process;
    },
  };
}
