import fs from 'node:fs';
import { PassThrough } from 'node:stream';
import { engineContainers, apply, getPod, podRunning } from './fleet.js';
import { Lab, type LabDevice, type LabRouter } from './lab.js';
import { startLabAgent, startLabHub, type LabHub } from './lab-flotilla.js';
import { mustRunIn, pidsIn, WG } from './netns.js';
import { getJson, waitFor } from './processes.js';
import { TEST_IMAGE } from './images.js';

// Checks of the pod overlay from outside: a pod that answers with the address a request came
// from (busybox httpd and a CGI script printing $REMOTE_ADDR), requests made from inside
// another pod with the engine's exec, the nodes' pod CIDRs and overlay reports as the hub has
// them, and the WireGuard peers a device holds as `wg` shows them in its namespace.

export const ECHO_PORT = 8080;

/**
 * A pod on `node` running busybox httpd on 8080 whose /cgi-bin/ip prints the address the
 * request came from. The command writes the script itself: the test image has no such file.
 */
export function echoPodManifest(name: string, node: string): string {
  const script = [
    'mkdir -p /www/cgi-bin',
    `printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho "$REMOTE_ADDR"\\n' > /www/cgi-bin/ip`,
    'chmod +x /www/cgi-bin/ip',
    `exec httpd -f -p ${ECHO_PORT} -h /www`,
  ].join(' && ');
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  nodeName: ${node}
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ${TEST_IMAGE}
      command: ["/bin/sh", "-c", ${JSON.stringify(script)}]
`;
}

/** Applies an echo pod and waits until it runs with a pod IP; returns that IP. */
export async function runEchoPod(hub: LabHub, name: string, node: string, timeoutMs = 90_000): Promise<string> {
  apply(hub, echoPodManifest(name, node));
  return waitFor(`pod ${name} running with a pod IP`, () => podRunning(hub, name)?.status?.podIP, timeoutMs, 250);
}

export function podIP(hub: LabHub, name: string): string | undefined {
  return getPod(hub, name)?.status?.podIP;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `cmd` in the pod's app container through the device's engine. */
export async function execInPod(device: LabDevice, pod: string, cmd: string[], timeoutMs = 15_000): Promise<ExecResult> {
  const running = (await engineContainers(device.dockerd.docker, { 'flotilla.pod': pod, 'flotilla.container': 'app' })).filter((c) => c.state === 'running');
  if (running.length !== 1) throw new Error(`expected one running app container of ${pod} on ${device.name}, found ${running.length}`);
  const docker = device.dockerd.docker;
  const exec = await docker.getContainer(running[0]!.id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough().on('data', (c: Buffer) => out.push(c));
  const stderr = new PassThrough().on('data', (c: Buffer) => err.push(c));
  docker.modem.demuxStream(stream, stdout, stderr);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    new Promise((r) => stream.on('end', r)),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${cmd.join(' ')} in ${pod} took over ${timeoutMs} ms`)), timeoutMs))),
  ]).finally(() => clearTimeout(timer));
  // The stream can end a moment before the engine records the exit: wait for that record.
  const code = await waitFor(`the exit of ${cmd[0]} in ${pod}`, async () => {
    const state = await exec.inspect();
    return state.Running ? undefined : (state.ExitCode ?? -1);
  }, 5_000, 20);
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

/**
 * From pod `from` on `device`, asks the echo pod at `ip` who is calling; the address it saw
 * (its IPv4-mapped form made plain), or undefined when the request failed. The request is made
 * with busybox nc: the static busybox's wget crashes before it connects (SIGSEGV).
 */
export async function remoteAddrSeenBy(device: LabDevice, from: string, ip: string, timeoutSeconds = 3): Promise<string | undefined> {
  const request = `printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w ${timeoutSeconds} ${ip} ${ECHO_PORT}`;
  const r = await execInPod(device, from, ['sh', '-c', request], (timeoutSeconds + 5) * 1000);
  if (r.code !== 0 || !/^HTTP\/1\.[01] 200 /.test(r.stdout)) return undefined;
  // busybox httpd passes the CGI's output on as it is (here with bare newlines), and gives
  // REMOTE_ADDR from its IPv6 socket in brackets: '[::ffff:10.42.1.2]'.
  const body = r.stdout.split(/\r?\n/).filter(Boolean).at(-1) ?? '';
  return body.replace(/^\[|\]$/g, '').replace(/^::ffff:/, '');
}

/** Waits until pod `from` reaches `ip`; returns the address the receiver saw. */
export async function waitReach(device: LabDevice, from: string, ip: string, timeoutMs = 30_000): Promise<string> {
  return waitFor(`${from} on ${device.name} to reach ${ip}`, () => remoteAddrSeenBy(device, from, ip), timeoutMs, 250);
}

