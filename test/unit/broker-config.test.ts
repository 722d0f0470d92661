import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HUB_USERNAME, Topics } from '../../shared/protocol/topics.js';
import { deviceRole, HUB_ROLE, hubRole, JOIN_ROLE, joinRole, type DynsecAcl } from '../../hub/broker/mosquitto-acl.js';
import { BROKER_PASSWORD_FILE, buildDynsecConfig, buildMosquittoConf, findDynsecPlugin, hashDynsecPassword, hubClientId, loadBrokerPassword, verifyDynsecPassword, type DynsecConfig } from '../../hub/broker/mosquitto-config.js';
import { brokerConfigCommand, type BrokerConfigOptions } from '../../hub/cli/broker-config.js';
import { CliError } from '../../hub/cli/errors.js';
import { requireTool } from '../harness/dockerd.js';

const MOSQUITTO_CTRL = '/usr/bin/mosquitto_ctrl';
const topics = new Topics();
const temps: string[] = [];

function temp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flt-broker-config-'));
  temps.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function topicsOf(acls: DynsecAcl[], acltype: DynsecAcl['acltype'], allow = true): string[] {
  return acls.filter((a) => a.acltype === acltype && a.allow === allow).map((a) => a.topic).sort();
}

function options(dataDir: string, extra: Partial<BrokerConfigOptions> = {}): BrokerConfigOptions {
  return { dataDir, listen: '127.0.0.1', port: 1883, topicPrefix: 'flotilla/v1', plugin: '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so', ...extra };
}

describe("Mosquitto's password format (PBKDF2-SHA512)", () => {
  it('hashes exactly as mosquitto_ctrl does, given its salt', () => {
    try {
      requireTool(MOSQUITTO_CTRL);
    } catch (err) {
      throw new Error(`${(err as Error).message} (Debian package: mosquitto)`);
    }
    const file = join(temp(), 'dynsec.json');
    execFileSync(MOSQUITTO_CTRL, ['dynsec', 'init', file, 'admin', 'correct horse battery'], { stdio: 'ignore' });
    const made = (JSON.parse(readFileSync(file, 'utf8')) as { clients: { password: string; salt: string; iterations: number }[] }).clients[0]!;
    const ours = hashDynsecPassword('correct horse battery', { salt: Buffer.from(made.salt, 'base64'), iterations: made.iterations });
    expect(ours).toEqual({ password: made.password, salt: made.salt, iterations: made.iterations });
    expect(verifyDynsecPassword('correct horse battery', made)).toBe(true);
    expect(verifyDynsecPassword('correct horse batterz', made)).toBe(false);
  });

  it('uses a fresh 12-byte salt, a 64-byte hash and 101 iterations', () => {
    const a = hashDynsecPassword('secret');
    const b = hashDynsecPassword('secret');
    expect(Buffer.from(a.salt, 'base64')).toHaveLength(12);
    expect(Buffer.from(a.password, 'base64')).toHaveLength(64);
    expect(a.iterations).toBe(101);
    expect(a.salt).not.toBe(b.salt);
    expect(a.password).not.toBe(b.password);
    expect(verifyDynsecPassword('secret', b)).toBe(true);
  });

  it('refuses a salt of the wrong size and a bad iteration count, naming the field', () => {
    expect(() => hashDynsecPassword('x', { salt: Buffer.alloc(8) })).toThrow(/salt/);
    expect(() => hashDynsecPassword('x', { iterations: 0 })).toThrow(/iterations/);
  });
});

