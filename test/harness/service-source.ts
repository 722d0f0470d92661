import type { EndpointAnnouncement, ServiceAnnouncement } from '../../shared/protocol/services.js';

/** The service book's read side from plain maps, for the service proxy's tests and benchmark. */
export class MemoryServices {
  readonly svcs = new Map<string, ServiceAnnouncement>();
  readonly eps = new Map<string, Map<string, EndpointAnnouncement>>();
  services(): ReadonlyMap<string, ServiceAnnouncement> {
    return this.svcs;
  }
  endpoints(ns: string, name: string): ReadonlyMap<string, EndpointAnnouncement> {
    return this.eps.get(`${ns}/${name}`) ?? new Map();
  }
}
