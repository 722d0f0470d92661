import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IngressProxy } from '../../agent/services/ingress/proxy.js';
import type { DesiredIngress } from '../../shared/protocol/ingress.js';
import type { EndpointAnnouncement, ServiceAnnouncement } from '../../shared/protocol/services.js';

// The ingress proxy on loopback, in front of real HTTP servers standing in for pods: routes,
// answers when there is nowhere to go, headers, bodies, upgrades, time-outs and TLS by SNI.

const dir = mkdtempSync(join(tmpdir(), 'ingress-proxy-'));
const backends: http.Server[] = [];
let proxy: IngressProxy;
let httpPort = 0;
let httpsPort = 0;
const services = new Map<string, ServiceAnnouncement>();
const endpoints = new Map<string, Map<string, EndpointAnnouncement>>();

function certificate(name: string, hosts: string[]): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${hosts[0]}`, '-addext', `subjectAltName=${hosts.map((h) => `DNS:${h}`).join(',')}`], { stdio: 'ignore' });
  return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

/** A backend that answers with its name, the request's path, its X- headers and the body it read. */
async function backend(name: string): Promise<number> {
  const server = http.createServer((req, res) => {
    if (req.url === '/hang') return; // never answers
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('connection', 'x-private');
      res.setHeader('x-private', 'hop');
      res.end(JSON.stringify({ name, url: req.url, host: req.headers.host, xff: req.headers['x-forwarded-for'], proto: req.headers['x-forwarded-proto'], xhost: req.headers['x-forwarded-host'], real: req.headers['x-real-ip'], body: Buffer.concat(chunks).toString() }));
    });
  });
  server.on('upgrade', (req, socket) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade}\r\nConnection: Upgrade\r\n\r\n`);
    socket.on('data', (d: Buffer) => socket.write(`${name}:${d.toString()}`));
  });
  backends.push(server);
  return listen(server);
}

function announce(name: string, port: number, ready = true): void {
  services.set(name, { v: 1, namespace: 'default', name, uid: name, type: 'ClusterIP', clusterIP: '10.43.0.1', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: port }], generation: 1 });
  endpoints.set(name, new Map([[`${name}-0`, { v: 1, ip: '127.0.0.1', node: 'n', ready, ports: { http: port }, generation: 1 }]]));
}

