import { existsSync, readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { JOIN_USERNAME, deviceClientId, deviceUsername, nodeFromUsername, type Topics } from '../../shared/protocol/topics.js';
import type { CredentialRecord, Credentials } from '../auth/credentials.js';
import type { DynsecControl } from './dynsec.js';
import { aclKey, deviceRole, deviceRoleName, hubRole, joinRole, JOIN_ROLE, type DynsecAcl, type DynsecRole } from './mosquitto-acl.js';

const NOT_FOUND = ['Client not found', 'Role not found'];
/** How often the join account is checked against the hub's tokens (a token may expire). */
const JOIN_CHECK_INTERVAL_MS = 30_000;

/**
 * The accounts of an external Mosquitto, kept in step with the hub's credentials through the
 * dynamic-security plugin, so that nothing needs a broker restart:
 *
 * * a device's account (`node:NAME`, bound to client id `node:NAME`, with its own role) is
 *   created at join, before the device gets its password, and deleted when its credentials are
 *   revoked or its node deleted (which also disconnects it: the plugin kicks the user's clients);
 *   at start, accounts of nodes that no longer hold credentials are deleted.
 * * the `join` account holds one join token at a time (Mosquitto checks a password, not a list):
 *   the newest one created with `flotilla token create`, or else the one in join.token. Its id is
 *   kept in the account's text name so a restarted hub knows it. When that token is revoked or
 *   expires, the account falls back to join.token's token if that is still valid, or is
 *   disabled. Older join tokens that are still valid at the hub stop working at the broker
 *   once a newer one is created.
 *
 * Device passwords and join tokens reach the broker only in these commands, never in a file the
 * hub writes; the hub itself keeps only their hashes (auth/credentials.ts).
 */
export class MosquittoAccounts {
  /** The join account at the broker as last seen: which token it holds, and whether it is disabled. */
  private join: { exists: boolean; tokenId?: string; disabled: boolean } = { exists: false, disabled: false };
  private timer?: NodeJS.Timeout;
  private warnedNoJoinToken = false;

  constructor(
    private readonly dynsec: DynsecControl,
    private readonly topics: Topics,
    private readonly credentials: Credentials,
    private readonly joinTokenFile: string,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.ensureRole(hubRole(this.topics));
    await this.ensureRole(joinRole(this.topics));
    const got = await this.dynsec.one({ command: 'getClient', username: JOIN_USERNAME }, NOT_FOUND);
    const client = got.data?.client as { textname?: string; disabled?: boolean } | undefined;
    if (client) this.join = { exists: true, disabled: client.disabled === true, ...tokenIdOf(client.textname) };
    await this.reconcileJoin();
    await this.pruneDevices();
    this.timer = setInterval(() => {
      this.reconcileJoin().catch((err: Error) => this.log.warn({ err: err.message }, 'could not update the join account at the broker; retrying'));
    }, JOIN_CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.dynsec.stop();
  }

  /** A device's account and role, created (afresh) at join, before its credentials are sent. */
  async registerDevice(node: string, password: string): Promise<void> {
    const role = deviceRole(this.topics, node);
    const results = await this.dynsec.run([
      { command: 'deleteClient', username: deviceUsername(node) },
      { command: 'deleteRole', rolename: role.rolename },
      { command: 'createRole', rolename: role.rolename, textname: role.textname, acls: role.acls },
      { command: 'createClient', username: deviceUsername(node), password, clientid: deviceClientId(node), textname: `Flotilla node ${node}`, roles: [{ rolename: role.rolename }] },
    ]);
    const failed = results.slice(2).find((r) => r.error);
    if (failed) throw new Error(`the broker refused ${failed.command} for node ${node}: ${failed.error}`);
    this.log.info({ node }, 'device account created at the broker');
  }

  /** Deletes a device's account and role: the broker disconnects it and refuses it from then on. */
  async removeDevice(node: string): Promise<void> {
    const results = await this.dynsec.run([
      { command: 'deleteClient', username: deviceUsername(node) },
      { command: 'deleteRole', rolename: deviceRoleName(node) },
    ]);
    const failed = results.find((r) => r.error && !NOT_FOUND.includes(r.error));
    if (failed) throw new Error(`the broker refused ${failed.command} for node ${node}: ${failed.error}`);
    if (!results[0]!.error) this.log.info({ node }, 'device account deleted at the broker');
  }

  /** A join token was just created: it becomes the one the broker's join account accepts. */
  async joinTokenCreated(token: string, record: CredentialRecord): Promise<void> {
    await this.setJoinToken(token, record.id);
  }

  /** A token was revoked: if the broker's join account held it, fall back or disable. */
  async joinTokenRevoked(record: CredentialRecord): Promise<void> {
    if (record.kind === 'join' && record.id === this.join.tokenId) await this.reconcileJoin();
  }

  /** Level-triggered: the join account holds a valid token, or is disabled. */
  private async reconcileJoin(): Promise<void> {
    if (this.join.exists && this.join.tokenId && this.isValidJoinToken(this.join.tokenId)) {
      if (this.join.disabled) {
        await this.dynsec.one({ command: 'enableClient', username: JOIN_USERNAME });
        this.join.disabled = false;
      }
      return;
    }
    const fromFile = this.joinTokenFromFile();
    if (fromFile) return this.setJoinToken(fromFile.token, fromFile.id);
    if (!this.join.exists && !this.warnedNoJoinToken) {
      this.warnedNoJoinToken = true;
      this.log.warn('no valid join token for the broker: devices cannot join until `flotilla token create`');
    } else if (this.join.exists && !this.join.disabled) {
      await this.dynsec.one({ command: 'disableClient', username: JOIN_USERNAME });
      this.join.disabled = true;
      this.log.warn('no valid join token for the broker: joining is disabled until `flotilla token create`');
    }
  }

  private async setJoinToken(token: string, tokenId: string): Promise<void> {
    const textname = `join token ${tokenId}`;
    if (this.join.exists) {
      await this.dynsec.one({ command: 'modifyClient', username: JOIN_USERNAME, password: token, textname });
      if (this.join.disabled) await this.dynsec.one({ command: 'enableClient', username: JOIN_USERNAME });
    } else {
      await this.dynsec.one({ command: 'createClient', username: JOIN_USERNAME, password: token, textname, roles: [{ rolename: JOIN_ROLE }] });
    }
    this.join = { exists: true, tokenId, disabled: false };
    this.log.info({ tokenId }, 'the broker accepts join token');
  }

  private isValidJoinToken(id: string): boolean {
    const record = this.credentials.get(id);
    return record !== undefined && record.kind === 'join' && !record.revokedAt && (!record.expiresAt || Date.parse(record.expiresAt) > Date.now());
  }

  private joinTokenFromFile(): { token: string; id: string } | undefined {
    if (!existsSync(this.joinTokenFile)) return undefined;
    const token = readFileSync(this.joinTokenFile, 'utf8').trim();
    const record = this.credentials.verifyToken('join', token);
    return record ? { token, id: record.id } : undefined;
  }

  /** Deletes the accounts of nodes that hold no credentials at the hub (revoked or deleted while the broker was out of reach). */
  private async pruneDevices(): Promise<void> {
    const listed = await this.dynsec.one({ command: 'listClients' });
    const usernames = ((listed.data?.clients as unknown[]) ?? []).filter((u): u is string => typeof u === 'string');
    for (const username of usernames) {
      const node = nodeFromUsername(username);
      if (node === undefined || this.credentials.hasDeviceCredentials(node)) continue;
      await this.removeDevice(node);
    }
  }

  /** Creates a role, or brings an existing one's ACLs to exactly those given. */
  private async ensureRole(role: DynsecRole): Promise<void> {
    const got = await this.dynsec.one({ command: 'getRole', rolename: role.rolename }, NOT_FOUND);
    const existing = (got.data?.role as { acls?: DynsecAcl[] } | undefined)?.acls;
    if (!existing) {
      await this.dynsec.one({ command: 'createRole', rolename: role.rolename, textname: role.textname, acls: role.acls });
      return;
    }
    const want = new Map(role.acls.map((a) => [aclKey(a), a]));
    const have = new Map(existing.map((a) => [aclKey(a), a]));
    const commands = [
      ...[...have].filter(([k]) => !want.has(k)).map(([, a]) => ({ command: 'removeRoleACL', rolename: role.rolename, acltype: a.acltype, topic: a.topic })),
      ...[...want].filter(([k]) => !have.has(k)).map(([, a]) => ({ command: 'addRoleACL', rolename: role.rolename, ...a })),
    ];
    if (commands.length === 0) return;
    const failed = (await this.dynsec.run(commands)).find((r) => r.error);
    if (failed) throw new Error(`the broker refused ${failed.command} for role ${role.rolename}: ${failed.error}`);
    this.log.info({ role: role.rolename, changes: commands.length }, 'role updated at the broker');
  }
}

function tokenIdOf(textname: string | undefined): { tokenId?: string } {
  const m = /^join token ([a-z0-9]+)$/.exec(textname ?? '');
  return m ? { tokenId: m[1]! } : {};
}
