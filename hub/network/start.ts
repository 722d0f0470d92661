import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import type { Topics } from '../../shared/protocol/topics.js';
import type { MessageBus } from '../broker/bus.js';
import { EmbeddedBroker } from '../broker/embedded.js';
import type { HubConfig } from '../config.js';
import type { EventRecorder } from '../events/recorder.js';
import type { Family } from '../metrics/prometheus.js';
import type { OpenedParts } from '../startup.js';
import type { ObjectStore } from '../store/objects.js';
import { parsePodNetworkSettings } from './ipam.js';
import { IpamController } from './ipam-controller.js';
import { PeerPublisher, type PeerPublisherOptions } from './peers.js';

export interface PodNetwork {
  ipam: IpamController;
  peers: PeerPublisher;
  /** A node's pod CIDR as the IPAM holds it. */
  podCIDROf(node: string): string | undefined;
  /** flotilla_overlay_nodes and flotilla_ipam_cidrs, for /metrics. */
  families(): Family[];
}

/**
 * Starts the hub's side of the pod network (docs/ARCHITECTURE.md, 'The pod network'): the IPAM
 * that gives each node its pod CIDR, and the publisher of the peer table. A deleted node's block
 * is released and its peer cleared by their own watches.
 */
export async function startPodNetwork(
  parts: { config: HubConfig; db: Database; store: ObjectStore; bus: MessageBus; topics: Topics; events: EventRecorder; log: Logger; opened: OpenedParts },
  relay: Pick<PeerPublisherOptions, 'observedEndpoint'> = {},
): Promise<PodNetwork> {
  const { config, db, store, bus, topics, events, log, opened } = parts;
  const settings = parsePodNetworkSettings(config.clusterCIDR, config.nodeCIDRMaskSize);
  // loadHubConfig has checked them.
  if ('error' in settings) throw new Error(settings.error);
  const ipam = new IpamController({ store, events, log: log.child({ part: 'ipam' }) }, db, settings);
  ipam.start();
  opened.add('ipam', () => ipam.stop());
  const podCIDROf = (node: string) => ipam.allocator.blockOf(node);
  const peers = new PeerPublisher({ db, store, bus, topics, log: log.child({ part: 'peers' }), retainedOutlivesHub: !(bus instanceof EmbeddedBroker), podCIDROf, ...relay });
  opened.add('peers', () => peers.stop());
  await peers.start();
  return {
    ipam,
    peers,
    podCIDROf,
    families: () => {
      const overlay = peers.overlayCounts();
      const cidrs = ipam.counts();
      return [
        { name: 'flotilla_overlay_nodes', help: 'Nodes by the state of their WireGuard overlay as their agents report it: ready, unavailable (NetworkUnavailable=True), disabled (--overlay none).', type: 'gauge', samples: (['ready', 'unavailable', 'disabled'] as const).map((state) => ({ labels: { state }, value: overlay[state] })) },
        { name: 'flotilla_ipam_cidrs', help: 'Pod CIDR blocks of the cluster CIDR: allocated to nodes, quarantined (released less than an hour ago), free.', type: 'gauge', samples: (['allocated', 'quarantined', 'free'] as const).map((state) => ({ labels: { state }, value: cidrs[state] })) },
      ];
    },
  };
}
