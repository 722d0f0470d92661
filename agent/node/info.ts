import { readFileSync } from 'node:fs';
import { cpus, hostname, networkInterfaces, platform, release, totalmem } from 'node:os';
import type { NodeReport } from '../../shared/protocol/messages.js';
import { FLOTILLA_VERSION } from '../../shared/version.js';
import type { EngineInfo } from '../runtime/runtime.js';
import { fsUsage, memoryAvailableBytes, pressureConditions } from './pressure.js';

/** Node's process.arch in the names Kubernetes and Docker use (GOARCH). */
export function goArch(arch = process.arch): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' } as Record<string, string>)[arch] ?? arch;
}

function osImage(): string | undefined {
  try {
    const text = readFileSync('/etc/os-release', 'utf8');
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(text)?.[1];
  } catch {
    return undefined;
  }
}

/** The node's InternalIP, as it reports it: the first IPv4 address of an interface other than loopback. */
export function internalIP(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

/** How long the system facts (host name, kernel, CPUs, memory, addresses, OS image) are kept. */
export const NODE_FACTS_TTL_MS = 300_000;
/** How long a reading of memory and disk pressure is kept: the kubelet's eviction monitoring interval. */
export const PRESSURE_TTL_MS = 10_000;

/**
 * nodeReport with its readings kept for a while. A report is built on every status check (every
 * few seconds) and every reconcile; its facts cost several system calls and file reads (about a
 * third of a millisecond each time) yet change rarely, so a device reads them at most every
 * NODE_FACTS_TTL_MS and its memory and disk pressure every PRESSURE_TTL_MS; while nothing
 * changed it returns the same object, which a caller can compare by identity.
 */
export class NodeReporter {
  private facts: { at: number; report: NodeReport } | undefined;
  private pressure: { at: number; key: string; conditions: NodeReport['conditions'] } | undefined;
  /** The last report and what it was made of: the same inputs give the same object. */
  private last: { inputs: unknown[]; report: NodeReport } | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  report(engine: EngineInfo | undefined, engineError: string | undefined, maxPods: number, pressurePaths: readonly (string | undefined)[] = []): NodeReport {
    const now = this.now();
    const paths = pressurePaths.filter((p): p is string => p !== undefined);
    const key = paths.join('\0');
    if (!this.pressure || now - this.pressure.at >= PRESSURE_TTL_MS || this.pressure.key !== key) {
      const conditions = pressureConditions(memoryAvailableBytes(), paths.map((p) => fsUsage(p)));
      // The same readings keep the same array, so an unchanged report stays the same object.
      const same = this.pressure && JSON.stringify(this.pressure.conditions) === JSON.stringify(conditions);
      this.pressure = { at: now, key, conditions: same ? this.pressure!.conditions : conditions };
    }
    if (!this.facts || now - this.facts.at >= NODE_FACTS_TTL_MS) {
      const report = nodeReport(undefined, undefined, maxPods, []);
      const same = this.facts && JSON.stringify(this.facts.report) === JSON.stringify(report);
      this.facts = { at: now, report: same ? this.facts!.report : report };
    }
    const inputs = [this.facts.report, this.pressure.conditions, engine?.name, engine?.version, engineError, maxPods];
    if (this.last && inputs.every((v, i) => v === this.last!.inputs[i])) return this.last.report;
    const base = this.facts.report;
    const report: NodeReport = {
      info: { ...base.info, ...(engine ? { containerRuntimeVersion: `${engine.name}://${engine.version}` } : {}) },
      capacity: { ...base.capacity, pods: String(maxPods) },
      addresses: base.addresses,
      engineReady: engine !== undefined,
      ...(engineError ? { engineMessage: engineError } : {}),
      conditions: this.pressure.conditions,
    };
    this.last = { inputs, report };
    return report;
  }
}

/** What a device tells the hub about itself: system info, capacity, addresses, the engine's health. */
export function nodeReport(engine: EngineInfo | undefined, engineError: string | undefined, maxPods: number, pressurePaths: readonly (string | undefined)[] = []): NodeReport {
  const ip = internalIP();
  const image = osImage();
  return {
    info: {
      hostname: hostname(),
      operatingSystem: platform(),
      ...(image ? { osImage: image } : {}),
      kernelVersion: release(),
      architecture: goArch(),
      ...(engine ? { containerRuntimeVersion: `${engine.name}://${engine.version}` } : {}),
      agentVersion: FLOTILLA_VERSION,
    },
    capacity: { cpu: String(cpus().length), memory: `${Math.floor(totalmem() / 1024)}Ki`, pods: String(maxPods) },
    addresses: [{ type: 'Hostname', address: hostname() }, ...(ip ? [{ type: 'InternalIP' as const, address: ip }] : [])],
    engineReady: engine !== undefined,
    ...(engineError ? { engineMessage: engineError } : {}),
    conditions: pressureConditions(
      memoryAvailableBytes(),
      pressurePaths.filter((p): p is string => p !== undefined).map((p) => fsUsage(p)),
    ),
  };
}
