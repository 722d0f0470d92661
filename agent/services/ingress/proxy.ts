import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import net, { type Socket } from 'node:net';
import tls, { type SecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { ingressEntrySchema, type DesiredIngress, type IngressCertificate, type IngressEntry } from '../../../shared/protocol/ingress.js';
import { fieldErrorsFromZod, formatFieldErrors } from '../../../shared/resources/fields.js';
import { BackendPicker, type ServiceLookup } from './backends.js';
import { RouteTable, certificateFor, type Route } from './routes.js';

/**
 * The ingress proxy (docs/ARCHITECTURE.md, 'Ingress'): an HTTP and HTTPS reverse proxy inside
 * the agent, running only while the desired set carries an `ingress` section (the device is
 * labelled `flotilla.io/ingress=true` at the hub). It routes by host and path (routes.ts) to a
 * ready endpoint of the Service (backends.ts), streams bodies both ways, passes WebSocket
 * upgrades through, and answers 404 (no route), 503 (no ready endpoint), 502 (the backend
 * refused or broke) or 504 (the backend did not answer in time). TLS: the certificate of the
 * host the client names (SNI), exact then wildcard; the default for an unknown or absent name
 * is the first usable certificate of the first Ingress (by namespace and name) that has one.
 * With no usable certificate at all the HTTPS port stays closed.
 */

export interface IngressProxyOptions {
  /** 0 turns the listener off. */
  httpPort: number;
  httpsPort: number;
  /** The address to listen on; all the device's addresses when absent. */
  host?: string;
  book: ServiceLookup;
  log: Logger;
  /** How long a backend has to accept the connection (504 after). Default 5 s. */
  connectTimeoutMs?: number;
  /** How long a backend may stay silent once connected (504 before the response starts). Default 60 s. */
  idleTimeoutMs?: number;
  /** How soon a listener that could not start is tried again. Default 30 s. */
  retryListenMs?: number;
}

/** Headers that concern one connection only (RFC 9110, 7.6.1), never forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

type Proto = 'http' | 'https';

export class IngressProxy {
  private table = new RouteTable([]);
  private readonly picker: BackendPicker;
  private httpServer: http.Server | undefined;
  private httpsServer: https.Server | undefined;
  private active = false;
  private retry: NodeJS.Timeout | undefined;
  /** Secure contexts by host (`*.example.com` for a wildcard), and the default. */
  private contexts = new Map<string, SecureContext>();
  private defaultCert: { key: Buffer; cert: Buffer } | undefined;
  /** Contexts made, by Secret and resourceVersion: an unchanged Secret is not parsed again. */
  private made = new Map<string, SecureContext>();
  private readonly backendAgent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 32 });
  private readonly sockets = new Set<Socket | Duplex>();
  private lastSection = '';

  constructor(private readonly opts: IngressProxyOptions) {
    this.picker = new BackendPicker(opts.book);
  }

  /** The ports listened on now (for tests and logs). */
  get listening(): { http?: number; https?: number } {
    const portOf = (s: net.Server | undefined) => {
      const a = s?.listening ? s.address() : null;
      return a && typeof a === 'object' ? a.port : undefined;
    };
    const out: { http?: number; https?: number } = {};
    const h = portOf(this.httpServer);
    const s = portOf(this.httpsServer);
    if (h !== undefined) out.http = h;
    if (s !== undefined) out.https = s;
    return out;
  }

  /**
   * Takes the desired set's `ingress` section: present, the proxy serves it (starting its
   * listeners); absent, it stops. Each Ingress is read on its own: one the device cannot read
   * is logged and left out. Never throws.
   */
  apply(section: DesiredIngress | undefined): void {
    const text = section ? JSON.stringify(section) : '';
    if (text === this.lastSection) return;
    this.lastSection = text;
    if (!section) {
      if (this.active) this.opts.log.info('no ingress section in the desired set: the ingress proxy stops');
      this.active = false;
      void this.closeServers();
      return;
    }
    const entries: IngressEntry[] = [];
    for (const [i, raw] of section.ingresses.entries()) {
      const parsed = ingressEntrySchema.safeParse(raw);
      if (parsed.success) entries.push(parsed.data);
      else this.opts.log.warn({ entry: i, errors: formatFieldErrors(fieldErrorsFromZod(parsed.error).slice(0, 5)) }, 'an Ingress of the desired set cannot be read; left out');
    }
    this.table = new RouteTable(entries);
    this.loadCertificates(entries, section.certificates);
    this.active = true;
    this.opts.log.info({ ingresses: entries.length, certificates: this.made.size }, 'ingress rules applied');
    this.ensureServers();
  }

  async stop(): Promise<void> {
    this.active = false;
    this.lastSection = '';
    await this.closeServers();
    this.backendAgent.destroy();
  }

  private loadCertificates(entries: readonly IngressEntry[], certificates: readonly IngressCertificate[]): void {
    const byName = new Map(certificates.map((c) => [`${c.namespace}/${c.name}`, c]));
    const made = new Map<string, SecureContext>();
    const contexts = new Map<string, SecureContext>();
    let defaultCert: { key: Buffer; cert: Buffer } | undefined;
    for (const entry of entries) {
      for (const t of entry.spec.tls ?? []) {
        if (!t.secretName) continue;
        const c = byName.get(`${entry.namespace}/${t.secretName}`);
        if (!c) continue;
        const id = `${c.namespace}/${c.name}@${c.resourceVersion ?? ''}:${c.cert.length}:${c.key.length}`;
        const key = Buffer.from(c.key, 'base64');
        const cert = Buffer.from(c.cert, 'base64');
        let ctx = made.get(id) ?? this.made.get(id);
        if (!ctx) {
          try {
            ctx = tls.createSecureContext({ key, cert });
          } catch (err) {
            this.opts.log.warn({ secret: `${c.namespace}/${c.name}`, err: (err as Error).message }, 'a TLS Secret of an Ingress cannot be used; its hosts get the default certificate');
            continue;
          }
        }
        made.set(id, ctx);
        defaultCert ??= { key, cert };
        for (const host of t.hosts ?? []) if (!contexts.has(host.toLowerCase())) contexts.set(host.toLowerCase(), ctx);
      }
    }
    this.made = made;
    this.contexts = contexts;
    const changed = JSON.stringify(defaultCert?.cert.toString('base64')) !== JSON.stringify(this.defaultCert?.cert.toString('base64'));
    this.defaultCert = defaultCert;
    if (changed && this.httpsServer && defaultCert) this.httpsServer.setSecureContext(defaultCert);
    if (!defaultCert && this.httpsServer) {
      this.opts.log.info('no usable TLS certificate: the ingress HTTPS port closes');
      const s = this.httpsServer;
      this.httpsServer = undefined;
      void closeServer(s);
    }
  }

  private ensureServers(): void {
    if (!this.active) return;
    if (this.opts.httpPort > 0 && !this.httpServer) {
      const server = http.createServer((req, res) => this.handle(req, res, 'http'));
      this.httpServer = server;
      this.listen(server, this.opts.httpPort, 'http', () => {
        if (this.httpServer === server) this.httpServer = undefined;
        this.retryLater();
      });
    }
    if (this.opts.httpsPort > 0 && !this.httpsServer && this.defaultCert) {
      const server = https.createServer({ ...this.defaultCert, SNICallback: (name, cb) => cb(null, certificateFor(this.contexts, name)) }, (req, res) => this.handle(req, res, 'https'));
      this.httpsServer = server;
      server.on('tlsClientError', (err) => this.opts.log.debug({ err: err.message }, 'ingress TLS handshake failed'));
      this.listen(server, this.opts.httpsPort, 'https', () => {
        if (this.httpsServer === server) this.httpsServer = undefined;
        this.retryLater();
      });
    }
  }

  private listen(server: http.Server, port: number, proto: Proto, onFail: () => void): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head, proto));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      // A malformed request: 400 and close, as a server does; never a crash.
      if (err.code === 'ECONNRESET' || !socket.writable) socket.destroy();
      else socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    const refused = (err: NodeJS.ErrnoException) => {
      this.opts.log.error({ port, proto, err: err.message }, 'the ingress cannot listen; trying again later');
      server.close();
      onFail();
    };
    server.once('error', refused);
    server.listen({ port, ...(this.opts.host ? { host: this.opts.host } : {}) }, () => {
      server.off('error', refused);
      server.on('error', (err) => this.opts.log.warn({ proto, err: err.message }, 'ingress listener error'));
      this.opts.log.info({ port, proto }, 'ingress listening');
    });
  }

  private retryLater(): void {
    if (this.retry || !this.active) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.ensureServers();
    }, this.opts.retryListenMs ?? 30_000);
    this.retry.unref();
  }

  private async closeServers(): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    const servers = [this.httpServer, this.httpsServer].filter((s): s is http.Server => s !== undefined);
    this.httpServer = undefined;
    this.httpsServer = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await Promise.all(servers.map(closeServer));
  }

  private handle(req: IncomingMessage, res: ServerResponse, proto: Proto): void {
    try {
      const target = this.target(req);
      if ('status' in target) {
        reply(res, target.status, target.message);
        return;
      }
      this.forward(req, res, target, proto);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'ingress request failed');
      if (!res.headersSent) reply(res, 500, 'internal error');
      else res.destroy();
    }
  }

  /** Where the request goes, or the answer to give instead. */
  private target(req: IncomingMessage): { address: string; port: number; route: Route } | { status: number; message: string } {
    const route = this.table.match(req.headers.host, req.url ?? '/');
    if (!route) return { status: 404, message: 'no ingress rule matches' };
    const picked = this.picker.pick(route);
    if (!picked.ok) return { status: 503, message: picked.reason };
    return { address: picked.address, port: picked.port, route };
  }

  private forward(req: IncomingMessage, res: ServerResponse, target: { address: string; port: number; route: Route }, proto: Proto): void {
    const upstream = http.request({ host: target.address, port: target.port, method: req.method, path: req.url ?? '/', headers: forwardedHeaders(req, proto, false), agent: this.backendAgent, setHost: false });
    let connectTimer: NodeJS.Timeout | undefined;
    const fail = (status: number, message: string) => {
      if (connectTimer) clearTimeout(connectTimer);
      if (!res.headersSent) reply(res, status, message);
      else res.destroy();
    };
    upstream.on('socket', (socket: Socket) => {
      if (!socket.connecting) return;
      connectTimer = setTimeout(() => {
        upstream.destroy(Object.assign(new Error('the backend did not accept the connection in time'), { code: 'ETIMEDOUT' }));
      }, this.opts.connectTimeoutMs ?? 5_000);
      socket.once('connect', () => clearTimeout(connectTimer));
    });
    upstream.setTimeout(this.opts.idleTimeoutMs ?? 60_000, () => upstream.destroy(Object.assign(new Error('the backend did not answer in time'), { code: 'ETIMEDOUT' })));
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      this.opts.log.debug({ backend: `${target.address}:${target.port}`, ingress: target.route.ingress, err: err.message }, 'ingress backend failed');
      fail(err.code === 'ETIMEDOUT' ? 504 : 502, `${err.code === 'ETIMEDOUT' ? 'gateway timeout' : 'bad gateway'}: ${err.message}`);
    });
    upstream.on('response', (answer: IncomingMessage) => {
      if (connectTimer) clearTimeout(connectTimer);
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, responseHeaders(answer.headers));
      answer.pipe(res);
      answer.on('error', () => res.destroy());
    });
    // The client went away: so does the request to the backend.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.on('error', () => upstream.destroy());
    req.pipe(upstream);
  }

  /** Connection: upgrade (WebSocket): the request goes to the backend as is, and the two sockets are joined. */
  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, proto: Proto): void {
    socket.on('error', () => socket.destroy());
    let target;
    try {
      target = this.target(req);
    } catch {
      target = { status: 500, message: 'internal error' };
    }
    if ('status' in target) {
      socket.end(`HTTP/1.1 ${target.status} ${http.STATUS_CODES[target.status] ?? ''}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const upstream = net.connect({ host: target.address, port: target.port });
    const timer = setTimeout(() => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), this.opts.connectTimeoutMs ?? 5_000);
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const status = err.code === 'ETIMEDOUT' ? '504 Gateway Timeout' : '502 Bad Gateway';
      if (socket.writable && upstream.bytesRead === 0) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      else socket.destroy();
    });
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
    upstream.once('connect', () => {
      clearTimeout(timer);
      const headers = forwardedHeaders(req, proto, true);
      let head0 = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`;
      for (const [name, value] of Object.entries(headers)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) head0 += `${name}: ${String(v).replace(/[\r\n]/g, '')}\r\n`;
      }
      upstream.write(`${head0}\r\n`);
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
  }
}

