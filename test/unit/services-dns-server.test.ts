import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket, { type Packet, type RecordType } from 'dns-packet';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ServiceLookup } from '../../agent/services/dns/answer.js';
import { DnsServer } from '../../agent/services/dns/server.js';
import type { EndpointAnnouncement, ServiceAnnouncement } from '../../shared/protocol/services.js';

// The server's transports over loopback: UDP and TCP, forwarding to a fake upstream, SERVFAIL
// when the upstream is silent, truncation over UDP, and junk dropped without harm.

const log = pino({ level: 'silent' });
const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

const svc: ServiceAnnouncement = { v: 1, namespace: 'default', name: 'store', uid: 'u1', type: 'ClusterIP', clusterIP: '10.43.0.20', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 80 }], generation: 1 };
const wide: ServiceAnnouncement = { ...svc, name: 'wide', uid: 'u2', clusterIP: 'None' };
const wideEndpoints = new Map<string, EndpointAnnouncement>(Array.from({ length: 100 }, (_, i) => [`p${i}`, { v: 1, ip: `10.42.${1 + Math.floor(i / 200)}.${(i % 200) + 2}`, node: 'a', ready: true, ports: { http: 80 }, generation: 1 }]));
const book: ServiceLookup = {
  services: () => new Map([['default/store', svc], ['default/wide', wide]]),
  service: (ns, name) => (ns === 'default' ? ({ store: svc, wide } as Record<string, ServiceAnnouncement>)[name] : undefined),
  endpoints: (_ns, name) => (name === 'wide' ? wideEndpoints : new Map()),
};

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A fake upstream resolver on loopback: answers every A question with 192.0.2.99 (or stays silent). */
async function upstream(silent = false): Promise<number> {
  const port = await freePort();
  const answer = (msg: Buffer) => {
    const q = dnsPacket.decode(msg);
    return dnsPacket.encode({ id: q.id!, type: 'response', flags: dnsPacket.RECURSION_AVAILABLE, questions: q.questions!, answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 60, data: '192.0.2.99' }] });
  };
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, r) => !silent && udp.send(answer(msg), r.port, r.address));
  await new Promise<void>((resolve) => udp.bind(port, '127.0.0.1', resolve));
  const tcp = net.createServer((s) => s.on('data', (d: Buffer) => {
    if (silent) return;
    const out = answer(d.subarray(2));
    const framed = Buffer.alloc(out.length + 2);
    framed.writeUInt16BE(out.length);
    out.copy(framed, 2);
    s.end(framed);
  }));
  await new Promise<void>((resolve) => tcp.listen(port, '127.0.0.1', resolve));
  closers.push(() => void udp.close(), () => new Promise<void>((r) => tcp.close(() => r())));
  return port;
}

async function server(upstreamPort: number, forwardTimeoutMs = 2_000): Promise<DnsServer> {
  const s = new DnsServer({ address: '127.0.0.1', port: await freePort(), book, upstreams: () => [{ address: '127.0.0.1', port: upstreamPort }], log, forwardTimeoutMs });
  await s.listen();
  closers.push(() => s.close());
  return s;
}

function queryUdp(port: number, name: string, type: RecordType = 'A', raw?: Buffer): Promise<Packet & { rcode?: string; flag_tc?: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error('no answer'));
    }, 3_000);
    sock.on('message', (msg) => {
      clearTimeout(timer);
      sock.close();
      resolve(dnsPacket.decode(msg));
    });
    sock.send(raw ?? dnsPacket.encode({ id: 7, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type }] }), port, '127.0.0.1');
  });
}

function queryTcp(port: number, name: string, type: RecordType = 'A'): Promise<Packet & { rcode?: string }> {
  return new Promise((resolve, reject) => {
    const q = dnsPacket.encode({ id: 8, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type }] });
    const framed = Buffer.alloc(q.length + 2);
    framed.writeUInt16BE(q.length);
    q.copy(framed, 2);
    const sock = net.connect(port, '127.0.0.1', () => sock.write(framed));
    let buf = Buffer.alloc(0);
    sock.on('error', reject);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        sock.destroy();
        resolve(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
      }
    });
  });
}

const addresses = (p: Packet) => (p.answers ?? []).filter((a) => a.type === 'A').map((a) => (a as { data: string }).data);

