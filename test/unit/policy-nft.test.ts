import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { NodeEvent } from '../../agent/node/image-gc.js';
import { PolicyEnforcer, type PolicyPlane } from '../../agent/network/policy/enforcer.js';
import { buildModel, setElements } from '../../agent/network/policy/model.js';
import { fullRuleset, incrementalScript } from '../../agent/network/policy/nft.js';
import type { DesiredPolicies } from '../../shared/protocol/policy.js';

// The agent's side of network policy without a kernel: the model, its nft scripts, and the
// enforcer's choice between one small transaction and a whole replacement.

const SECTION: DesiredPolicies = {
  sets: {
    'default/db/i0': { ips: ['10.42.2.7', '10.42.1.3'] },
    'default/web/e0': { blocks: [{ cidr: '10.42.0.0/16', except: ['10.42.2.0/24'] }] },
  },
  profiles: {
    db: { ingress: [{ peers: 'default/db/i0', ports: [{ protocol: 'TCP', port: 5432 }, { protocol: 'TCP', port: 8000, endPort: 8080 }, { protocol: 'UDP' }] }] },
    web: { egress: [{ peers: 'default/web/e0' }] },
    deny: { ingress: [], egress: [] },
  },
  pods: { 'uid-db': 'db', 'uid-web': 'web', 'uid-deny': 'deny', 'uid-later': 'deny' },
};

const IPS = new Map([
  ['uid-db', '10.42.1.2'],
  ['uid-web', '10.42.1.3'],
  ['uid-deny', '10.42.1.4'],
]);

describe('the policy model', () => {
  it('maps each isolated pod IP to its chain, and its peers to interval elements', () => {
    const { model, problems } = buildModel(SECTION, IPS);
    expect(problems).toEqual([]);
    expect([...model.ingress.keys()].sort()).toEqual(['10.42.1.2', '10.42.1.4']);
    expect([...model.egress.keys()].sort()).toEqual(['10.42.1.3', '10.42.1.4']);
    const dbChain = model.chains.get(model.ingress.get('10.42.1.2')!)!;
    const set = [...model.sets.keys()].find((n) => model.sets.get(n)!.includes('10.42.1.3'))!;
    expect(dbChain).toEqual([`ip saddr @${set} tcp dport { 5432, 8000-8080 } return`, `ip saddr @${set} meta l4proto udp return`, 'drop']);
    expect(model.chains.get(model.ingress.get('10.42.1.4')!)).toEqual(['drop']);
    // A pod without an IP yet is not in the table.
    expect([...model.ingress.keys()]).not.toContain(undefined);
    expect(model.sets.size).toBe(2);
  });

  it('cuts except out of ipBlocks, and merges only what overlaps', () => {
    expect(setElements({ blocks: [{ cidr: '10.42.0.0/16', except: ['10.42.2.0/24'] }] })).toEqual(['10.42.0.0-10.42.1.255', '10.42.3.0-10.42.255.255']);
    expect(setElements({ ips: ['10.42.2.9', '10.42.1.5', '10.42.1.6'], blocks: [{ cidr: '10.42.1.0/24' }] })).toEqual(['10.42.1.0-10.42.1.255', '10.42.2.9']);
  });

  it('a rule naming a set that is not there allows nothing, and says so', () => {
    const { model, problems } = buildModel({ ...SECTION, profiles: { ...SECTION.profiles, db: { ingress: [{ peers: 'missing' }] } } }, IPS);
    expect(model.chains.get(model.ingress.get('10.42.1.2')!)).toEqual(['drop']);
    expect(problems[0]).toMatch(/names peer set 'missing'/);
  });
});

describe('nft scripts', () => {
  it('the full ruleset replaces the table in one script, replies first', () => {
    const script = fullRuleset(buildModel(SECTION, IPS).model);
    expect(script.startsWith('table inet flotilla-policy\ndelete table inet flotilla-policy\ntable inet flotilla-policy {\n')).toBe(true);
    expect(script).toMatch(/chain forward \{\n {4}type filter hook forward priority filter; policy accept;\n {4}ct state established,related accept\n {4}ip daddr vmap @ingress\n {4}ip saddr vmap @egress\n/);
    expect(script).toContain('elements = { 10.42.1.2 : jump in_');
  });

  it("a peer's new IP is one set element; a new pod is one map entry; nothing else is touched", () => {
    const before = buildModel(SECTION, IPS).model;
    const peer = buildModel({ ...SECTION, sets: { ...SECTION.sets, 'default/db/i0': { ips: ['10.42.2.7', '10.42.1.3', '10.42.3.3'] } } }, IPS).model;
    const set = [...before.sets.keys()].find((n) => before.sets.get(n)!.includes('10.42.2.7'))!;
    expect(incrementalScript(before, peer)).toBe(`add element inet flotilla-policy ${set} { 10.42.3.3 }\n`);
    const pod = buildModel(SECTION, new Map([...IPS, ['uid-later', '10.42.1.9']])).model;
    const lines = incrementalScript(before, pod).trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^add element inet flotilla-policy ingress \{ 10\.42\.1\.9 : jump in_[0-9a-f]{16} \}$/);
    expect(lines[1]).toMatch(/^add element inet flotilla-policy egress \{ 10\.42\.1\.9 : jump out_[0-9a-f]{16} \}$/);
    expect(incrementalScript(before, before)).toBe('');
  });

  it('a changed policy adds its new chain, moves the pods, then removes what nothing uses', () => {
    const before = buildModel(SECTION, IPS).model;
    const after = buildModel({ ...SECTION, profiles: { ...SECTION.profiles, db: { ingress: [{ ports: [{ protocol: 'TCP', port: 80 }] }] } } }, IPS).model;
    const lines = incrementalScript(before, after).trim().split('\n');
    const oldChain = before.ingress.get('10.42.1.2')!;
    const newChain = after.ingress.get('10.42.1.2')!;
    const oldSet = [...before.sets.keys()].find((n) => !after.sets.has(n))!;
    expect(lines).toEqual([
      `add chain inet flotilla-policy ${newChain}`,
      `add rule inet flotilla-policy ${newChain} tcp dport { 80 } return`,
      `add rule inet flotilla-policy ${newChain} drop`,
      'delete element inet flotilla-policy ingress { 10.42.1.2 }',
      `add element inet flotilla-policy ingress { 10.42.1.2 : jump ${newChain} }`,
      `flush chain inet flotilla-policy ${oldChain}`,
      `delete chain inet flotilla-policy ${oldChain}`,
      `delete set inet flotilla-policy ${oldSet}`,
    ]);
  });
});

