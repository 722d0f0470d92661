import fs from 'node:fs';
import path from 'node:path';
import { startRelay } from './device.js';
import { HUB_ADDRESS, type Lab, type LabDevice } from './lab.js';
import { NSENTER, netnsPath } from './netns.js';
import { startAgent, startHub, type ManagedProcess, type RunningHub } from './processes.js';

// Flotilla in the device lab: the hub inside the lab's hub namespace (listening on 203.0.113.1,
// running its WireGuard relay there), agents inside their devices' namespaces reaching its MQTT
// over the lab's network, and the test reaching the hub's HTTP API through two relays joined by
// a unix socket, so the host's namespace gains no address and no route.


export interface LabHub extends RunningHub {
  ns: string;
  /** The relay's WireGuard interface in the hub's namespace. */
  relayIfname: string;
  relayPort: number;
  /** Stops the hub (an orderly stop); the API relays stay, so a restart is reachable again. */
  stop(): Promise<void>;
  /** Starts the hub again on the same data, ports and flags. */
  start(): Promise<void>;
}


/**
 * The hub in the lab's hub namespace: `--listen 0.0.0.0` so devices reach its MQTT, the relay
 * on with a unique interface name. `extraArgs` come after and may override (e.g. `--relay off`).
 */
export async function startLabHub(lab: Lab, opts: { extraArgs?: string[]; relayPort?: number } = {}): Promise<LabHub> {
  const dataDir = path.join(lab.dirs.path, 'hub');
  fs.mkdirSync(dataDir, { recursive: true });
  const relayIfname = lab.ifname('frl');
  const relayPort = opts.relayPort ?? 51820;
  const args = ['--listen', '0.0.0.0', '--relay', 'on', '--relay-interface', relayIfname, '--relay-port', String(relayPort), ...(opts.extraArgs ?? [])];
  const wrap = [NSENTER, `--net=${netnsPath(lab.hubNs)}`, '--'];
  const first = await startHub({ dataDir, extraArgs: args, wrap, logDir: lab.dirs.path });
  const socketPath = path.join(lab.dirs.path, 'hub-api.sock');
  const inside = await startRelay(`unix:${socketPath}`, `tcp:127.0.0.1:${first.apiPort}`, path.join(lab.dirs.path, 'api-relay-hub.log'), { wrap: [NSENTER, `--net=${netnsPath(lab.hubNs)}`, '--'] });
  const outside = await startRelay('tcp:127.0.0.1:0', `unix:${socketPath}`, path.join(lab.dirs.path, 'api-relay-host.log'));
  const hub: LabHub = {
    ...first,
    ns: lab.hubNs,
    relayIfname,
    relayPort,
    apiUrl: `http://127.0.0.1:${outside.listening}`,
    mqttUrl: `mqtt://${HUB_ADDRESS}:${first.mqttPort}`,
    stop: async () => hub.process.stop(),
    start: async () => {
      const again = await startHub({ dataDir, apiPort: first.apiPort, mqttPort: first.mqttPort, extraArgs: args, wrap, logDir: lab.dirs.path });
      hub.process = again.process;
    },
  };
  lab.onTeardown(async () => {
    await hub.process.stop();
    await outside.process.stop();
    await inside.process.stop();
  });
  return hub;
}

export interface LabAgentOptions {
  overlay?: 'wireguard' | 'none';
  extraArgs?: string[];
  labels?: Record<string, string>;
  env?: Record<string, string>;
  nodeOptions?: string[];
}

const agents = new WeakMap<LabDevice, ManagedProcess>();

/**
 * Starts (or starts again) the device's agent in its namespace, reaching the hub over the lab
 * at 203.0.113.1, with its own WireGuard interface name and port.
 */
export function startLabAgent(lab: Lab, hub: LabHub, device: LabDevice, opts: LabAgentOptions = {}): ManagedProcess {
  const overlay = opts.overlay ?? 'wireguard';
  // The interface name goes with --overlay none too: the operator changes that one flag, and
  // the agent must find by its name the interface it made before.
  const overlayArgs = ['--overlay', overlay, '--wireguard-interface', device.wgIfname, '--wireguard-port', String(device.wgPort)];
  const proc = startAgent({
    hub,
    name: device.name,
    stateDir: device.stateDir,
    dockerHost: device.dockerd.dockerHost,
    netns: device.ns,
    hubUrl: hub.mqttUrl,
    extraArgs: [...overlayArgs, ...(opts.extraArgs ?? [])],
    ...(opts.labels ? { labels: opts.labels } : {}),
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.nodeOptions ? { nodeOptions: opts.nodeOptions } : {}),
  });
  if (!agents.has(device)) lab.onTeardown(async () => agents.get(device)?.stop());
  agents.set(device, proc);
  return proc;
}

/** The device's running agent, as last started. */
export function agentOf(device: LabDevice): ManagedProcess {
  const proc = agents.get(device);
  if (!proc) throw new Error(`no agent was started on ${device.name}`);
  return proc;
}
