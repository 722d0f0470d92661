import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import type { Topics } from '../../shared/protocol/topics.js';
import type { ServiceSpec } from '../../shared/resources/service.js';
import type { Admission } from '../api/resources.js';
import type { MessageBus } from '../broker/bus.js';
import { EmbeddedBroker } from '../broker/embedded.js';
import type { HubConfig } from '../config.js';
import type { Family } from '../metrics/prometheus.js';
import type { OpenedParts } from '../startup.js';
import type { ObjectStore } from '../store/objects.js';
import { parseServiceNetworkSettings, ServiceAllocator } from './allocator.js';
import { ServicePublisher } from './publisher.js';

export interface ServicesPart {
  allocator: ServiceAllocator;
  publisher: ServicePublisher;
  /** The API's admission of a Service: defaults, virtual IP and NodePorts. */
  admission: Record<string, Admission>;
  /** flotilla_service_ips and flotilla_service_node_ports, for /metrics. */
  families(): Family[];
}

/**
 * Starts the hub's side of Services (docs/ARCHITECTURE.md, 'Services'): the allocator of virtual
 * IPs and NodePorts the API's write path calls, and the publisher of Services and endpoints to
 * the devices. A Service stored before the hub allocated addresses gets its own now.
 */
export async function startServices(parts: { config: HubConfig; db: Database; store: ObjectStore; bus: MessageBus; topics: Topics; log: Logger; opened: OpenedParts }): Promise<ServicesPart> {
  const { config, db, store, bus, topics, log, opened } = parts;
  const settings = parseServiceNetworkSettings(config.serviceCIDR, config.serviceNodePortRange, config.clusterCIDR);
  // loadHubConfig has checked them.
  if ('error' in settings) throw new Error(settings.error);
  const allocator = new ServiceAllocator(store, settings);
  allocator.start();
  opened.add('service allocator', () => allocator.stop());
  for (const svc of store.list('Service').items) {
    if ((svc.spec as ServiceSpec).clusterIP) continue;
    try {
      store.mutate('Service', svc.metadata.namespace, svc.metadata.name, (cur) => allocator.admit(cur, undefined));
      log.info({ service: `${svc.metadata.namespace}/${svc.metadata.name}` }, 'virtual IP allocated to a Service stored before allocation');
    } catch (err) {
      log.warn({ service: `${svc.metadata.namespace}/${svc.metadata.name}`, err: (err as Error).message }, 'could not allocate a virtual IP to a stored Service');
    }
  }
  const publisher = new ServicePublisher({ db, store, bus, topics, log: log.child({ part: 'service-publisher' }), retainedOutlivesHub: !(bus instanceof EmbeddedBroker) });
  opened.add('service publisher', () => publisher.stop());
  await publisher.start();
  return {
    allocator,
    publisher,
    admission: { Service: (next, existing) => allocator.admit(next, existing) },
    families: () => {
      const c = allocator.counts();
      return [
        { name: 'flotilla_service_ips', help: 'Virtual IPs of the service CIDR (--service-cidr): allocated to Services, free.', type: 'gauge', samples: [{ labels: { state: 'allocated' }, value: c.ips.allocated }, { labels: { state: 'free' }, value: c.ips.total - c.ips.allocated }] },
        { name: 'flotilla_service_node_ports', help: 'Ports of the NodePort range (--service-node-port-range): allocated to Services, free.', type: 'gauge', samples: [{ labels: { state: 'allocated' }, value: c.nodePorts.allocated }, { labels: { state: 'free' }, value: c.nodePorts.total - c.nodePorts.allocated }] },
      ];
    },
  };
}