describe('the DNS server', () => {
  it('answers the cluster\'s names over UDP and TCP', async () => {
    const s = await server(await upstream());
    expect(addresses(await queryUdp(s.port, 'store.default.svc.cluster.local'))).toEqual(['10.43.0.20']);
    expect(addresses(await queryTcp(s.port, 'store.default.svc.cluster.local'))).toEqual(['10.43.0.20']);
  });

  it('forwards other names to the upstream, over the transport the client used', async () => {
    const s = await server(await upstream());
    const u = await queryUdp(s.port, 'example.com');
    expect(u.id).toBe(7);
    expect(addresses(u)).toEqual(['192.0.2.99']);
    expect(addresses(await queryTcp(s.port, 'example.com'))).toEqual(['192.0.2.99']);
    expect(s.counts.forwarded).toBe(2);
  });

  it('answers SERVFAIL when the upstream stays silent, within the forward budget', async () => {
    const s = await server(await upstream(true), 200);
    const started = Date.now();
    const r = await queryUdp(s.port, 'example.com');
    expect(r.rcode).toBe('SERVFAIL');
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('answers SERVFAIL when nothing listens upstream', async () => {
    const s = await server(await freePort(), 300);
    expect((await queryTcp(s.port, 'example.com')).rcode).toBe('SERVFAIL');
  });

  it('truncates an answer too big for UDP (TC set), and gives it whole over TCP', async () => {
    const s = await server(await upstream());
    const udp = await queryUdp(s.port, 'wide.default.svc.cluster.local');
    expect(udp.flag_tc).toBe(true);
    expect(udp.answers).toEqual([]);
    expect(addresses(await queryTcp(s.port, 'wide.default.svc.cluster.local'))).toHaveLength(100);
  });

  it('gives a repeated query the cached answer under the new id, and a new answer once the book changed', async () => {
    const s = await server(await upstream());
    const first = await queryUdp(s.port, 'store.default.svc.cluster.local');
    const again = await queryUdp(s.port, 'store.default.svc.cluster.local', 'A', dnsPacket.encode({ id: 999, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'store.default.svc.cluster.local', type: 'A' }] }));
    expect(again.id).toBe(999);
    expect(addresses(again)).toEqual(addresses(first));
    svc.clusterIP = '10.43.0.21';
    try {
      s.invalidate();
      expect(addresses(await queryUdp(s.port, 'store.default.svc.cluster.local'))).toEqual(['10.43.0.21']);
    } finally {
      svc.clusterIP = '10.43.0.20';
    }
  });

  it('never rejects, whatever bytes arrive: random packets, and real queries with bytes flipped', async () => {
    const s = new DnsServer({ address: '127.0.0.1', port: 0, book, upstreams: () => [], log });
    const base = dnsPacket.encode({ id: 1, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'store.default.svc.cluster.local', type: 'SRV' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as never] });
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    let answered = 0;
    for (let i = 0; i < 3000; i++) {
      let msg: Buffer;
      if (i % 2) msg = Buffer.from(Array.from({ length: Math.floor(random() * 80) }, () => Math.floor(random() * 256)));
      else {
        msg = Buffer.from(base);
        for (let k = 0; k < 3; k++) msg[Math.floor(random() * msg.length)] = Math.floor(random() * 256);
      }
      // A rejection would throw here (and, on the socket, end the agent).
      const out = await s.handle(msg, i % 3 ? 'udp' : 'tcp');
      if (out !== undefined) answered++;
      expect(out === undefined || Buffer.isBuffer(out)).toBe(true);
    }
    // Some of the flipped queries are still queries, and get an answer.
    expect(answered).toBeGreaterThan(0);
  });

  it('drops junk without harm and goes on answering', async () => {
    const s = await server(await upstream());
    const junk = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => junk.send(Buffer.from([1, 2, 3, 4, 5]), s.port, '127.0.0.1', () => resolve()));
    junk.close();
    // A TCP client that sends a frame of junk is disconnected.
    await new Promise<void>((resolve) => {
      const c = net.connect(s.port, '127.0.0.1', () => c.write(Buffer.from([0, 3, 9, 9, 9])));
      c.on('close', () => resolve());
      c.on('error', () => undefined);
    });
    expect(addresses(await queryUdp(s.port, 'store.default.svc.cluster.local'))).toEqual(['10.43.0.20']);
    expect(s.counts.dropped).toBe(2);
  });
});