/** A plane that records scripts; `refuse` makes the next scripts fail. */
class FakePlane implements PolicyPlane {
  scripts: string[] = [];
  table = false;
  refuse = 0;
  async apply(script: string): Promise<void> {
    if (this.refuse > 0) {
      this.refuse--;
      throw new Error('nft: Could not process rule');
    }
    this.scripts.push(script);
    this.table = !script.endsWith(`delete table inet flotilla-policy\n`);
  }
  async tableExists(): Promise<boolean> {
    return this.table;
  }
  async bridgeFiltering(): Promise<{ state: 'on' } | { state: 'unavailable'; why: string }> {
    return { state: 'unavailable', why: 'br_netfilter is not loaded' };
  }
}

function enforcer(): { plane: FakePlane; events: NodeEvent[]; e: PolicyEnforcer } {
  const plane = new FakePlane();
  const events: NodeEvent[] = [];
  return { plane, events, e: new PolicyEnforcer(plane, pino({ level: 'silent' }), (ev) => events.push(ev)) };
}

describe('PolicyEnforcer', () => {
  it('replaces the table at start, then changes it by small transactions, and does nothing when nothing changed', async () => {
    const { plane, events, e } = enforcer();
    await e.sync(SECTION, IPS);
    expect(plane.scripts).toHaveLength(1);
    expect(plane.scripts[0]).toMatch(/^table inet flotilla-policy\ndelete table/);
    await e.sync(SECTION, IPS);
    expect(plane.scripts).toHaveLength(1);
    await e.sync(SECTION, new Map([...IPS, ['uid-later', '10.42.1.9']]));
    expect(plane.scripts).toHaveLength(2);
    expect(plane.scripts[1]).toMatch(/^add element inet flotilla-policy ingress/);
    expect(e.stats).toMatchObject({ transactions: 2, full: 1, failures: 0 });
    // The bridge check's finding is told once.
    expect(events.map((ev) => ev.reason)).toEqual(['NetworkPolicyDegraded']);
  });

  it('writes the table whole again when it has gone missing (checked every 30 s)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const { plane, e } = enforcer();
      await e.sync(SECTION, IPS);
      plane.table = false; // someone's `nft flush ruleset`
      await e.sync(SECTION, IPS);
      expect(plane.scripts).toHaveLength(1);
      vi.setSystemTime(Date.now() + 31_000);
      await e.sync(SECTION, IPS);
      expect(plane.scripts).toHaveLength(2);
      expect(plane.scripts[1]).toMatch(/^table inet flotilla-policy\ndelete table/);
    } finally {
      vi.useRealTimers();
    }
  });

  it('with no policy, removes a table an earlier run left, once', async () => {
    const { plane, e } = enforcer();
    await e.sync(undefined, IPS);
    await e.sync(undefined, IPS);
    expect(plane.scripts).toEqual(['table inet flotilla-policy\ndelete table inet flotilla-policy\n']);
  });

  it('a refused change is followed by a whole replacement; a refused replacement is an event, retried at the next pass', async () => {
    const { plane, events, e } = enforcer();
    await e.sync(SECTION, IPS);
    plane.refuse = 1;
    await e.sync(SECTION, new Map([...IPS, ['uid-later', '10.42.1.9']]));
    expect(plane.scripts.at(-1)).toMatch(/^table inet flotilla-policy\ndelete table/);
    const written = plane.scripts.length;
    plane.refuse = 2;
    await e.sync(SECTION, IPS);
    expect(plane.scripts).toHaveLength(written);
    expect(e.stats.failures).toBe(1);
    expect(events.map((ev) => ev.reason)).toContain('NetworkPolicyFailed');
    plane.refuse = 0;
    await e.sync(SECTION, IPS);
    expect(plane.scripts.at(-1)).toMatch(/^table inet flotilla-policy\ndelete table/);
  });

  it('a section it cannot read leaves the policy in force and is told as an event', async () => {
    const { plane, events, e } = enforcer();
    await e.sync(SECTION, IPS);
    await e.sync({ sets: {}, profiles: { x: { ingress: [{ ports: [{ protocol: 'SCTP' }] }] } }, pods: {} }, IPS);
    expect(plane.scripts).toHaveLength(1);
    const invalid = events.find((ev) => ev.reason === 'NetworkPolicyInvalid');
    expect(invalid?.message).toMatch(/policies\.profiles\.x\.ingress\[0\]\.ports\[0\]\.protocol/);
  });
});
