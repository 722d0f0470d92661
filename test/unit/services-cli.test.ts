import { describe, expect, it } from 'vitest';
import { describe as describeObject } from '../../hub/cli/describe.js';
import { formatObjects } from '../../hub/cli/print.js';

const meta = (name: string) => ({ name, namespace: 'default', uid: `uid-${name}`, creationTimestamp: new Date(Date.now() - 300_000).toISOString() });

describe('get svc, endpoints and endpointslices', () => {
  it('prints TYPE, CLUSTER-IP, EXTERNAL-IP and PORT(S) as kubectl does', () => {
    const out = formatObjects(
      'Service',
      [
        { kind: 'Service', metadata: meta('store'), spec: { type: 'ClusterIP', clusterIP: '10.43.0.1', ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] } },
        { kind: 'Service', metadata: meta('web'), spec: { type: 'NodePort', clusterIP: '10.43.0.2', ports: [{ port: 80, nodePort: 30080 }] } },
        { kind: 'Service', metadata: meta('db'), spec: { clusterIP: 'None', ports: [{ port: 5432 }] } },
      ],
      'table',
    );
    expect(out.split('\n')).toEqual([
      'NAME    TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)         AGE',
      'store   ClusterIP   10.43.0.1    <none>        80/TCP,53/UDP   5m',
      'web     NodePort    10.43.0.2    <none>        80:30080/TCP    5m',
      'db      ClusterIP   None         <none>        5432/TCP        5m',
    ]);
    expect(formatObjects('Service', [{ kind: 'Service', metadata: meta('store'), spec: { clusterIP: '10.43.0.1', selector: { app: 'store' } } }], 'wide').split('\n')[1]).toMatch(/<none>\s+<none>\s+5m\s+app=store$/);
  });

  it('prints an EndpointSlice\'s ADDRESSTYPE, PORTS and ENDPOINTS, three at most', () => {
    const endpoints = ['10.42.1.5', '10.42.2.5', '10.42.3.5', '10.42.4.5'].map((ip) => ({ addresses: [ip], conditions: { ready: true } }));
    const out = formatObjects('EndpointSlice', [
      { kind: 'EndpointSlice', metadata: meta('store-x7k2q'), addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints },
      { kind: 'EndpointSlice', metadata: meta('idle-b4c5d'), addressType: 'IPv4', endpoints: [] },
    ], 'table');
    expect(out.split('\n')).toEqual([
      'NAME          ADDRESSTYPE   PORTS     ENDPOINTS                                   AGE',
      'store-x7k2q   IPv4          8080      10.42.1.5,10.42.2.5,10.42.3.5 + 1 more...   5m',
      'idle-b4c5d    IPv4          <unset>   <unset>                                     5m',
    ]);
  });
});

describe('describe service', () => {
  it('shows type, IP, ports with target and NodePort, affinity, policies and each endpoint with its node and readiness', () => {
    const svc = {
      kind: 'Service',
      metadata: meta('web'),
      spec: { type: 'NodePort', selector: { app: 'web' }, clusterIP: '10.43.0.2', clusterIPs: ['10.43.0.2'], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }, externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Cluster' },
    };
    const endpoints = {
      kind: 'Endpoints',
      metadata: meta('web'),
      subsets: [{ addresses: [{ ip: '10.42.1.5', nodeName: 'b', targetRef: { kind: 'Pod', name: 'web-1' } }], notReadyAddresses: [{ ip: '10.42.2.5', nodeName: 'c', targetRef: { kind: 'Pod', name: 'web-2' } }], ports: [{ name: 'http', port: 8080 }] }],
    };
    const text = describeObject(svc, [], { endpoints });
    expect(text).toContain('Type:             NodePort');
    expect(text).toContain('IP:               10.43.0.2');
    expect(text).toContain('Port:             http  80/TCP');
    expect(text).toContain('TargetPort:       8080/TCP');
    expect(text).toContain('NodePort:         http  30080/TCP');
    expect(text).toContain('Endpoints:        10.42.1.5:8080');
    expect(text).toContain('Session Affinity: ClientIP');
    expect(text).toContain('External Traffic Policy: Local');
    expect(text).toContain('Internal Traffic Policy: Cluster');
    expect(text).toMatch(/Endpoint Pods:\n\s+Address\s+Pod\s+Node\s+Ready\n\s+10\.42\.1\.5\s+web-1\s+b\s+true\n\s+10\.42\.2\.5\s+web-2\s+c\s+false/);
  });
});