function get(path: string, host: string, opts: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: httpPort, path, method: opts.method ?? 'GET', headers: { host, ...opts.headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const shopCert = certificate('shop', ['shop.test']);
const wildCert = certificate('wild', ['*.wild.test']);
const b64 = (s: string) => Buffer.from(s).toString('base64');

beforeAll(async () => {
  announce('web', await backend('web'));
  announce('api', await backend('api'));
  announce('down', await backend('down'), false);
  const dead = await freePort();
  announce('dead', dead);
  httpPort = await freePort();
  httpsPort = await freePort();
  proxy = new IngressProxy({
    httpPort,
    httpsPort,
    host: '127.0.0.1',
    book: { service: (ns, n) => (ns === 'default' ? services.get(n) : undefined), endpoints: (ns, n) => endpoints.get(n) ?? new Map() },
    log: pino({ level: 'silent' }),
    idleTimeoutMs: 500,
  });
  const be = (name: string) => ({ service: { name, port: { number: 80 } } });
  const section: DesiredIngress = {
    ingresses: [
      {
        namespace: 'default',
        name: 'shop',
        spec: {
          rules: [
            { host: 'shop.test', http: { paths: [{ path: '/', pathType: 'Prefix', backend: be('web') }, { path: '/api', pathType: 'Prefix', backend: be('api') }, { path: '/down', pathType: 'Prefix', backend: be('down') }, { path: '/dead', pathType: 'Prefix', backend: be('dead') }, { path: '/ghost', pathType: 'Prefix', backend: be('ghost') }] } },
            { host: '*.wild.test', http: { paths: [{ path: '/', pathType: 'Prefix', backend: be('api') }] } },
          ],
          tls: [{ hosts: ['shop.test'], secretName: 'shop-tls' }, { hosts: ['*.wild.test'], secretName: 'wild-tls' }],
        },
      },
      { namespace: 'default', name: 'broken', spec: { rules: 'not a list' } },
    ],
    certificates: [
      { namespace: 'default', name: 'shop-tls', cert: b64(shopCert.cert), key: b64(shopCert.key) },
      { namespace: 'default', name: 'wild-tls', cert: b64(wildCert.cert), key: b64(wildCert.key) },
    ],
  };
  proxy.apply(section);
  await new Promise((r) => setTimeout(r, 100));
});

afterAll(async () => {
  await proxy.stop();
  for (const b of backends) b.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the ingress proxy', () => {
  it('listens on both ports, in spite of an Ingress it cannot read', () => {
    expect(proxy.listening).toEqual({ http: httpPort, https: httpsPort });
  });

  it('routes by host and path, and adds the forwarding headers', async () => {
    const web = JSON.parse((await get('/shop?q=1', 'shop.test')).body);
    expect(web).toMatchObject({ name: 'web', url: '/shop?q=1', host: 'shop.test', xff: '127.0.0.1', proto: 'http', xhost: 'shop.test', real: '127.0.0.1' });
    expect(JSON.parse((await get('/api/items', 'shop.test')).body).name).toBe('api');
    expect(JSON.parse((await get('/', 'x.wild.test', { headers: { 'x-forwarded-for': '198.51.100.9' } })).body)).toMatchObject({ name: 'api', xff: '198.51.100.9, 127.0.0.1' });
  });

  it('streams a request body through, and drops hop-by-hop response headers', async () => {
    const body = 'x'.repeat(300_000);
    const r = await get('/api/upload', 'shop.test', { method: 'POST', body });
    expect(JSON.parse(r.body).body).toBe(body);
    expect(r.headers['x-private']).toBeUndefined();
  });

  it('answers 404 without a rule, 503 without a ready endpoint or Service, 502 for a refusing backend, 504 for a silent one', async () => {
    expect((await get('/', 'nowhere.test')).status).toBe(404);
    expect((await get('/down', 'shop.test')).status).toBe(503);
    expect((await get('/ghost', 'shop.test')).status).toBe(503);
    expect((await get('/dead', 'shop.test')).status).toBe(502);
    const started = Date.now();
    expect((await get('/hang', 'shop.test')).status).toBe(504);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('survives a malformed request (400) and serves the next one', async () => {
    const answer = await new Promise<string>((resolve) => {
      const s = net.connect(httpPort, '127.0.0.1', () => s.write('GARBAGE \x00\x01 HTTP/9\r\n\r\n'));
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('close', () => resolve(text));
      s.on('error', () => resolve(text));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect((await get('/', 'shop.test')).status).toBe(200);
  });

  it('passes a Connection: upgrade through to the backend', async () => {
    const echoed = await new Promise<string>((resolve, reject) => {
      const s = net.connect(httpPort, '127.0.0.1', () => s.write('GET /chat HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'));
      let text = '';
      s.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.includes('\r\n\r\n') && !text.includes('ping')) s.write('ping');
        if (text.endsWith('web:ping')) {
          s.destroy();
          resolve(text);
        }
      });
      s.on('error', reject);
    });
    expect(echoed).toMatch(/^HTTP\/1\.1 101/);
  });

  it('serves TLS with the certificate of the name the client asks for (SNI), exact or wildcard, and the first as default', async () => {
    const peer = (servername: string | undefined, ca: string) =>
      new Promise<{ subject: string; body: string }>((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port: httpsPort, path: '/api/tls', headers: { host: servername ?? 'shop.test' }, ...(servername ? { servername } : {}), ca, agent: false, checkServerIdentity: () => undefined }, (res) => {
          const subject = String((res.socket as tls.TLSSocket).getPeerCertificate().subject.CN);
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ subject, body }));
        });
        req.on('error', reject);
        req.end();
      });
    const shop = await peer('shop.test', shopCert.cert);
    expect(shop.subject).toBe('shop.test');
    expect(JSON.parse(shop.body)).toMatchObject({ name: 'api', proto: 'https' });
    expect((await peer('a.wild.test', wildCert.cert)).subject).toBe('*.wild.test');
    expect((await peer(undefined, shopCert.cert)).subject).toBe('shop.test');
  });

  it('stops when the section goes, and starts again when it comes back', async () => {
    proxy.apply(undefined);
    await new Promise((r) => setTimeout(r, 50));
    expect(proxy.listening).toEqual({});
    await expect(get('/', 'shop.test')).rejects.toThrow(/ECONNREFUSED/);
    proxy.apply({ ingresses: [], certificates: [] });
    await new Promise((r) => setTimeout(r, 50));
    // No certificate: the HTTPS port stays closed; no Ingress: 404.
    expect(proxy.listening).toEqual({ http: httpPort });
    expect((await get('/', 'shop.test')).status).toBe(404);
  });
});

describe('an ingress port that is taken', () => {
  it('is logged and tried again, without harm to the agent, until it is free', async () => {
    const squatter = net.createServer();
    const port = await listen(squatter);
    const p = new IngressProxy({ httpPort: port, httpsPort: 0, host: '127.0.0.1', book: { service: () => undefined, endpoints: () => new Map() }, log: pino({ level: 'silent' }), retryListenMs: 100 });
    p.apply({ ingresses: [], certificates: [] });
    await new Promise((r) => setTimeout(r, 150));
    expect(p.listening).toEqual({});
    await new Promise((r) => squatter.close(r));
    const deadline = Date.now() + 5_000;
    while (p.listening.http === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(p.listening).toEqual({ http: port });
    await p.stop();
  });
});
