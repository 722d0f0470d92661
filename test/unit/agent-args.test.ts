import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAgentArgs, parseLabels } from '../../agent/main.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function config(argv: string[]) {
  const parsed = parseAgentArgs(argv);
  if (typeof parsed === 'string') throw new Error(`expected a config, got ${parsed}`);
  return parsed;
}

describe('agent arguments', () => {
  it('takes the flags of the command-line contract', () => {
    const { config: c, dockerHost } = config(['--hub', 'mqtt://10.0.0.1:1883', '--token', 'abc.def', '--name', 'Pi-1', '--labels', 'fleet=demo,site=lab', '--state-dir', '/var/lib/x', '--docker-host', 'unix:///run/d.sock']);
    expect(c).toMatchObject({ hub: 'mqtt://10.0.0.1:1883', token: 'abc.def', name: 'pi-1', labels: { fleet: 'demo', site: 'lab' }, stateDir: '/var/lib/x' });
    expect(dockerHost).toBe('unix:///run/d.sock');
  });

  it('runs the WireGuard overlay by default, on port 51820 and interface flotilla-wg', () => {
    expect(config([]).config).toMatchObject({ overlay: 'wireguard', wireguardPort: 51820, wireguardInterface: 'flotilla-wg' });
    expect(config(['--overlay', 'none', '--wireguard-port', '4500', '--wireguard-interface', 'wg-pods', '--advertise-address', '192.0.2.10']).config).toMatchObject({ overlay: 'none', wireguardPort: 4500, wireguardInterface: 'wg-pods', advertiseAddress: '192.0.2.10' });
  });

  it('refuses overlay flags it cannot use, naming the flag', () => {
    expect(() => parseAgentArgs(['--overlay', 'flannel'])).toThrow("--overlay: 'flannel' is not wireguard or none");
    expect(() => parseAgentArgs(['--wireguard-port', '70000'])).toThrow('--wireguard-port');
    expect(() => parseAgentArgs(['--wireguard-interface', 'a-name-far-too-long'])).toThrow('--wireguard-interface');
    expect(() => parseAgentArgs(['--wireguard-interface', 'bad/name'])).toThrow('--wireguard-interface');
    expect(() => parseAgentArgs(['--advertise-address', 'pi.local'])).toThrow("--advertise-address: 'pi.local' is not an IPv4 address");
    expect(() => parseAgentArgs(['--advertise-address', '10.0.0.300'])).toThrow('--advertise-address');
  });

  it('takes the ingress ports, 80 and 443 by default, 0 for off', () => {
    expect(config([]).config).toMatchObject({ ingressHttpPort: 80, ingressHttpsPort: 443 });
    expect(config(['--ingress-http-port', '8080', '--ingress-https-port', '0']).config).toMatchObject({ ingressHttpPort: 8080, ingressHttpsPort: 0 });
    expect(() => parseAgentArgs(['--ingress-http-port', '65536'])).toThrow("--ingress-http-port: '65536' is not a port number");
    expect(() => parseAgentArgs(['--ingress-https-port', 'https'])).toThrow('--ingress-https-port');
  });

  it('reads the join token from a file, trimmed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flt-args-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'join.token'), 'abcdef.0123456789abcdef0123\n');
    expect(config(['--token-file', join(dir, 'join.token')]).config.token).toBe('abcdef.0123456789abcdef0123');
  });

  it('refuses a token file that cannot be read, naming it', () => {
    expect(() => parseAgentArgs(['--token-file', '/nonexistent/join.token'])).toThrow("--token-file: cannot read '/nonexistent/join.token': ENOENT");
  });

  it('refuses both --token and --token-file', () => {
    expect(() => parseAgentArgs(['--token', 'a', '--token-file', 'b'])).toThrow('give --token or --token-file, not both');
  });

  it('refuses a hub URL that is not MQTT', () => {
    expect(() => parseAgentArgs(['--hub', 'http://hub:8080'])).toThrow("--hub: 'http://hub:8080' is not an mqtt:// or mqtts:// URL");
  });

  it('refuses an invalid node name and unknown flags', () => {
    expect(() => parseAgentArgs(['--name', 'bad_name'])).toThrow(/--name: invalid node name 'bad_name'/);
    expect(() => parseAgentArgs(['--frobnicate'])).toThrow(/frobnicate/);
  });

  it('takes --pod-pids-limit as a positive integer, and none by default', () => {
    expect(config(['--pod-pids-limit', '512']).config.podPidsLimit).toBe(512);
    expect(config([]).config.podPidsLimit).toBeUndefined();
    for (const bad of ['0', '-1', '1.5', 'lots', '']) expect(() => parseAgentArgs([`--pod-pids-limit=${bad}`])).toThrow(`--pod-pids-limit: '${bad}' is not a positive integer`);
  });

  it('answers help and version', () => {
    expect(parseAgentArgs(['--help'])).toBe('help');
    expect(parseAgentArgs(['--version'])).toBe('version');
  });
});

describe('--labels', () => {
  it('parses k=v pairs and validates them as Kubernetes labels', () => {
    expect(parseLabels('a=1,example.com/role=edge')).toEqual({ a: '1', 'example.com/role': 'edge' });
    expect(parseLabels(undefined)).toEqual({});
    expect(() => parseLabels('novalue')).toThrow("--labels: 'novalue' is not key=value");
    expect(() => parseLabels('bad key=x')).toThrow(/--labels: bad key/);
  });
});
