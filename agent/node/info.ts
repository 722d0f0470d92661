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

function internalIP(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
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
