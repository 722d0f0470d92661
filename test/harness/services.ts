import { cidr, nthAddress } from '../../shared/net/cidr.js';
import { apply, podRunning } from './fleet.js';
import { TEST_IMAGE } from './images.js';
import type { LabDevice } from './lab.js';
import type { LabHub } from './lab-flotilla.js';
import { BUSYBOX, runIn } from './netns.js';
import { execInPod, overlayNode } from './overlay.js';
import { cli, getJson, waitFor } from './processes.js';

// Services seen from inside the device lab: backends that answer with their pod's name (busybox
// httpd with a CGI script, on a container port named `http`), client pods that ask by name, by
// FQDN or by virtual IP with busybox nc (which resolves through the pod's resolv.conf, so the
// request goes through the device's DNS server and its service proxy), and busybox nslookup for
// A and SRV records. Nothing here knows how the device implements either: only what a pod sees.

export const WHO_PORT = 8080;
export const CLUSTER_DOMAIN = 'cluster.local';

/**
 * A pod on `node` with `labels` whose httpd on 8080 (container port `http`) answers
 * /cgi-bin/who with `NAME REMOTE_ADDR`: the pod's name (written into the script, so it needs no
 * downward API) and the address the request came from.
 */
export function whoPodManifest(name: string, node: string, labels: Record<string, string>): string {
  const script = [
    'mkdir -p /tmp/www/cgi-bin',
    `printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho "${name} $REMOTE_ADDR"\\n' > /tmp/www/cgi-bin/who`,
    'chmod +x /tmp/www/cgi-bin/who',
    `exec httpd -f -p ${WHO_PORT} -h /tmp/www`,
  ].join(' && ');
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: ${JSON.stringify(labels)}
spec:
  nodeName: ${node}
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ${TEST_IMAGE}
      command: ["/bin/sh", "-c", ${JSON.stringify(script)}]
      ports: [{name: http, containerPort: ${WHO_PORT}}]
`;
}

/** A pod on `node` that only sleeps: requests are made from it with exec. */
export function clientPodManifest(name: string, node: string, extraSpec = ''): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  nodeName: ${node}
  terminationGracePeriodSeconds: 1
${extraSpec}  containers:
    - name: app
      image: ${TEST_IMAGE}
      command: ["sleep", "1000000"]
`;
}

/** Applies pod manifests and waits until each runs; returns their pod IPs by name. */
export async function runPods(hub: LabHub, manifests: Record<string, string>, timeoutMs = 90_000): Promise<Record<string, string>> {
  for (const manifest of Object.values(manifests)) apply(hub, manifest);
  const ips = await Promise.all(Object.keys(manifests).map((name) => waitFor(`pod ${name} running with a pod IP`, () => podRunning(hub, name)?.status?.podIP, timeoutMs, 250)));
  return Object.fromEntries(Object.keys(manifests).map((name, i) => [name, ips[i]!]));
}

export interface ServiceJson {
  metadata: { name: string; namespace?: string };
  spec: { type?: string; clusterIP?: string; ports?: { name?: string; port: number; targetPort?: number | string; nodePort?: number; protocol?: string }[] };
}

export function getService(hub: LabHub, name: string): ServiceJson {
  return getJson<ServiceJson>(hub, ['service', name]);
}

/** Waits until the hub has given the Service its virtual IP; returns the Service. */
export async function waitClusterIP(hub: LabHub, name: string, timeoutMs = 20_000): Promise<ServiceJson> {
  return waitFor(`Service ${name} to get a cluster IP`, () => {
    const svc = getService(hub, name);
    return svc.spec.clusterIP ? svc : undefined;
  }, timeoutMs, 200);
}

/** The first address of the node's pod CIDR: its pod bridge's gateway, where its DNS server listens. */
export function podGateway(hub: LabHub, node: string): string {
  const podCIDR = overlayNode(hub, node).spec?.podCIDR;
  if (!podCIDR) throw new Error(`node ${node} has no pod CIDR`);
  return nthAddress(cidr(podCIDR), 1);
}

function httpRequest(host: string, port: number, timeoutSeconds: number): string {
  return `printf 'GET /cgi-bin/who HTTP/1.0\\r\\n\\r\\n' | nc -w ${timeoutSeconds} ${host} ${port}`;
}

/** The `NAME REMOTE_ADDR` line of a who pod's answer, or undefined for no HTTP 200. */
function whoLine(output: string): { name: string; from: string } | undefined {
  if (!/^HTTP\/1\.[01] 200 /.test(output)) return undefined;
  const last = output.split(/\r?\n/).filter(Boolean).at(-1) ?? '';
  const [name, from] = last.split(' ');
  // busybox httpd gives REMOTE_ADDR from its IPv6 socket: '[::ffff:10.42.1.2]'.
  return name ? { name, from: (from ?? '').replace(/^\[|\]$/g, '').replace(/^::ffff:/, '') } : undefined;
}