export interface OverlayNodeJson {
  metadata: { name: string };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: {
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    overlay?: {
      overlay: string;
      ready: boolean;
      reason?: string;
      message?: string;
      publicKey?: string;
      implementation?: string;
      interface?: string;
      podCIDR?: string;
      peers?: { node: string; path: 'direct' | 'relay' | 'connecting'; endpoint?: string; latestHandshake?: string; rxBytes: number; txBytes: number }[];
    };
  };
}

export function overlayNode(hub: LabHub, name: string): OverlayNodeJson {
  return getJson<OverlayNodeJson>(hub, ['node', name]);
}

/** Waits until the node is Ready with a pod CIDR and a ready overlay; returns it. */
export async function waitOverlayReady(hub: LabHub, name: string, timeoutMs = 60_000): Promise<OverlayNodeJson> {
  return waitFor(`${name} Ready with its overlay up`, () => {
    const node = overlayNode(hub, name);
    const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    return ready && node.spec?.podCIDR && node.status?.overlay?.ready ? node : undefined;
  }, timeoutMs, 250);
}

export interface WgPeer {
  publicKey: string;
  endpoint?: string;
  allowedIps: string[];
  latestHandshake: number;
  rx: number;
  tx: number;
}

/** The peers of a WireGuard interface in a namespace, from `wg show IF dump`. */
export async function wgPeers(ns: string, ifname: string): Promise<WgPeer[]> {
  const lines = (await mustRunIn(ns, [WG, 'show', ifname, 'dump'])).trim().split('\n').slice(1).filter(Boolean);
  return lines.map((line) => {
    const [publicKey, , endpoint, allowed, handshake, rx, tx] = line.split('\t');
    return {
      publicKey: publicKey!,
      ...(endpoint && endpoint !== '(none)' ? { endpoint } : {}),
      allowedIps: allowed && allowed !== '(none)' ? allowed.split(',') : [],
      latestHandshake: Number(handshake),
      rx: Number(rx),
      tx: Number(tx),
    };
  });
}

/** `wg show IF public-key` in a namespace. */
export async function wgPublicKey(ns: string, ifname: string): Promise<string> {
  return (await mustRunIn(ns, [WG, 'show', ifname, 'public-key'])).trim();
}

export interface OverlayLab {
  lab: Lab;
  hub: LabHub;
  routers: Record<string, LabRouter>;
  devices: Record<string, LabDevice>;
}

/**
 * A lab with a hub and devices whose agents run the overlay: `behind` names the router a device
 * sits behind (routers are made on first mention; devices naming the same one share its LAN
 * and public address). Waits until every node is Ready with its overlay up.
 */
export async function startOverlayLab(label: string, layout: { devices: { name: string; behind?: string }[]; hubArgs?: string[]; agentArgs?: string[] }): Promise<OverlayLab> {
  const lab = await Lab.create(label);
  try {
    const routers: Record<string, LabRouter> = {};
    for (const d of layout.devices) if (d.behind && !routers[d.behind]) routers[d.behind] = await lab.addRouter(d.behind);
    const list = await Promise.all(layout.devices.map((d) => lab.addDevice(d.name, d.behind ? { router: routers[d.behind]! } : {})));
    const devices = Object.fromEntries(list.map((d) => [d.name, d]));
    const hub = await startLabHub(lab, { extraArgs: layout.hubArgs ?? [] });
    for (const device of list) startLabAgent(lab, hub, device, { extraArgs: layout.agentArgs ?? [] });
    await Promise.all(list.map((d) => waitOverlayReady(hub, d.name, 90_000)));
    return { lab, hub, routers, devices };
  } catch (err) {
    await lab.teardown().catch(() => undefined);
    throw err;
  }
}

/**
 * The network namespace of a pod, as a path the host can enter (`nsenter --net=PATH`): its
 * infra container's. The engine reports the container's pid as seen in the harness dockerd's
 * own PID namespace, so the host's pid is found by NSpid, among processes whose parent (the
 * shim) lives in the device's namespace.
 */
export async function podNetnsPath(device: LabDevice, pod: string): Promise<string> {
  const infra = (await engineContainers(device.dockerd.docker, { 'flotilla.pod': pod, 'flotilla.container': 'POD' })).find((c) => c.state === 'running');
  if (!infra) throw new Error(`no running infra container of ${pod} on ${device.name}`);
  const innerPid = (await device.dockerd.docker.getContainer(infra.id).inspect()).State.Pid;
  const shims = new Set(pidsIn(device.ns));
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      const status = fs.readFileSync(`/proc/${ent}/status`, 'utf8');
      const nspid = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number) ?? [];
      const ppid = Number(/^PPid:\s+(\d+)$/m.exec(status)?.[1]);
      if (nspid.length >= 2 && nspid[1] === innerPid && shims.has(ppid)) return `/proc/${ent}/ns/net`;
    } catch {
      // Gone while we looked.
    }
  }
  throw new Error(`no host process for ${pod}'s infra container (pid ${innerPid} in its engine)`);
}
