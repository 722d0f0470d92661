import { it } from 'vitest';
import { setFlagsFromString } from 'node:v8';
import pino from 'pino';
import { startDockerd } from '../harness/dockerd.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { DockerRuntime } from '../../agent/runtime/docker.js';
import { MetricsCollector } from '../../agent/metrics/collector.js';
import { encodeMetricsBatch } from '../../shared/protocol/metrics.js';

it('collector cost', async () => {
  setFlagsFromString('--no-opt');
  setFlagsFromString('--no-maglev');
  const d = await startDockerd({ name: 'scratch2' });
  try {
    await buildTestImages(d.docker);
    const rt = new DockerRuntime(d.dockerHost);
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const infra = await d.docker.createContainer({ Image: TEST_IMAGE, Cmd: ['sleep', '3600'], Labels: { 'flotilla.container': 'POD', 'flotilla.pod': `p${i}`, 'flotilla.namespace': 'default' } });
      await infra.start();
      const app = await d.docker.createContainer({ Image: TEST_IMAGE, Cmd: ['sleep', '3600'], Labels: { 'flotilla.container': 'main', 'flotilla.pod': `p${i}`, 'flotilla.namespace': 'default' }, HostConfig: { NetworkMode: `container:${infra.id}` } });
      await app.start();
      ids.push(infra.id, app.id);
    }
    const containers = await rt.listContainers({});
    const log = pino({ level: 'silent' });
    let bytes = 0;
    const c = new MetricsCollector({ runtime: rt, containers: () => containers, fsPaths: () => ['/tmp'], publish: (p) => { bytes += p.length; return true; }, log });
    await c.tick();
    let cpu = process.cpuUsage();
    let t = Date.now();
    for (let i = 0; i < 10; i++) await c.tick();
    let used = process.cpuUsage(cpu);
    console.log('10 ticks: wall', Date.now() - t, 'ms; cpu user', used.user / 1000, 'sys', used.system / 1000, 'ms; bytes', bytes);
    cpu = process.cpuUsage();
    for (let i = 0; i < 10; i++) await Promise.all(containers.map((x) => rt.containerStats(x.id)));
    used = process.cpuUsage(cpu);
    console.log('10x20 stats only: cpu user', used.user / 1000, 'sys', used.system / 1000);
    cpu = process.cpuUsage();
    for (let i = 0; i < 10; i++) { const next = new Map(); const b = await c.sample(next); encodeMetricsBatch(b); }
    used = process.cpuUsage(cpu);
    console.log('10 samples+encode: cpu user', used.user / 1000, 'sys', used.system / 1000);
    cpu = process.cpuUsage();
    for (let i = 0; i < 10; i++) await rt.listContainers({});
    used = process.cpuUsage(cpu);
    console.log('10 listContainers: cpu user', used.user / 1000, 'sys', used.system / 1000);
  } finally {
    await d.stop();
  }
}, 300_000);
