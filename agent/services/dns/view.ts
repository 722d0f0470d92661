import type { EndpointAnnouncement, ServiceAnnouncement } from '../../../shared/protocol/services.js';
import type { ServiceLookup } from './answer.js';

/**
 * The Services the DNS server names: the service book's, each taken in only once the service
 * proxy has had it (the agent calls take() after the proxy's sync of that burst). A name that
 * resolved before its virtual IP was in the kernel would send a client's first SYN nowhere, and
 * the client would wait for TCP's retransmission, a second or more, on every new Service
 * (bench/services-reach.bench.ts). A sync that fails still lets the Services in, so DNS never
 * answers less than the book holds because of the kernel. Endpoints are read from the book as
 * they are: they change no virtual IP.
 */
export class AnsweredServices implements ServiceLookup {
  private readonly svc = new Map<string, ServiceAnnouncement>();

  constructor(private readonly book: ServiceLookup) {}

  /** Takes the book's present state of these Services (`namespace/name` keys). */
  take(keys: Iterable<string>): void {
    for (const key of keys) {
      const slash = key.indexOf('/');
      const found = this.book.service(key.slice(0, slash), key.slice(slash + 1));
      if (found) this.svc.set(key, found);
      else this.svc.delete(key);
    }
  }

  services(): ReadonlyMap<string, ServiceAnnouncement> {
    return this.svc;
  }

  service(namespace: string, name: string): ServiceAnnouncement | undefined {
    return this.svc.get(`${namespace}/${name}`);
  }

  endpoints(namespace: string, name: string): ReadonlyMap<string, EndpointAnnouncement> {
    return this.book.endpoints(namespace, name);
  }
}
