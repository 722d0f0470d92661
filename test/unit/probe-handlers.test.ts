import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProbe, type ProbeTarget } from '../../agent/probes/handlers.js';
import type { ContainerRuntime, ExecResult } from '../../agent/runtime/runtime.js';
import type { Probe } from '../../shared/resources/probe.js';
import { container } from './builders.js';

// Each probe handler once, against servers on loopback and an engine stand-in for exec: what
// counts as success, and what a failure says.

let server: http.Server;
let port = 0;
const seen: http.IncomingHttpHeaders[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push(req.headers);
    if (req.url === '/slow') return; // never answers
    const status = Number(req.url?.slice(1)) || 200;
    res.writeHead(status, status >= 300 && status < 400 ? { location: 'http://192.0.2.1/' } : {});
    res.end('body');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as net.AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const timing = { initialDelaySeconds: 0, periodSeconds: 1, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 };
const target = (): ProbeTarget => ({ containerId: 'c1', container: container({ name: 'app', image: 'img:1', ports: [{ name: 'web', containerPort: port }] }), address: '127.0.0.1' });
const noEngine = {} as ContainerRuntime;

function engineAnswering(result: ExecResult | Error): { runtime: ContainerRuntime; calls: unknown[][] } {
  const calls: unknown[][] = [];
  const runtime = { exec: async (...args: unknown[]) => {
    calls.push(args);
    if (result instanceof Error) throw result;
    return result;
  } } as unknown as ContainerRuntime;
  return { runtime, calls };
}

describe('httpGet', () => {
  const get = (path: string, extra: Partial<NonNullable<Probe['httpGet']>> = {}): Probe => ({ ...timing, httpGet: { path, port, ...extra } });

  it.each([['/200'], ['/204'], ['/302']])('succeeds on %s without following a redirect', async (path) => {
    expect(await runProbe(noEngine, get(path), target())).toEqual({ ok: true });
  });

  it('fails on a 404 and a 500, saying the status code', async () => {
    expect(await runProbe(noEngine, get('/404'), target())).toEqual({ ok: false, message: 'HTTP probe failed with statuscode: 404' });
    expect(await runProbe(noEngine, get('/500'), target())).toEqual({ ok: false, message: 'HTTP probe failed with statuscode: 500' });
  });

  it('sends the probe\'s headers and resolves a named port', async () => {
    seen.length = 0;
    expect(await runProbe(noEngine, { ...timing, httpGet: { path: '/200', port: 'web', httpHeaders: [{ name: 'X-Probe', value: 'yes' }] } }, target())).toEqual({ ok: true });
    expect(seen[0]).toMatchObject({ 'x-probe': 'yes', 'user-agent': expect.stringMatching(/^flotilla-probe\//) });
  });

  it('fails after timeoutSeconds when the server does not answer', async () => {
    const started = Date.now();
    const outcome = await runProbe(noEngine, get('/slow'), target());
    expect(outcome).toEqual({ ok: false, message: `Get "http://127.0.0.1:${port}/slow": timed out after 1s` });
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('fails, naming the port, when a named port is not the container\'s', async () => {
    expect(await runProbe(noEngine, { ...timing, httpGet: { port: 'metrics' } }, target())).toEqual({ ok: false, message: 'unable to find port "metrics" in container app' });
  });

  it('fails while the pod has no IP yet', async () => {
    expect(await runProbe(noEngine, get('/200'), { ...target(), address: undefined })).toEqual({ ok: false, message: 'the pod has no IP address yet' });
  });
});

describe('tcpSocket', () => {
  it('succeeds when a connection is made', async () => {
    expect(await runProbe(noEngine, { ...timing, tcpSocket: { port } }, target())).toEqual({ ok: true });
  });

  it('fails on a closed port', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const outcome = await runProbe(noEngine, { ...timing, tcpSocket: { port: closedPort } }, target());
    expect(outcome).toEqual({ ok: false, message: expect.stringMatching(new RegExp(`^dial tcp 127\\.0\\.0\\.1:${closedPort}: .*ECONNREFUSED`)) });
  });
});

describe('exec', () => {
  it('succeeds on exit status 0, with the probe\'s timeout', async () => {
    const { runtime, calls } = engineAnswering({ exitCode: 0, output: '' });
    expect(await runProbe(runtime, { ...timing, timeoutSeconds: 3, exec: { command: ['cat', '/tmp/healthy'] } }, target())).toEqual({ ok: true });
    expect(calls).toEqual([['c1', ['cat', '/tmp/healthy'], 3_000]]);
  });

  it('fails on another exit status with the command\'s output', async () => {
    const { runtime } = engineAnswering({ exitCode: 1, output: "cat: can't open '/tmp/healthy': No such file or directory\n" });
    expect(await runProbe(runtime, { ...timing, exec: { command: ['cat', '/tmp/healthy'] } }, target())).toEqual({ ok: false, message: "cat: can't open '/tmp/healthy': No such file or directory" });
    const silent = engineAnswering({ exitCode: 2, output: '' });
    expect(await runProbe(silent.runtime, { ...timing, exec: { command: ['false'] } }, target())).toEqual({ ok: false, message: 'command ["false"] exited with 2' });
  });

  it('fails when the engine cannot run the command', async () => {
    const { runtime } = engineAnswering(new Error('command timed out after 1000 ms'));
    expect(await runProbe(runtime, { ...timing, exec: { command: ['sleep', '9'] } }, target())).toEqual({ ok: false, message: 'command timed out after 1000 ms' });
  });
});