/** The client's address without the IPv4-mapped prefix. */
function clientAddress(req: IncomingMessage): string {
  return (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
}

/** The request's headers for the backend: hop-by-hop ones out (an upgrade keeps its two), X-Forwarded-* and X-Real-IP in. */
function forwardedHeaders(req: IncomingMessage, proto: Proto, upgrade: boolean): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const named = new Set(String(req.headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()).filter(Boolean));
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  const client = clientAddress(req);
  const prior = req.headers['x-forwarded-for'];
  out['x-forwarded-for'] = prior ? `${Array.isArray(prior) ? prior.join(', ') : prior}, ${client}` : client;
  out['x-real-ip'] = client;
  out['x-forwarded-proto'] = proto;
  if (req.headers.host) out['x-forwarded-host'] = req.headers.host;
  out['x-forwarded-port'] = String(req.socket.localPort ?? '');
  if (upgrade) {
    out.connection = 'upgrade';
    if (req.headers.upgrade) out.upgrade = req.headers.upgrade;
  }
  return out;
}

function responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = new Set(String(headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()).filter(Boolean));
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.has(name) && !named.has(name)) out[name] = value;
  return out;
}

function reply(res: ServerResponse, status: number, message: string): void {
  const body = `${status} ${http.STATUS_CODES[status] ?? ''}: ${message}\n`;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    (server as http.Server).closeAllConnections?.();
  });
}