/**
 * From pod `from` on `device`, one request to `host:port` (a name is resolved in the pod, through
 * its resolv.conf); which pod answered and the address it saw, or undefined when it failed.
 */
export async function whoFrom(device: LabDevice, from: string, host: string, port: number, timeoutSeconds = 3): Promise<{ name: string; from: string } | undefined> {
  const r = await execInPod(device, from, ['sh', '-c', httpRequest(host, port, timeoutSeconds)], (timeoutSeconds + 5) * 1000);
  return r.code === 0 ? whoLine(r.stdout) : undefined;
}

/** Waits until pod `from` gets an answer from `host:port`; returns it. */
export async function waitWho(device: LabDevice, from: string, host: string, port: number, timeoutMs = 30_000): Promise<{ name: string; from: string }> {
  return waitFor(`${from} on ${device.name} to reach ${host}:${port}`, () => whoFrom(device, from, host, port, 2), timeoutMs, 200);
}

/**
 * `count` requests from pod `from` to `host:port`, one new connection (and one name lookup) each,
 * in one shell in the pod; how many each pod answered ('' counts the failures).
 */
export async function whoMany(device: LabDevice, from: string, host: string, port: number, count: number): Promise<Map<string, number>> {
  // One line per request, 'R:' and the answer's last line (empty when the request failed).
  const loop = `i=0; while [ $i -lt ${count} ]; do out=$(${httpRequest(host, port, 3)} | tail -n 1); echo "R:$out"; i=$((i+1)); done`;
  const r = await execInPod(device, from, ['sh', '-c', loop], count * 4_000 + 10_000);
  const tally = new Map<string, number>();
  const rounds = r.stdout.split(/\r?\n/).filter((line) => line.startsWith('R:'));
  for (const line of rounds) {
    const name = line.slice(2).trim().split(' ')[0] ?? '';
    tally.set(name, (tally.get(name) ?? 0) + 1);
  }
  if (rounds.length < count) tally.set('', (tally.get('') ?? 0) + count - rounds.length);
  return tally;
}

/** From outside any pod: one request to `host:port` from namespace `ns`, with the host's busybox. */
export async function whoFromNamespace(ns: string, host: string, port: number, timeoutSeconds = 3): Promise<{ name: string; from: string } | undefined> {
  const r = await runIn(ns, [BUSYBOX, 'sh', '-c', httpRequest(host, port, timeoutSeconds).replace('| nc ', `| ${BUSYBOX} nc `)], { timeoutMs: (timeoutSeconds + 5) * 1000 });
  return r.code === 0 ? whoLine(r.stdout) : undefined;
}

export interface Lookup {
  /** The server answered that the name does not exist. */
  nxdomain: boolean;
  /** A records. */
  addresses: string[];
  /** SRV records. */
  srv: { priority: number; weight: number; port: number; target: string }[];
  output: string;
}

/**
 * busybox nslookup in pod `from`, through the pod's resolv.conf. A name with a trailing dot is
 * asked as it is; without, nslookup walks the search list as a resolver does.
 */
export async function nslookup(device: LabDevice, from: string, name: string, type: 'A' | 'SRV' = 'A'): Promise<Lookup> {
  const r = await execInPod(device, from, ['nslookup', ...(type === 'A' ? [] : [`-type=${type}`]), name], 15_000);
  const output = r.stdout + r.stderr;
  const addresses: string[] = [];
  const srv: Lookup['srv'] = [];
  let inAnswer = false;
  for (const line of output.split('\n')) {
    if (/^Name:\s/.test(line) || /answer:/.test(line)) inAnswer = true;
    const address = /^Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    // The server's own address comes first, as 'Address:\tIP:53', before any answer.
    if (address && inAnswer) addresses.push(address[1]!);
    const record = /\sservice = (\d+) (\d+) (\d+) (\S+)/.exec(line);
    if (record) srv.push({ priority: Number(record[1]), weight: Number(record[2]), port: Number(record[3]), target: record[4]!.replace(/\.$/, '') });
  }
  return { nxdomain: /NXDOMAIN/.test(output) && addresses.length === 0 && srv.length === 0, addresses, srv, output };
}

/** `flotilla get svc` as printed (the table). */
export function getServicesTable(hub: LabHub): string {
  const r = cli(hub, ['get', 'svc']);
  if (r.code !== 0) throw new Error(`flotilla get svc failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}
