import { describe, expect, it } from 'vitest';
import { validateManifest, type ValidationResult } from '../../shared/resources/validate.js';

// Probes as Kubernetes validates and defaults them: exactly one handler, bounded timings, and
// successThreshold 1 for liveness and startup probes.

type Fields = Record<string, unknown>;

function podWith(container: Fields): Fields {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web' }, spec: { containers: [{ name: 'app', image: 'nginx:1.27', ...container }] } };
}

function errorsAt(result: ValidationResult, path: string): string[] {
  return result.errors.filter((e) => e.path === path).map((e) => e.message);
}

const httpGet = { httpGet: { path: '/healthz', port: 8080 } };

describe('probe validation', () => {
  it('accepts each handler and fills in the Kubernetes defaults', () => {
    const result = validateManifest(podWith({ livenessProbe: { exec: { command: ['cat', '/tmp/healthy'] } }, readinessProbe: httpGet, startupProbe: { tcpSocket: { port: 'http' } } }));
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
    const c = (result.object!.spec as { containers: Fields[] }).containers[0]!;
    for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
      expect(c[probe]).toMatchObject({ initialDelaySeconds: 0, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 });
    }
  });

  it('keeps every httpGet field', () => {
    const probe = { httpGet: { path: '/', port: 'web', host: '127.0.0.1', scheme: 'HTTPS', httpHeaders: [{ name: 'X-Probe', value: '1' }] }, periodSeconds: 1, failureThreshold: 2 };
    const result = validateManifest(podWith({ readinessProbe: probe }));
    expect(result.errors).toEqual([]);
    expect((result.object!.spec as { containers: Fields[] }).containers[0]!.readinessProbe).toMatchObject(probe);
  });

  it('refuses a probe with no handler, naming the probe', () => {
    const result = validateManifest(podWith({ livenessProbe: { periodSeconds: 5 } }));
    expect(errorsAt(result, 'spec.containers[0].livenessProbe')).toEqual(['must specify a handler type (exec, httpGet or tcpSocket)']);
  });

  it('refuses more than one handler, naming the extra one', () => {
    const result = validateManifest(podWith({ readinessProbe: { ...httpGet, tcpSocket: { port: 8080 } } }));
    expect(errorsAt(result, 'spec.containers[0].readinessProbe.tcpSocket')).toEqual(['may not specify more than 1 handler type']);
  });

  it('requires successThreshold 1 for liveness and startup probes, not for readiness', () => {
    const bad = validateManifest(podWith({ livenessProbe: { ...httpGet, successThreshold: 2 }, startupProbe: { ...httpGet, successThreshold: 3 } }));
    expect(errorsAt(bad, 'spec.containers[0].livenessProbe.successThreshold')).toEqual(['must be 1']);
    expect(errorsAt(bad, 'spec.containers[0].startupProbe.successThreshold')).toEqual(['must be 1']);
    expect(validateManifest(podWith({ readinessProbe: { ...httpGet, successThreshold: 2 } })).errors).toEqual([]);
  });

  it.each([
    ['periodSeconds', 0, 'must be greater than or equal to 1'],
    ['timeoutSeconds', 0, 'must be greater than or equal to 1'],
    ['failureThreshold', 0, 'must be greater than or equal to 1'],
    ['initialDelaySeconds', -1, 'must be greater than or equal to 0'],
    ['periodSeconds', 1.5, 'must be an integer'],
  ])('refuses %s %s', (field, value, message) => {
    const result = validateManifest(podWith({ readinessProbe: { ...httpGet, [field]: value } }));
    expect(errorsAt(result, `spec.containers[0].readinessProbe.${field}`)).toEqual([message]);
  });

  it('refuses bad ports and an empty exec command', () => {
    expect(errorsAt(validateManifest(podWith({ readinessProbe: { tcpSocket: { port: 70000 } } })), 'spec.containers[0].readinessProbe.tcpSocket.port')).toEqual(['must be between 1 and 65535']);
    expect(errorsAt(validateManifest(podWith({ readinessProbe: { httpGet: { port: 'Not_A_Name' } } })), 'spec.containers[0].readinessProbe.httpGet.port').join()).toMatch(/port/);
    expect(errorsAt(validateManifest(podWith({ readinessProbe: { httpGet: { port: 80, scheme: 'FTP' } } })), 'spec.containers[0].readinessProbe.httpGet.scheme')).toHaveLength(1);
    expect(errorsAt(validateManifest(podWith({ livenessProbe: { exec: { command: [] } } })), 'spec.containers[0].livenessProbe.exec.command')).toEqual(['must not be empty']);
  });

  it('warns about the probe fields it does not support instead of dropping them silently', () => {
    const result = validateManifest(podWith({ livenessProbe: { ...httpGet, terminationGracePeriodSeconds: 5 } }));
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual(['spec.containers[0].livenessProbe.terminationGracePeriodSeconds: unsupported field, ignored']);
  });
});
