import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './processes.js';

// Small DNS programs for tests and benches that must run inside a network namespace (a device's,
// a pod's): plain node scripts, written to a test's folder, using the repository's dns-packet.
// A namespace is entered per process, so these run as children (`ip netns exec`, `nsenter`).

const PRELUDE = `import { createRequire } from 'node:module';
import dgram from 'node:dgram';
import net from 'node:net';
const dnsPacket = createRequire(${JSON.stringify(join(REPO, 'package.json'))})('dns-packet');
const frame = (b) => { const f = Buffer.alloc(b.length + 2); f.writeUInt16BE(b.length); b.copy(f, 2); return f; };
`;

/** A fake upstream resolver: A records from a JSON map (name → address), NXDOMAIN for the rest; UDP and TCP. Prints "ready". */
const UPSTREAM = `${PRELUDE}
const [address, port, json] = process.argv.slice(2);
const records = JSON.parse(json);
const answer = (msg) => {
  const q = dnsPacket.decode(msg);
  const name = q.questions[0].name.toLowerCase();
  const ip = records[name];
  return dnsPacket.encode({ id: q.id, type: 'response', flags: dnsPacket.RECURSION_AVAILABLE | (ip ? 0 : 3), questions: q.questions, answers: ip && q.questions[0].type === 'A' ? [{ type: 'A', name, ttl: 30, data: ip }] : [] });
};
const udp = dgram.createSocket('udp4');
udp.on('message', (m, r) => { try { udp.send(answer(m), r.port, r.address); } catch {} });
udp.bind(Number(port), address, () => {
  net.createServer((s) => s.on('data', (d) => { try { s.end(frame(answer(d.subarray(2)))); } catch { s.destroy(); } })).listen(Number(port), address, () => console.log('ready'));
});
`;

/** One query: prints {rcode, tc, answers: [{type, name, data}]} as JSON. */
const QUERY = `${PRELUDE}
const [server, port, name, type, transport] = process.argv.slice(2);
const q = dnsPacket.encode({ id: 4711, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type }] });
const done = (buf) => { const r = dnsPacket.decode(buf); console.log(JSON.stringify({ id: r.id, rcode: r.rcode, tc: r.flag_tc, answers: r.answers.map((a) => ({ type: a.type, name: a.name, data: a.data })) })); process.exit(0); };
setTimeout(() => { console.log(JSON.stringify({ error: 'timeout' })); process.exit(1); }, 8000);
if (transport === 'tcp') {
  let buf = Buffer.alloc(0);
  const s = net.connect(Number(port), server, () => s.write(frame(q)));
  s.on('data', (d) => { buf = Buffer.concat([buf, d]); if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0))); });
} else {
  const s = dgram.createSocket('udp4');
  s.on('message', (m) => done(m));
  s.send(q, Number(port), server);
}
`;

/** A UDP echo server (the benchmark's floor). Prints "ready". */
const ECHO = `${PRELUDE}
const [address, port] = process.argv.slice(2);
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => s.send(m, r.port, r.address));
s.bind(Number(port), address, () => console.log('ready'));
`;

/**
 * The benchmark's client: alternates, one at a time, a DNS query (each of the names in turn)
 * and a UDP echo of the same size over the same path; prints both series of round trips (ms).
 */
const BENCH_CLIENT = `${PRELUDE}
const [server, dnsPort, echoPort, count, namesJson] = process.argv.slice(2);
const names = JSON.parse(namesJson);
const s = dgram.createSocket('udp4');
let pending;
s.on('message', (m) => { const p = pending; pending = undefined; p?.(m); });
const roundTrip = (buf, port) => new Promise((resolve, reject) => {
  const t0 = process.hrtime.bigint();
  const timer = setTimeout(() => { pending = undefined; reject(new Error('timeout')); }, 2000);
  pending = (m) => { clearTimeout(timer); resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, m }); };
  s.send(buf, Number(port), server);
});
await new Promise((r) => s.bind(0, r));
const dns = [], echo = [];
for (let i = 0; i < Number(count); i++) {
  const name = names[i % names.length];
  const q = dnsPacket.encode({ id: i & 0xffff, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: 'A' }] });
  const a = await roundTrip(q, dnsPort);
  if (dnsPacket.decode(a.m).rcode !== 'NOERROR') throw new Error('unexpected answer for ' + name);
  dns.push(a.ms);
  echo.push((await roundTrip(q, echoPort)).ms);
}
console.log(JSON.stringify({ dns, echo }));
process.exit(0);
`;

export interface DnsScripts {
  upstream: string;
  query: string;
  echo: string;
  benchClient: string;
}

export function writeDnsScripts(dir: string): DnsScripts {
  const files = { upstream: UPSTREAM, query: QUERY, echo: ECHO, benchClient: BENCH_CLIENT };
  const out = {} as DnsScripts;
  for (const [key, text] of Object.entries(files)) {
    const path = join(dir, `dns-${key}.mjs`);
    writeFileSync(path, text);
    out[key as keyof DnsScripts] = path;
  }
  return out;
}
