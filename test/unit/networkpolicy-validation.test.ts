import { describe, expect, it } from 'vitest';
import { ResourceService } from '../../hub/api/resources.js';
import { describe as describeObject } from '../../hub/cli/describe.js';
import { formatObjects } from '../../hub/cli/print.js';
import { ipBlockRanges } from '../../shared/resources/networkpolicy.js';
import { validateManifest } from '../../shared/resources/validate.js';
import { testHub } from './builders.js';

// NetworkPolicy manifests as Kubernetes validates them: every refusal names its field.

function policy(spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'p', namespace: 'default' }, spec };
}

function errorsOf(spec: Record<string, unknown>): string[] {
  return validateManifest(policy(spec)).errors.map((e) => `${e.path}: ${e.message}`);
}

describe('NetworkPolicy validation', () => {
  it('accepts the full shape and defaults policyTypes as Kubernetes does', () => {
    const full = validateManifest(
      policy({
        podSelector: { matchLabels: { app: 'db' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['a', 'b'] }] },
        ingress: [
          {
            from: [{ podSelector: { matchLabels: { app: 'web' } } }, { namespaceSelector: { matchLabels: { team: 'x' } }, podSelector: {} }, { ipBlock: { cidr: '192.0.2.0/24', except: ['192.0.2.128/25'] } }],
            ports: [{ protocol: 'TCP', port: 5432 }, { port: 'metrics' }, { protocol: 'UDP', port: 3000, endPort: 3010 }],
          },
        ],
        egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }] }],
      }),
    );
    expect(full.errors).toEqual([]);
    expect(full.warnings).toEqual([]);
    expect((full.object!.spec as { policyTypes: string[] }).policyTypes).toEqual(['Ingress', 'Egress']);
    // Ingress always, Egress only with egress rules; given types are kept as they are.
    expect((validateManifest(policy({ podSelector: {} })).object!.spec as { policyTypes: string[] }).policyTypes).toEqual(['Ingress']);
    expect((validateManifest(policy({ podSelector: {}, policyTypes: ['Egress'] })).object!.spec as { policyTypes: string[] }).policyTypes).toEqual(['Egress']);
  });

  it('refuses bad fields with Kubernetes-like messages naming each', () => {
    expect(errorsOf({ podSelector: {}, policyTypes: ['Ingress', 'Sideways'] })).toEqual(["spec.policyTypes[1]: Unsupported value: supported values: 'Ingress', 'Egress'"]);
    expect(errorsOf({ podSelector: {}, policyTypes: ['Ingress', 'Ingress'] })).toEqual(["spec.policyTypes[1]: Duplicate value: 'Ingress'"]);
    expect(errorsOf({ podSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } })[0]).toMatch(/^spec\.podSelector\.matchExpressions\[0\]\.values: /);
    expect(errorsOf({ podSelector: {}, ingress: [{ from: [{}] }] })).toEqual(['spec.ingress[0].from[0]: Required value: must specify a peer (podSelector, namespaceSelector or ipBlock)']);
    expect(errorsOf({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }] }] })[0]).toMatch(/^spec\.ingress\[0\]\.from\[0\]: Forbidden: may not specify more than 1 peer type/);
    expect(errorsOf({ podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/33' } }] }] })[0]).toMatch(/^spec\.egress\[0\]\.to\[0\]\.ipBlock\.cidr: Invalid value: '10\.0\.0\.0\/33'/);
    expect(errorsOf({ podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['10.1.0.0/24', '10.0.0.0/16'] } }] }] })).toEqual([
      "spec.egress[0].to[0].ipBlock.except[0]: Invalid value: '10.1.0.0/24': must be a strict subset of `cidr`",
      "spec.egress[0].to[0].ipBlock.except[1]: Invalid value: '10.0.0.0/16': must be a strict subset of `cidr`",
    ]);
    expect(errorsOf({ podSelector: {}, ingress: [{ ports: [{ protocol: 'SCTP', port: 1 }] }] })).toEqual(["spec.ingress[0].ports[0].protocol: Unsupported value: supported values: 'TCP', 'UDP'"]);
    expect(errorsOf({ podSelector: {}, ingress: [{ ports: [{ port: 70000 }] }] })).toEqual(['spec.ingress[0].ports[0].port: Invalid value: must be between 1 and 65535, inclusive']);
    expect(errorsOf({ podSelector: {}, ingress: [{ ports: [{ port: 'No_Such' }] }] })[0]).toMatch(/^spec\.ingress\[0\]\.ports\[0\]\.port: Invalid value: 'No_Such'/);
    expect(errorsOf({ podSelector: {}, ingress: [{ ports: [{ port: 90, endPort: 80 }] }] })).toEqual(['spec.ingress[0].ports[0].endPort: Invalid value: must be greater than or equal to `port`']);
    expect(errorsOf({ podSelector: {}, ingress: [{ ports: [{ port: 'http', endPort: 80 }] }] })).toEqual(['spec.ingress[0].ports[0].endPort: Invalid value: may not be specified when `port` is non-numeric']);
    expect(errorsOf({ podSelector: {}, ingress: [{ ports: [{ endPort: 80 }] }] })).toEqual(['spec.ingress[0].ports[0].endPort: Required value: may not be specified when `port` is not specified']);
  });

  it('cuts except out of an ipBlock', () => {
    expect(ipBlockRanges({ cidr: '10.0.0.0/24', except: ['10.0.0.64/26', '10.0.0.255/32'] })).toEqual([
      [0x0a000000, 0x0a00003f],
      [0x0a000080, 0x0a0000fe],
    ]);
  });
});

