import { createHash, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HUB_USERNAME, type Topics } from '../../shared/protocol/topics.js';
import { DEFAULT_ACL_ACCESS, HUB_ROLE, hubRole, joinRole, type DynsecRole } from './mosquitto-acl.js';

/**
 * What an external Mosquitto needs to enforce the fleet's rules: a mosquitto.conf snippet and
 * the dynamic-security plugin's initial JSON (the hub's account and the roles). Pure functions
 * apart from the broker password file, so that `flotilla broker-config` and the tests share them.
 */

/** In the hub's data directory: the password of the hub's own account at the external broker. */
export const BROKER_PASSWORD_FILE = 'broker.password';

/**
 * Mosquitto 2.0's password format (its `struct mosquitto_pw`): PBKDF2-HMAC-SHA512 over a
 * 12-byte random salt, a 64-byte hash, both base64; 101 iterations is the count Mosquitto
 * itself uses for new passwords. The secrets hashed here are random, not chosen by people, so
 * the iteration count only has to match what the plugin accepts.
 */
export const DYNSEC_SALT_BYTES = 12;
export const DYNSEC_HASH_BYTES = 64;
export const DYNSEC_ITERATIONS = 101;

export interface DynsecPassword {
  password: string;
  salt: string;
  iterations: number;
}

export function hashDynsecPassword(password: string, opts: { salt?: Buffer; iterations?: number } = {}): DynsecPassword {
  const salt = opts.salt ?? randomBytes(DYNSEC_SALT_BYTES);
  if (salt.length !== DYNSEC_SALT_BYTES) throw new Error(`salt: must be ${DYNSEC_SALT_BYTES} bytes, got ${salt.length}`);
  const iterations = opts.iterations ?? DYNSEC_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < 1) throw new Error(`iterations: must be a positive integer, got ${iterations}`);
  const hash = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, iterations, DYNSEC_HASH_BYTES, 'sha512');
  return { password: hash.toString('base64'), salt: salt.toString('base64'), iterations };
}

/** Whether `password` matches a stored dynamic-security entry, as the plugin checks it. */
export function verifyDynsecPassword(password: string, stored: DynsecPassword): boolean {
  const salt = Buffer.from(stored.salt, 'base64');
  if (salt.length !== DYNSEC_SALT_BYTES) return false;
  const expected = Buffer.from(stored.password, 'base64');
  const actual = Buffer.from(hashDynsecPassword(password, { salt, iterations: stored.iterations }).password, 'base64');
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** Reads the hub's broker password, or creates it (mode 0600) when `create` and it is absent. */
export function loadBrokerPassword(dataDir: string, opts: { create: boolean }): string {
  const file = join(dataDir, BROKER_PASSWORD_FILE);
  if (existsSync(file)) {
    const password = readFileSync(file, 'utf8').trim();
    if (password.length < 16) throw new Error(`${file} holds no usable password (at least 16 characters)`);
    return password;
  }
  if (!opts.create) throw new Error(`${file} is missing: run \`flotilla broker-config mosquitto --data-dir ${dataDir}\` and give the broker its configuration first`);
  const password = randomBytes(32).toString('base64url');
  writeFileSync(file, `${password}\n`, { mode: 0o600, flag: 'wx' });
  return password;
}

/**
 * The hub's MQTT client id at the external broker: fixed across restarts, so the broker keeps
 * its session (subscriptions and queued QoS 1 messages) while the hub is down, and derived
 * from its secret password, so that no other client can take the id over and cut the hub off.
 */
export function hubClientId(brokerPassword: string): string {
  return `flotilla-hub-${createHash('sha256').update(`client-id:${brokerPassword}`).digest('hex').slice(0, 16)}`;
}

export interface DynsecClient {
  username: string;
  textname?: string;
  clientid?: string;
  password?: string;
  salt?: string;
  iterations?: number;
  roles: { rolename: string; priority?: number }[];
}

export interface DynsecConfig {
  defaultACLAccess: typeof DEFAULT_ACL_ACCESS;
  clients: DynsecClient[];
  groups: never[];
  roles: DynsecRole[];
}

/**
 * The plugin's initial JSON: the hub's account and the two fixed roles. The `join` account
 * and the device accounts are created by the hub over the control topic (the join token and
 * the devices' passwords never pass through this file), and the plugin saves them here itself.
 */
export function buildDynsecConfig(opts: { topics: Topics; hubPassword: string; salt?: Buffer }): DynsecConfig {
  return {
    defaultACLAccess: DEFAULT_ACL_ACCESS,
    clients: [{ username: HUB_USERNAME, textname: 'Flotilla hub', ...hashDynsecPassword(opts.hubPassword, opts.salt ? { salt: opts.salt } : {}), roles: [{ rolename: HUB_ROLE }] }],
    groups: [],
    roles: [hubRole(opts.topics), joinRole(opts.topics)],
  };
}

/** Where Debian and its derivatives install the plugin, by architecture. */
export const DYNSEC_PLUGIN_PATHS = [
  '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so',
  '/usr/lib/mosquitto_dynamic_security.so',
  '/usr/local/lib/mosquitto_dynamic_security.so',
];

export function findDynsecPlugin(exists: (path: string) => boolean = existsSync): string {
  return DYNSEC_PLUGIN_PATHS.find(exists) ?? DYNSEC_PLUGIN_PATHS[0]!;
}

/**
 * The most bytes of one MQTT packet the external broker takes (its `max_packet_size`; a client
 * that sends a larger one is disconnected before the packet is read). Mosquitto has one limit
 * for every client, the hub included, so it must hold the hub's largest desired set (pods with
 * ConfigMaps and Secrets of up to 1 MiB each) as well as the devices' messages; the hub drops
 * any device message over its own, smaller limit (`--mqtt-max-packet-size`) on arrival.
 */
export const EXTERNAL_BROKER_MAX_PACKET_BYTES = 8 * 1024 * 1024;

export interface MosquittoConfOptions {
  host: string;
  port: number;
  pluginPath: string;
  dynsecFile: string;
  /** Where Mosquitto saves sessions and retained messages, so that they survive its restarts. */
  persistenceDir?: string;
}

export function buildMosquittoConf(o: MosquittoConfOptions): string {
  const lines = [
    '# Flotilla fleet broker: run the hub with',
    `#   flotilla hub --broker mqtt://${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`,
    '# Every client authenticates (no anonymous access) and every topic is authorised by the',
    '# dynamic-security plugin: devices reach only their own topics, joining devices only the',
    '# join exchange, and the hub creates and removes device accounts as devices join and leave.',
    'per_listener_settings false',
    `listener ${o.port} ${o.host}`,
    'protocol mqtt',
    'allow_anonymous false',
    `plugin ${o.pluginPath}`,
    `plugin_opt_config_file ${o.dynsecFile}`,
    '# $SYS/broker/clients/connected, read by the hub, is refreshed this often (seconds).',
    'sys_interval 10',
    '# A client sending a larger packet is disconnected before the packet is read (it must hold',
    '# the hub\'s largest desired set; the hub drops device messages over its own limit).',
    `max_packet_size ${EXTERNAL_BROKER_MAX_PACKET_BYTES}`,
  ];
  if (o.persistenceDir) {
    lines.push(
      '# Keep sessions (the hub\'s queued messages) and retained desired sets across restarts.',
      'persistence true',
      `persistence_location ${o.persistenceDir.endsWith('/') ? o.persistenceDir : `${o.persistenceDir}/`}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
