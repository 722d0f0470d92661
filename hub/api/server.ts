import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { parseSelector, SelectorError, type Selector } from '../../shared/labels/selector.js';
import { kindByPlural } from '../../shared/resources/kinds.js';
import { FLOTILLA_VERSION } from '../../shared/version.js';
import type { DiskHealth } from '../store/disk.js';
import { isDiskFull } from '../store/errors.js';
import type { ObjectStore } from '../store/objects.js';
import type { WatchEvent } from '../store/types.js';
import { DEFAULT_BODY_LIMIT, parseBody, readBody } from './body.js';
import { dryRunOf, dryRunOfDeleteOptions } from './dry-run.js';
import { HubError, toHubError } from './errors.js';
import type { EvictionRoutes } from './eviction.js';
import type { PodLogRoutes } from './logs.js';
import type { MetricsRoutes } from './metrics.js';
import type { ResourceService } from './resources.js';
import type { RolloutRoutes } from './rollout.js';
import type { TokenRoutes } from './tokens.js';

export interface ApiOptions {
  host: string;
  port: number;
  /** Checks the bearer token of a request. */
  authorize: (token: string) => boolean;
  bodyLimit?: number;
  /** The data directory's disk: told of writes that failed for lack of space, asked for /healthz. */
  disk?: { health(): DiskHealth; storeFull(err: unknown): boolean };
  /** Unsent bytes a watch may hold for its client (DEFAULT_WATCH_BUFFER_BYTES when absent). */
  watchBufferBytes?: number;
}

/**
 * What a watch may hold for a client that does not read: when the events not yet taken by the
 * client's connection are over this, the watch is closed and the client lists again, as the
 * Kubernetes API server's watch cache closes a watcher that does not keep up (cacheWatcher's
 * "Forcing watcher close due to unresponsiveness"). A watcher that reads keeps its buffer near
 * empty: the connection takes each event as it is written.
 */
export const DEFAULT_WATCH_BUFFER_BYTES = 2 * 1024 * 1024;
/** How long a watch closed for falling behind may take to send what it holds before its connection is cut. */
const WATCH_CLOSE_GRACE_MS = 5_000;

/**
 * The hub's HTTP API, Kubernetes-shaped paths over the store:
 *   /api/v1/{plural}                                  list (all namespaces), create (cluster-scoped)
 *   /api/v1/{plural}/{name}                           cluster-scoped object
 *   /api/v1/namespaces/{ns}/{plural}[/{name}]         namespaced list / object
 *   /api/v1/namespaces/{ns}/pods/{name}/log           a container's output, streamed from its device
 *   /api/v1/namespaces/{ns}/pods/{name}/eviction      POST: evict the pod, within its workload's budget (429 if not now)
 *   /api/v1/apply                                     create-or-update a batch of manifests
 *   /api/v1/tokens[/{id}]                             join tokens and device credentials
 *   /api/v1/metrics/{query,pods,nodes}                devices' metrics: range queries, usage (see metrics.ts)
 *   /apis/flotilla/v1/namespaces/{ns}/daemonsets/{name}/rollout[/preview]   POST: pause|resume|abort a Waves rollout; preview its waves (see rollout.ts)
 *   /apis/flotilla/v1/namespaces/{ns}/deployments/{name}/rollout[/preview]  the same for a Deployment of strategy type Waves
 *   /metrics                                          the Prometheus exposition
 * Every call but /healthz carries the admin token as `Authorization: Bearer …`.
 */
export class ApiServer {
  private server?: Server;
  private readonly watchers = new Set<ServerResponse>();
  /** Watches closed because their client fell behind (see DEFAULT_WATCH_BUFFER_BYTES). */
  slowWatchesClosed = 0;
  /**
   * Each change's line, encoded once for every watch it goes to (the store hands every watcher
   * the same frozen object): one buffer, shared by the connections that send it, rather than a
   * copy per watch.
   */
  private readonly lines = new WeakMap<object, Partial<Record<WatchEvent['type'], Buffer>>>();