describe('the roles', () => {
  it("gives a device exactly its own topics: publish status, presence, metrics, events, rpc/res; read desired, rpc/req, the peer table, the relay and the Services", () => {
    const { rolename, acls } = deviceRole(topics, 'pi-7');
    expect(rolename).toBe('flotilla-node-pi-7');
    const own = (c: string) => `flotilla/v1/nodes/pi-7/${c}`;
    expect(topicsOf(acls, 'publishClientSend')).toEqual(['events', 'metrics', 'presence', 'rpc/res', 'status'].map(own));
    const fleet = ['flotilla/v1/network/peers/+', 'flotilla/v1/network/relay', 'flotilla/v1/network/services/+/+', 'flotilla/v1/network/endpoints/+/+/+', 'flotilla/v1/network/catalog'];
    const readable = [own('desired'), own('rpc/req'), ...fleet].sort();
    expect(topicsOf(acls, 'subscribeLiteral')).toEqual(readable);
    expect(topicsOf(acls, 'publishClientReceive')).toEqual(readable);
    expect(topicsOf(acls, 'subscribePattern')).toEqual([]);
    // The fleet's wildcards are literal subscriptions: a device may subscribe to exactly those, and to no other wildcard; it publishes nothing there.
    expect(acls.every((a) => a.allow && (!/[+#]/.test(a.topic) || fleet.includes(a.topic)))).toBe(true);
    expect(topicsOf(acls, 'publishClientSend').some((t) => t.includes('/network/'))).toBe(false);
  });

  it('lets a joining device publish join requests and read one join response, never through a wildcard', () => {
    const { rolename, acls } = joinRole(topics);
    expect(rolename).toBe(JOIN_ROLE);
    expect(topicsOf(acls, 'publishClientSend')).toEqual(['flotilla/v1/join/+/req']);
    expect(topicsOf(acls, 'subscribePattern')).toEqual(['flotilla/v1/join/+/res']);
    expect(topicsOf(acls, 'subscribeLiteral', false)).toEqual(['flotilla/v1/join/+/res']);
    expect(acls.some((a) => a.topic.includes('/nodes/'))).toBe(false);
  });

  it("gives the hub its fleet's prefix, the control topic and the client count", () => {
    const { acls } = hubRole(new Topics('fleet-a/v1'));
    expect(topicsOf(acls, 'subscribePattern')).toEqual(['$CONTROL/dynamic-security/#', 'fleet-a/v1/#']);
    expect(topicsOf(acls, 'publishClientSend')).toEqual(['$CONTROL/dynamic-security/#', 'fleet-a/v1/#']);
    expect(topicsOf(acls, 'subscribeLiteral')).toEqual(['$SYS/broker/clients/connected']);
  });
});

describe('dynamic-security.json', () => {
  it('holds the hub account with a verifiable password, both fixed roles, and denies by default', () => {
    const config = buildDynsecConfig({ topics, hubPassword: 'the-hub-password-0123456789' });
    expect(config.defaultACLAccess).toEqual({ publishClientSend: false, publishClientReceive: false, subscribe: false, unsubscribe: true });
    expect(config.clients.map((c) => c.username)).toEqual([HUB_USERNAME]);
    const hub = config.clients[0]!;
    expect(hub.roles).toEqual([{ rolename: HUB_ROLE }]);
    expect(verifyDynsecPassword('the-hub-password-0123456789', hub as { password: string; salt: string; iterations: number })).toBe(true);
    expect(JSON.stringify(config)).not.toContain('the-hub-password-0123456789');
    expect(config.roles.map((r) => r.rolename)).toEqual([HUB_ROLE, JOIN_ROLE]);
  });
});

describe('mosquitto.conf', () => {
  it('listens where asked, admits no anonymous client and loads the plugin with its file', () => {
    const conf = buildMosquittoConf({ host: '127.0.0.1', port: 18830, pluginPath: '/p/dynsec.so', dynsecFile: '/etc/x/dynsec.json' });
    const lines = conf.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines).toContain('listener 18830 127.0.0.1');
    expect(lines).toContain('allow_anonymous false');
    expect(lines).toContain('plugin /p/dynsec.so');
    expect(lines).toContain('plugin_opt_config_file /etc/x/dynsec.json');
    expect(lines).not.toContain('persistence true');
    expect(buildMosquittoConf({ host: '::1', port: 1, pluginPath: 'p', dynsecFile: 'f', persistenceDir: '/var/lib/b' })).toContain('persistence_location /var/lib/b/\n');
  });

  it('finds the plugin where the distribution installed it', () => {
    expect(findDynsecPlugin((p) => p.includes('aarch64'))).toBe('/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so');
    expect(findDynsecPlugin(() => false)).toBe('/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so');
  });
});

describe('the broker password', () => {
  it('is made once (mode 0600) and then reused; the hub never makes it', () => {
    const dir = temp();
    expect(() => loadBrokerPassword(dir, { create: false })).toThrow(/broker\.password is missing: run `flotilla broker-config mosquitto/);
    const made = loadBrokerPassword(dir, { create: true });
    expect(made.length).toBeGreaterThanOrEqual(32);
    expect(statSync(join(dir, BROKER_PASSWORD_FILE)).mode & 0o777).toBe(0o600);
    expect(loadBrokerPassword(dir, { create: false })).toBe(made);
    expect(loadBrokerPassword(dir, { create: true })).toBe(made);
  });

  it('gives the hub a fixed client id that only its password tells', () => {
    expect(hubClientId('a-password')).toBe(hubClientId('a-password'));
    expect(hubClientId('a-password')).not.toBe(hubClientId('b-password'));
    expect(hubClientId('a-password')).toMatch(/^flotilla-hub-[0-9a-f]{16}$/);
  });
});

describe('flotilla broker-config mosquitto', () => {
  it('writes mosquitto.conf and dynamic-security.json (0600) that match the hub password', () => {
    const base = temp();
    const lines: string[] = [];
    brokerConfigCommand('mosquitto', options(join(base, 'hub'), { out: join(base, 'broker'), port: 18831 }), (t) => lines.push(t));
    const dynsecFile = join(base, 'broker', 'dynamic-security.json');
    const conf = readFileSync(join(base, 'broker', 'mosquitto.conf'), 'utf8');
    expect(conf).toContain(`plugin_opt_config_file ${dynsecFile}\n`);
    expect(conf).toContain('listener 18831 127.0.0.1\n');
    expect(statSync(dynsecFile).mode & 0o777).toBe(0o600);
    const config = JSON.parse(readFileSync(dynsecFile, 'utf8')) as DynsecConfig;
    const password = readFileSync(join(base, 'hub', BROKER_PASSWORD_FILE), 'utf8').trim();
    expect(verifyDynsecPassword(password, config.clients[0] as { password: string; salt: string; iterations: number })).toBe(true);
    expect(lines.join('\n')).toContain(`flotilla hub --data-dir ${join(base, 'hub')} --broker mqtt://127.0.0.1:18831`);
  });

  it('refuses to replace a dynamic-security.json (it holds the device accounts) without --force', () => {
    const base = temp();
    const o = options(join(base, 'hub'), { out: join(base, 'broker') });
    brokerConfigCommand('mosquitto', o, () => {});
    const before = readFileSync(join(base, 'broker', 'dynamic-security.json'), 'utf8');
    expect(() => brokerConfigCommand('mosquitto', o, () => {})).toThrow(/exists and holds the broker's device accounts; use --force/);
    brokerConfigCommand('mosquitto', { ...o, force: true }, () => {});
    const after = readFileSync(join(base, 'broker', 'dynamic-security.json'), 'utf8');
    expect(after).not.toBe(before);
    // Same hub password, fresh salt.
    const password = readFileSync(join(base, 'hub', BROKER_PASSWORD_FILE), 'utf8').trim();
    expect(verifyDynsecPassword(password, (JSON.parse(after) as DynsecConfig).clients[0] as { password: string; salt: string; iterations: number })).toBe(true);
  });

  it('prints both files when no --out is given, and writes only the password', () => {
    const base = temp();
    const printed: string[] = [];
    brokerConfigCommand('mosquitto', options(join(base, 'hub'), { dynsecFile: '/etc/mosquitto/fleet.json' }), (t) => printed.push(t));
    expect(printed[0]).toMatch(/^# ==> mosquitto\.conf <==\n/);
    expect(printed[0]).toContain('plugin_opt_config_file /etc/mosquitto/fleet.json\n');
    expect(printed[1]).toMatch(/^# ==> \/etc\/mosquitto\/fleet\.json <==\n/);
    const json = JSON.parse(printed[1]!.split('\n').slice(1).join('\n')) as DynsecConfig;
    expect(json.clients[0]!.username).toBe(HUB_USERNAME);
    expect(existsSync(join(base, 'hub', BROKER_PASSWORD_FILE))).toBe(true);
  });

  it('refuses an unknown broker and a bad topic prefix as usage errors', () => {
    const base = temp();
    const usage = (fn: () => void) => {
      try {
        fn();
      } catch (err) {
        return err instanceof CliError ? `${err.exitCode}: ${err.message}` : String(err);
      }
      return 'accepted';
    };
    expect(usage(() => brokerConfigCommand('emqx', options(base), () => {}))).toBe("2: unknown broker 'emqx': only mosquitto is supported");
    expect(usage(() => brokerConfigCommand('mosquitto', options(base, { topicPrefix: 'a/#' }), () => {}))).toMatch(/^2: --topic-prefix: invalid topic prefix/);
  });
});
