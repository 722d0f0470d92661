import type { NodeNetworkReport } from '../../shared/protocol/network.js';
import type { NodeSpec, NodeStatus } from '../../shared/resources/node.js';
import { ENDPOINTS_ANNOTATION } from '../network/annotations.js';
import { age, kv, table } from './print.js';


/** Bytes as `ip -s` and `wg show` print them: B, KiB, MiB, GiB. */
export function bytesText(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * A node's pod network in `flotilla describe node`: its pod CIDR, its WireGuard interface as the
 * agent reports it with the endpoints the hub published for it, and its peers (path, last
 * handshake, bytes each way).
 */
export function describeNodeNetwork(spec: NodeSpec | undefined, status: NodeStatus, annotations: Record<string, string> | undefined): string[] {
  const lines = [kv('PodCIDR', spec?.podCIDR), kv('PodCIDRs', spec?.podCIDRs?.join(','))];
  const overlay: NodeNetworkReport | undefined = status.overlay;
  if (!overlay) return lines;
  if (overlay.overlay === 'none') return [...lines, kv('WireGuard', 'off (--overlay none)')];
  lines.push(
    'WireGuard:',
    kv('Ready', overlay.ready ? 'True' : `False${overlay.reason ? ` (${overlay.reason})` : ''}`, 2),
    kv('Implementation', overlay.implementation, 2),
    kv('Interface', overlay.interface, 2),
    kv('Public Key', overlay.publicKey, 2),
    kv('Port', overlay.port, 2),
    kv('Endpoints', annotations?.[ENDPOINTS_ANNOTATION], 2),
  );
  if (overlay.relay) lines.push(kv('Relay', `handshake ${overlay.relay.latestHandshake ? `${age(overlay.relay.latestHandshake)} ago` : 'never'}, rx ${bytesText(overlay.relay.rxBytes)}, tx ${bytesText(overlay.relay.txBytes)}`, 2));
  lines.push('Peers:');
  const peers = overlay.peers ?? [];
  if (peers.length === 0) lines.push('  <none>');
  else {
    const rows = [['NODE', 'PATH', 'ENDPOINT', 'LATEST HANDSHAKE', 'RX', 'TX'], ...peers.map((p) => [p.node, p.path, p.endpoint ?? '<none>', p.latestHandshake ? `${age(p.latestHandshake)} ago` : 'never', bytesText(p.rxBytes), bytesText(p.txBytes)])];
    lines.push(...table(rows).split('\n').map((l) => `  ${l}`));
  }
  if (overlay.morePeers) lines.push(`  and ${overlay.morePeers} more`);
  return lines;
}
