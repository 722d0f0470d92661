/**
 * The overlay's nftables table, `ip flotilla`: a masquerade for pod traffic that leaves the
 * cluster CIDR for the outside world, and nothing else. Traffic between pod CIDRs is never
 * masqueraded, so a receiver sees the sender's pod IP (the Kubernetes network model). The table
 * is replaced whole in one `nft -f` transaction (declare, delete, define), so a pass never
 * leaves half a ruleset, and it is recognised by the comment it carries: a table whose comment
 * is the one wanted is left alone.
 */
export const NFT_TABLE = 'flotilla';

/** What the table's comment says: the version of its layout and the CIDRs it was made for. */
export function firewallMarker(podCIDR: string, clusterCIDR: string): string {
  return `flotilla v1 pod=${podCIDR} cluster=${clusterCIDR}`;
}

export function firewallRuleset(podCIDR: string, clusterCIDR: string): string {
  return [
    `table ip ${NFT_TABLE}`,
    `delete table ip ${NFT_TABLE}`,
    `table ip ${NFT_TABLE} {`,
    `  comment "${firewallMarker(podCIDR, clusterCIDR)}"`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ip saddr ${podCIDR} ip daddr != ${clusterCIDR} masquerade`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** The comment of the table as `nft list table` prints it; undefined when it has none. */
export function parseFirewallMarker(listing: string): string | undefined {
  return /^\s*comment "([^"]*)"/m.exec(listing)?.[1];
}