describe('namespaces and `get networkpolicy`', () => {
  it('labels every namespace with its own name, over whatever the manifest says', () => {
    const hub = testHub();
    try {
      const resources = new ResourceService(hub.store, hub.log);
      resources.apply([{ source: 'ns', value: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'kubernetes.io/metadata.name': 'other', team: 'a' } } } }]);
      expect(hub.store.get('Namespace', '', 'team-a')!.metadata.labels).toEqual({ 'kubernetes.io/metadata.name': 'team-a', team: 'a' });
    } finally {
      hub.db.close();
    }
  });

  it('shows NAME, POD-SELECTOR and AGE as kubectl does', () => {
    const at = new Date(Date.now() - 90_000).toISOString();
    const rows = [
      { kind: 'NetworkPolicy', metadata: { name: 'deny-all', creationTimestamp: at }, spec: { podSelector: {} } },
      { kind: 'NetworkPolicy', metadata: { name: 'db', creationTimestamp: at }, spec: { podSelector: { matchLabels: { app: 'db' }, matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['x'] }] } } },
    ];
    const lines = formatObjects('NetworkPolicy', rows, 'table').split('\n');
    expect(lines[0]).toMatch(/^NAME\s+POD-SELECTOR\s+AGE$/);
    expect(lines[1]).toMatch(/^deny-all\s+<none>\s+90s$/);
    expect(lines[2]).toMatch(/^db\s+app=db,tier!=x\s+90s$/);
  });

  it('describes a policy in kubectl\'s words', () => {
    const spec = validateManifest(policy({
      podSelector: { matchLabels: { app: 'db' } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }, { ipBlock: { cidr: '192.0.2.0/24', except: ['192.0.2.128/25'] } }], ports: [{ protocol: 'TCP', port: 5432 }] }],
    })).object!.spec;
    const text = describeObject({ kind: 'NetworkPolicy', metadata: { name: 'db', namespace: 'default', uid: 'u' }, spec }, []);
    expect(text).toContain(['Spec:', '  PodSelector:     app=db', '  Allowing ingress traffic:', '    To Port: 5432/TCP', '    From:', '      PodSelector: app=web', '      IPBlock:', '        CIDR: 192.0.2.0/24', '        Except: 192.0.2.128/25', '  Not affecting egress traffic', '  Policy Types: Ingress'].join('\n'));
  });
});