  constructor(
    private readonly opts: ApiOptions,
    private readonly store: ObjectStore,
    private readonly resources: ResourceService,
    private readonly tokens: TokenRoutes,
    private readonly log: Logger,
    private readonly podLogs?: PodLogRoutes,
    private readonly eviction?: EvictionRoutes,
    private readonly metrics?: MetricsRoutes,
    private readonly rollouts?: RolloutRoutes,
  ) {}

  async listen(): Promise<number> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => this.fail(res, err));
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port, this.opts.host, () => resolve());
    });
    const address = this.server.address();
    const port = typeof address === 'object' && address ? address.port : this.opts.port;
    this.log.info({ host: this.opts.host, port }, 'api listening');
    return port;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.end();
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://hub');
    const method = req.method ?? 'GET';
    if (url.pathname === '/healthz') return this.send(res, 200, this.health());
    if (!this.authorized(req)) throw new HubError('HUB_ERR_UNAUTHORIZED', 'a valid admin token is required (Authorization: Bearer TOKEN)');
    if (url.pathname === '/version') return this.send(res, 200, { version: FLOTILLA_VERSION });
    if (url.pathname === '/metrics' && this.metrics) return this.metrics.exposition(res);
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    // Every write honours `dryRun` or refuses it (an unknown value is a 400); reads ignore it.
    const dryRun = method !== 'GET' && dryRunOf(url.searchParams);
    if (parts[0] === 'apis' && this.rollouts) return this.rollouts.handle(req, method, parts.slice(1), (status, body) => this.send(res, status, body), () => readBody(req, this.bodyLimit), dryRun);
    if (parts[0] !== 'api' || parts[1] !== 'v1') throw new HubError('HUB_ERR_NOT_FOUND', `no route for ${url.pathname}`);
    const rest = parts.slice(2);

    if (rest[0] === 'apply' && rest.length === 1) {
      if (method !== 'POST') throw new HubError('HUB_ERR_METHOD_NOT_ALLOWED', 'apply takes POST');
      const docs = parseBody(req, await readBody(req, this.bodyLimit));
      const namespace = url.searchParams.get('namespace') ?? undefined;
      const results = this.resources.apply(docs, { dryRun, ...(namespace ? { namespace } : {}) });
      return this.send(res, 200, { kind: 'ApplyResult', dryRun, results });
    }
    if (rest[0] === 'metrics' && this.metrics) return this.metrics.handle(method, rest.slice(1), url.searchParams, (status, body) => this.send(res, status, body));
    if (rest[0] === 'tokens' && dryRun) throw new HubError('HUB_ERR_BAD_REQUEST', 'dryRun: not supported for tokens (nothing was created or revoked)');
    if (rest[0] === 'tokens') return this.tokens.handle(method, rest.slice(1), req, res, (status, body) => this.send(res, status, body), () => readBody(req, this.bodyLimit));

    // Resolve {namespace, plural, name} from the path.
    let namespace: string | undefined;
    let plural: string | undefined;
    let name: string | undefined;
    let subresource: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      [, namespace, plural, name, subresource] = rest;
      if (rest.length > 5 || (subresource !== undefined && (plural !== 'pods' || !((subresource === 'log' && this.podLogs) || (subresource === 'eviction' && this.eviction))))) throw new HubError('HUB_ERR_NOT_FOUND', `no route for ${url.pathname}`);
    } else if (rest.length === 1 || rest.length === 2) {
      [plural, name] = rest;
    } else throw new HubError('HUB_ERR_NOT_FOUND', `no route for ${url.pathname}`);
    const kind = plural ? kindByPlural(plural) : undefined;
    if (!kind) throw new HubError('HUB_ERR_NOT_FOUND', `the server doesn't have a resource type "${plural}"`);
    if (!kind.namespaced && namespace) throw new HubError('HUB_ERR_NOT_FOUND', `${kind.plural} are not namespaced`);
    if (subresource === 'eviction' && this.eviction) {
      if (method !== 'POST') throw new HubError('HUB_ERR_METHOD_NOT_ALLOWED', 'eviction takes POST');
      const answer = this.eviction.handle(namespace!, name!, await readBody(req, this.bodyLimit), dryRun);
      return this.send(res, answer.status, answer.body);
    }
    if (subresource === 'log' && this.podLogs) {
      if (method !== 'GET') throw new HubError('HUB_ERR_METHOD_NOT_ALLOWED', 'log takes GET');
      return this.podLogs.serve(res, namespace!, name!, url.searchParams);
    }

    if (!name) {
      if (method === 'GET') {
        const selector = this.selector(url);
        if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') {
          return this.watch(req, res, kind.kind, namespace, selector, url.searchParams.get('resourceVersion') ?? undefined);
        }
        const list = this.resources.list(kind.plural, namespace, selector);
        return this.send(res, 200, { kind: `${kind.kind}List`, apiVersion: 'flotilla/v1', metadata: { resourceVersion: list.resourceVersion }, items: list.items });
      }
      if (method === 'POST') {
        const docs = parseBody(req, await readBody(req, this.bodyLimit));
        if (docs.length !== 1) throw new HubError('HUB_ERR_BAD_REQUEST', 'create takes exactly one object; use /api/v1/apply for several');
        const { object, warnings } = this.resources.create(kind.plural, namespace, docs[0]!, { dryRun });
        return this.send(res, 201, object, warnings);
      }
      throw new HubError('HUB_ERR_METHOD_NOT_ALLOWED', `${method} is not allowed on a list`);
    }
    switch (method) {
      case 'GET':
        return this.send(res, 200, this.resources.get(kind.plural, namespace, name));
      case 'PUT': {
        const docs = parseBody(req, await readBody(req, this.bodyLimit));
        if (docs.length !== 1) throw new HubError('HUB_ERR_BAD_REQUEST', 'replace takes exactly one object');
        const { object, warnings } = this.resources.replace(kind.plural, namespace, name, docs[0]!, { dryRun });
        return this.send(res, 200, object, warnings);
      }
      case 'PATCH': {
        const docs = parseBody(req, await readBody(req, this.bodyLimit));
        const { object, warnings } = this.resources.patch(kind.plural, namespace, name, docs[0]?.value, { dryRun });
        return this.send(res, 200, object, warnings);
      }
      case 'DELETE': {
        // client-go sends a delete's options (dryRun among them) in the body, as DeleteOptions.
        const bodyDryRun = dryRunOfDeleteOptions(await readBody(req, this.bodyLimit));
        return this.send(res, 200, this.makingRoom(() => this.resources.delete(kind.plural, namespace, name, { dryRun: dryRun || bodyDryRun })));
      }
      default:
        throw new HubError('HUB_ERR_METHOD_NOT_ALLOWED', `${method} is not allowed`);
    }
  }

  /**
   * The hub is up and serving: 200. With its disk full it still serves reads and deletes, so it
   * says `degraded` with the detail rather than failing, which would only get it restarted.
   */
  private health(): Record<string, unknown> {
    const disk = this.opts.disk?.health();
    return disk?.full ? { status: 'degraded', disk } : { status: 'ok' };
  }

  /**
   * Runs a delete; when it fails for a full disk and the disk guard could make room (its
   * reserve, the log), runs it once more: deleting is how an operator frees the store.
   */
  private makingRoom<T>(run: () => T): T {
    try {
      return run();
    } catch (err) {
      if (!isDiskFull(err) || !this.opts.disk?.storeFull(err)) throw err;
      return run();
    }
  }

  private get bodyLimit(): number {
    return this.opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  }

  private selector(url: URL): Selector | undefined {
    const text = url.searchParams.get('labelSelector');
    if (!text) return undefined;
    try {
      return parseSelector(text);
    } catch (err) {
      if (err instanceof SelectorError) throw new HubError('HUB_ERR_BAD_REQUEST', `labelSelector: ${err.message}`);
      throw err;
    }
  }

  /**
   * A watch: newline-delimited JSON events, `{"type":"ADDED","object":{…}}`, until the client goes
   * away, or until it falls too far behind (see DEFAULT_WATCH_BUFFER_BYTES): then the stream ends
   * after what it holds, and the connection is cut if even that is not taken within a grace period.
   */
  private watch(req: IncomingMessage, res: ServerResponse, kind: string, namespace: string | undefined, selector: Selector | undefined, fromResourceVersion: string | undefined): void {
    const base = this.opts.watchBufferBytes ?? DEFAULT_WATCH_BUFFER_BYTES;
    let limit = base;
    const pending: WatchEvent[] = [];
    let unwatch: () => void = () => undefined;
    let open = true;
    const done = () => {
      open = false;
      unwatch();
      this.watchers.delete(res);
    };
    const send = (e: WatchEvent) => {
      if (!open) return;
      // Bytes written and not yet taken by the client's connection (the socket's included).
      if (res.writableLength > limit) {
        done();
        this.slowWatchesClosed++;
        this.log.warn({ kind, namespace, unsentBytes: res.writableLength, limit }, 'watch closed: its client does not keep up');
        const cut = setTimeout(() => res.destroy(), WATCH_CLOSE_GRACE_MS);
        cut.unref();
        res.once('close', () => clearTimeout(cut));
        res.end();
        return;
      }
      res.write(this.line(e));
    };
    try {
      unwatch = this.store.watch({ kind, ...(namespace ? { namespace } : {}), ...(selector ? { selector } : {}), ...(fromResourceVersion ? { fromResourceVersion } : {}) }, (e) => {
        if (res.headersSent) send(e);
        else pending.push(e);
      });
    } catch (err) {
      throw toHubError(err);
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
    res.flushHeaders();
    this.watchers.add(res);
    req.on('close', done);
    res.on('close', done);
    // The changes replayed from `resourceVersion` (at most the store's retained changes) go out
    // whole, and do not count against the limit: a client resuming from an older version is not
    // behind for having asked for them, as the API server does not count a watch's initial events.
    // Once they are sent, the limit is the usual one again.
    for (const e of pending) {
      const line = this.line(e);
      limit += line.length;
      res.write(line);
    }
    if (res.writableLength <= base) limit = base;
    else res.once('drain', () => (limit = base));
  }

  private line(e: WatchEvent): Buffer {
    let byType = this.lines.get(e.object);
    if (!byType) this.lines.set(e.object, (byType = {}));
    return (byType[e.type] ??= Buffer.from(`${JSON.stringify(e)}\n`));
  }

  private authorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(header);
    return m !== null && this.opts.authorize(m[1]!.trim());
  }

  private send(res: ServerResponse, status: number, body: unknown, warnings: string[] = []): void {
    const text = JSON.stringify(body);
    const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
    // Kubernetes returns warnings in `Warning` headers; so do we (299 = miscellaneous persistent warning).
    if (warnings.length) headers.warning = warnings.map((w) => `299 - ${JSON.stringify(w)}`).join(', ');
    res.writeHead(status, headers);
    res.end(text);
  }

  private fail(res: ServerResponse, err: unknown): void {
    if (isDiskFull(err)) this.opts.disk?.storeFull(err);
    const hubErr = toHubError(err);
    if (hubErr.code === 'HUB_ERR_INTERNAL') this.log.error({ err }, 'request failed');
    if (res.headersSent) {
      res.end();
      return;
    }
    // A request abandoned part-way (a streamed body over the limit, or one refused before its body
    // was read: 401, 415) takes its connection with it: say so, or a keep-alive client sends its
    // next request into a connection about to be reset.
    if (res.req.destroyed || !res.req.complete) res.setHeader('connection', 'close');
    this.send(res, hubErr.httpStatus, hubErr.toBody());
  }
}

export function tokenMatches(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
