import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Container } from '../../shared/resources/pod.js';
import type { Probe } from '../../shared/resources/probe.js';
import { FLOTILLA_VERSION } from '../../shared/version.js';
import type { ContainerRuntime } from '../runtime/runtime.js';
import type { ProbeOutcome } from './state.js';

/** Where a probe of one container instance goes: the engine's id, and the pod's address as the agent reaches it. */
export interface ProbeTarget {
  containerId: string;
  container: Container;
  /** The pod's IP on the pod network, or 127.0.0.1 for a host-network pod; undefined until the engine gave one. */
  address: string | undefined;
}

/** Runs one probe's handler once; never rejects: an error is a failed probe, as Kubernetes counts it. */
export async function runProbe(runtime: ContainerRuntime, probe: Probe, target: ProbeTarget): Promise<ProbeOutcome> {
  const timeoutMs = probe.timeoutSeconds * 1000;
  try {
    if (probe.exec) return await execProbe(runtime, target.containerId, probe.exec.command, timeoutMs);
    if (probe.httpGet) return await httpProbe(probe.httpGet, target, timeoutMs);
    if (probe.tcpSocket) return await tcpProbe(probe.tcpSocket, target, timeoutMs);
    return { ok: false, message: 'probe has no handler' };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

async function execProbe(runtime: ContainerRuntime, id: string, command: readonly string[], timeoutMs: number): Promise<ProbeOutcome> {
  const { exitCode, output } = await runtime.exec(id, command, timeoutMs);
  // Kubernetes' exec probe: exit status 0 is success; the message is the command's output.
  if (exitCode === 0) return { ok: true };
  return { ok: false, message: output.trim() || `command ${JSON.stringify(command)} exited with ${exitCode}` };
}

/** A port by number, or by the name of one of the container's ports, as Kubernetes resolves it. */
function resolvePort(port: number | string, container: Container): number {
  if (typeof port === 'number') return port;
  const named = container.ports?.find((p) => p.name === port);
  if (!named) throw new Error(`unable to find port "${port}" in container ${container.name}`);
  return named.containerPort;
}

function hostOf(host: string | undefined, target: ProbeTarget): string {
  const address = host || target.address;
  if (!address) throw new Error('the pod has no IP address yet');
  return address;
}

function httpProbe(get: NonNullable<Probe['httpGet']>, target: ProbeTarget, timeoutMs: number): Promise<ProbeOutcome> {
  const host = hostOf(get.host, target);
  const port = resolvePort(get.port, target.container);
  const path = get.path ? (get.path.startsWith('/') ? get.path : `/${get.path}`) : '/';
  const secure = get.scheme === 'HTTPS';
  const url = `${secure ? 'https' : 'http'}://${net.isIPv6(host) ? `[${host}]` : host}:${port}${path}`;
  const headers: Record<string, string> = { 'User-Agent': `flotilla-probe/${FLOTILLA_VERSION}`, Accept: '*/*' };
  for (const h of get.httpHeaders ?? []) headers[h.name] = h.value;
  return new Promise((resolve) => {
    // Kubernetes does not verify an HTTPS probe's certificate, and does not follow redirects
    // away from the pod: a 3xx is success.
    const req = (secure ? https : http).request(url, { method: 'GET', headers, agent: false, rejectUnauthorized: false }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve(status >= 200 && status < 400 ? { ok: true } : { ok: false, message: `HTTP probe failed with statuscode: ${status}` });
      req.destroy();
    });
    const timer = setTimeout(() => req.destroy(new Error(`timed out after ${timeoutMs / 1000}s`)), timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (err) => resolve({ ok: false, message: `Get "${url}": ${err.message}` }));
    req.end();
  });
}

function tcpProbe(tcp: NonNullable<Probe['tcpSocket']>, target: ProbeTarget, timeoutMs: number): Promise<ProbeOutcome> {
  const host = hostOf(tcp.host, target);
  const port = resolvePort(tcp.port, target.container);
  return new Promise((resolve) => {
    // Kubernetes' TCP probe: success is a connection made, closed again at once.
    const socket = net.connect({ host, port });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`i/o timeout after ${timeoutMs / 1000}s`)));
    socket.once('connect', () => {
      resolve({ ok: true });
      socket.destroy();
    });
    socket.once('error', (err) => resolve({ ok: false, message: `dial tcp ${host}:${port}: ${err.message}` }));
  });
}
