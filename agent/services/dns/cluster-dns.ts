import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { cidr, nthAddress, parseCidr } from '../../../shared/net/cidr.js';
import type { ServiceLookup } from './answer.js';
import { parseResolvConf, type PodDnsContext, type ResolvConf } from './resolv.js';
import { DnsServer } from './server.js';

export interface ClusterDnsOptions {
  book: ServiceLookup;
  log: Logger;
  /** The device's resolver configuration: where names outside the cluster go (the kubelet's --resolv-conf). */
  resolvConf: string;
  /** Default 53. */
  port?: number;
}

/** How often the device's resolv.conf is looked at again (its modification time). */
const RESOLV_CHECK_MS = 5_000;

/**
 * The device's cluster DNS (docs/ARCHITECTURE.md, 'DNS'): a DnsServer on the pod gateway, the
 * first address of the pod CIDR, moved when the pod CIDR moves; and what pods' resolv.conf are
 * made of. The service book it answers from is restored from disk before the first reconcile,
 * so names resolve with the hub gone, after an agent restart too.
 */
export class ClusterDns {
  private server?: DnsServer;
  /** The pod gateway while the device has a pod CIDR (whether or not the server is bound yet). */
  private gateway?: string;
  private lastError = '';
  private host: ResolvConf = { nameservers: [], searches: [], options: [] };
  private hostRead?: { at: number; mtimeMs: number };
  private syncing: Promise<void> = Promise.resolve();

  constructor(private readonly opts: ClusterDnsOptions) {}

  /** The address pods are told to ask, or undefined without a pod CIDR. */
  get address(): string | undefined {
    return this.gateway;
  }

  get listening(): boolean {
    return this.server !== undefined;
  }

  /**
   * Serves on the pod CIDR's gateway (undefined: serves nowhere). Run at every reconcile after
   * the network pass: a bind that failed (the bridge not made yet) is tried again then. While
   * the pod network is not ready (`bind` false: a CIDR conflict may put that address on another
   * interface) nothing new is bound, and a server already on that address stays.
   */
  sync(podCIDR: string | undefined, bind = true): Promise<void> {
    this.syncing = this.syncing.then(() => this.doSync(podCIDR, bind));
    return this.syncing;
  }

  private async doSync(podCIDR: string | undefined, bind: boolean): Promise<void> {
    const parsed = podCIDR ? parseCidr(podCIDR) : undefined;
    const gateway = parsed && !('error' in parsed) ? nthAddress(cidr(podCIDR!), 1) : undefined;
    this.gateway = gateway;
    if (this.server && this.server.address === gateway) return;
    if (this.server) {
      this.opts.log.info({ address: this.server.address }, 'dns: stopped');
      await this.server.close();
      this.server = undefined;
    }
    if (!gateway || !bind) return;
    const server = new DnsServer({ address: gateway, port: this.opts.port ?? 53, book: this.opts.book, upstreams: () => this.upstreams(), log: this.opts.log });
    try {
      await server.listen();
      this.server = server;
      this.lastError = '';
      this.opts.log.info({ address: gateway, port: this.opts.port ?? 53 }, 'dns: serving the cluster\'s names');
    } catch (err) {
      const message = (err as Error).message;
      // Once per cause: the next reconcile tries again.
      if (message !== this.lastError) this.opts.log.warn({ address: gateway, err: message }, 'dns: cannot listen yet; trying again at the next reconcile');
      this.lastError = message;
    }
  }

  /** The service book changed: answers are made anew. */
  invalidate(): void {
    this.server?.invalidate();
  }

  async stop(): Promise<void> {
    await this.syncing;
    await this.server?.close();
    this.server = undefined;
  }

  /** What a pod's resolv.conf is made of now. */
  podContext(): PodDnsContext {
    return { ...(this.gateway ? { clusterDns: this.gateway } : {}), host: this.hostResolv() };
  }

  /** The device's resolvers, as glibc reads them: 127.0.0.1 when resolv.conf names none. */
  private upstreams(): { address: string; port: number }[] {
    const servers = this.hostResolv().nameservers;
    return (servers.length ? servers : ['127.0.0.1']).map((address) => ({ address, port: 53 }));
  }

  private hostResolv(): ResolvConf {
    const now = Date.now();
    if (this.hostRead && now - this.hostRead.at < RESOLV_CHECK_MS) return this.host;
    try {
      const mtimeMs = statSync(this.opts.resolvConf).mtimeMs;
      if (this.hostRead?.mtimeMs !== mtimeMs) this.host = parseResolvConf(readFileSync(this.opts.resolvConf, 'utf8'));
      this.hostRead = { at: now, mtimeMs };
    } catch (err) {
      if (this.hostRead?.mtimeMs !== -1) this.opts.log.warn({ path: this.opts.resolvConf, err: (err as Error).message }, 'dns: cannot read the device\'s resolv.conf');
      this.host = { nameservers: [], searches: [], options: [] };
      this.hostRead = { at: now, mtimeMs: -1 };
    }
    return this.host;
  }
}
