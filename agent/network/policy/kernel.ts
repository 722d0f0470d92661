import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../shared/net/exec.js';
import type { PolicyPlane } from './enforcer.js';
import { POLICY_TABLE } from './nft.js';

/** The kernel's sysctl that sends bridged IPv4 traffic through the IP hooks, with connection tracking (br_netfilter). */
const BRIDGE_NF_CALL = '/proc/sys/net/bridge/bridge-nf-call-iptables';

/**
 * The device's own kernel for network policy: `nft -f` of a script (one transaction), the
 * table's presence, and the bridge netfilter switch. Traffic between two pods on one bridge is
 * switched, not routed: only with br_netfilter does it meet the inet forward hook, where the
 * policy and its connection tracking are (a `bridge` family table would need the kernel's
 * bridge connection tracking to let replies through, which many kernels lack). Kubernetes
 * needs the same switch on for kube-proxy; Docker turns it on for its own bridges.
 */
export function kernelPolicyPlane(nft = 'nft', bridgeSysctl = BRIDGE_NF_CALL): PolicyPlane {
  return {
    apply: async (script) => {
      // `nft -f` reads a file by name; written in a fresh directory only this user reads, and removed at once.
      const dir = await mkdtemp(join(tmpdir(), 'flotilla-policy-'));
      try {
        const file = join(dir, 'policy.nft');
        await writeFile(file, script, { mode: 0o600 });
        await run(nft, ['-f', file]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    tableExists: async () => (await run(nft, ['list', 'tables', 'inet'])).split('\n').some((line) => line.trim() === `table inet ${POLICY_TABLE}`),
    bridgeFiltering: async () => {
      let value: string;
      try {
        value = (await readFile(bridgeSysctl, 'utf8')).trim();
      } catch {
        return { state: 'unavailable', why: `the kernel's bridge netfilter (br_netfilter) is not loaded (${bridgeSysctl} is missing)` };
      }
      if (value === '1') return { state: 'on' };
      try {
        await writeFile(bridgeSysctl, '1');
        return { state: 'on' };
      } catch (err) {
        return { state: 'unavailable', why: `${bridgeSysctl} is 0 and cannot be set: ${(err as Error).message}` };
      }
    },
  };
}
