import type { IncomingMessage } from 'node:http';
import type { DaemonSetSpec } from '../../shared/resources/daemonset.js';
import type { DeploymentSpec } from '../../shared/resources/deployment.js';
import { validateManifest } from '../../shared/resources/validate.js';
import { planWaves, type PlannedWave } from '../../shared/rollout/plan.js';
import { templateHash } from '../controllers/names.js';
import { specOf, statusOf, wavesStrategyOf } from '../controllers/waves/records.js';
import type { RolloutAction, WavesController } from '../controllers/waves/controller.js';
import type { DeploymentWavesController } from '../controllers/waves/deployment.js';
import type { ObjectStore } from '../store/objects.js';
import { parseBody } from './body.js';
import { HubError } from './errors.js';

const ACTIONS: readonly RolloutAction[] = ['pause', 'resume', 'abort'];

/** What `rollout status --dry-run` and `apply --dry-run` show: the revision a template would be, and the devices of each wave. */
export interface RolloutPreview {
  revision: number;
  waves: PlannedWave[];
  reason?: string;
}

/**
 * The rollout control of a DaemonSet with `updateStrategy.type: Waves`, or a Deployment with
 * `strategy.type: Waves` (`deployments` in place of `daemonsets`):
 *   POST /apis/flotilla/v1/namespaces/{ns}/daemonsets/{name}/rollout          {"action": "pause"|"resume"|"abort"} → the Rollout record
 *   POST /apis/flotilla/v1/namespaces/{ns}/daemonsets/{name}/rollout/preview  [a DaemonSet manifest] → RolloutPreview
 * The preview plans with the function the controller uses when the rollout starts, over the same targets.
 */
export class RolloutRoutes {
  constructor(
    private readonly store: ObjectStore,
    private readonly waves: WavesController,
    private readonly deploymentWaves?: DeploymentWavesController,
  ) {}

  /**
   * `parts`: the path after /apis. A preview writes nothing, so `dryRun` changes nothing for it;
   * an action under `dryRun` is refused (a pause or resume cannot be tried without being made).
   */
  async handle(req: IncomingMessage, method: string, parts: string[], send: (status: number, body: unknown) => void, body: () => Promise<Buffer>, dryRun = false): Promise<void> {
    const [group, version, namespaces, namespace, plural, name, sub, op, ...extra] = parts;
    const preview = op === 'preview';
    if (group !== 'flotilla' || version !== 'v1' || namespaces !== 'namespaces' || !namespace || (plural !== 'daemonsets' && (plural !== 'deployments' || !this.deploymentWaves)) || !name || sub !== 'rollout' || (op !== undefined && !preview) || extra.length > 0) {
      throw new HubError('HUB_ERR_NOT_FOUND', `no route for /apis/${parts.join('/')}`);
    }
    if (method !== 'POST') throw new HubError('HUB_ERR_METHOD_NOT_ALLOWED', `rollout${preview ? '/preview' : ''} takes POST`);
    if (dryRun && !preview) throw new HubError('HUB_ERR_BAD_REQUEST', 'dryRun: not supported for rollout actions (nothing was paused, resumed or aborted; see rollout/preview)');
    const raw = await body();
    const deployment = plural === 'deployments';
    const manifest = preview && raw.toString('utf8').trim() !== '' ? this.single(req, raw) : undefined;
    if (preview) return send(200, deployment ? this.previewDeployment(namespace, name, manifest) : this.preview(namespace, name, manifest));
    if (raw.toString('utf8').trim() === '') throw new HubError('HUB_ERR_BAD_REQUEST', `action: is required (one of ${ACTIONS.join(', ')})`);
    const doc = this.single(req, raw) as { action?: unknown } | null;
    const action = doc && typeof doc === 'object' ? doc.action : undefined;
    if (typeof action !== 'string' || !ACTIONS.includes(action as RolloutAction)) {
      throw new HubError('HUB_ERR_BAD_REQUEST', `action: must be one of ${ACTIONS.join(', ')}${action === undefined ? '' : `, not ${JSON.stringify(action)}`}`);
    }
    const result = deployment ? this.deploymentWaves!.act(namespace, name, action as RolloutAction) : this.waves.act(namespace, name, action as RolloutAction);
    if (!result.ok) throw new HubError(result.status === 404 ? 'HUB_ERR_NOT_FOUND' : 'HUB_ERR_CONFLICT', result.message);
    return send(200, result.record);
  }

  private single(req: IncomingMessage, raw: Buffer): unknown {
    const docs = parseBody(req, raw);
    if (docs.length !== 1) throw new HubError('HUB_ERR_BAD_REQUEST', 'the body must be one object');
    return docs[0]!.value;
  }

  /** A Deployment's preview: its waves count pods (`replicas` of each wave), planned as its controller plans them. */
  previewDeployment(namespace: string, name: string, manifest?: unknown): RolloutPreview {
    const stored = this.store.get('Deployment', namespace, name);
    if (manifest === undefined && !stored) throw new HubError('HUB_ERR_NOT_FOUND', `deployments "${name}" not found`);
    const spec = manifest === undefined ? (stored!.spec as DeploymentSpec) : (this.manifestSpec('Deployment', namespace, name, manifest) as DeploymentSpec);
    return this.deploymentWaves!.preview(namespace, name, spec, stored);
  }

  /** The spec of a manifest sent for a preview, validated, of the kind and name of the path. */
  private manifestSpec(kind: string, namespace: string, name: string, manifest: unknown): unknown {
    const result = validateManifest(manifest);
    if (result.errors.length > 0) throw new HubError('HUB_ERR_INVALID', `${kind} "${name}" is invalid: ${result.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, result.errors);
    const object = result.object!;
    if (object.kind !== kind) throw new HubError('HUB_ERR_BAD_REQUEST', `kind: must be ${kind}, not ${object.kind}`);
    if (object.metadata.name !== name) throw new HubError('HUB_ERR_BAD_REQUEST', `metadata.name: must be ${name}, the ${kind} of the path`);
    if (object.metadata.namespace !== undefined && object.metadata.namespace !== namespace) throw new HubError('HUB_ERR_BAD_REQUEST', `metadata.namespace: must be ${namespace}, the namespace of the path`);
    return object.spec;
  }

  preview(namespace: string, name: string, manifest?: unknown): RolloutPreview {
    const stored = this.store.get('DaemonSet', namespace, name);
    let spec: DaemonSetSpec;
    if (manifest === undefined) {
      if (!stored) throw new HubError('HUB_ERR_NOT_FOUND', `daemonsets "${name}" not found`);
      spec = stored.spec as DaemonSetSpec;
    } else {
      const result = validateManifest(manifest);
      if (result.errors.length > 0) throw new HubError('HUB_ERR_INVALID', `DaemonSet "${name}" is invalid: ${result.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, result.errors);
      const object = result.object!;
      if (object.kind !== 'DaemonSet') throw new HubError('HUB_ERR_BAD_REQUEST', `kind: must be DaemonSet, not ${object.kind}`);
      if (object.metadata.name !== name) throw new HubError('HUB_ERR_BAD_REQUEST', `metadata.name: must be ${name}, the DaemonSet of the path`);
      if (object.metadata.namespace !== undefined && object.metadata.namespace !== namespace) throw new HubError('HUB_ERR_BAD_REQUEST', `metadata.namespace: must be ${namespace}, the namespace of the path`);
      spec = object.spec as DaemonSetSpec;
    }
    const targets = this.waves.targets(spec.template);
    const everyone = (): PlannedWave[] => [{ name: 'all', nodes: targets.map((t) => t.name) }];
    const strategy = wavesStrategyOf(spec);
    const record = stored ? this.waves.latestRecord(namespace, name, stored.metadata.uid) : undefined;
    const hash = templateHash(spec.template);
    if (!strategy) return { revision: 0, waves: everyone(), reason: 'updateStrategy is not Waves: every target is updated as the DaemonSet controller goes' };
    if (!record) return { revision: 1, waves: everyone(), reason: 'first revision: every target at once (nothing to roll from)' };
    const rs = specOf(record);
    if (rs.toHash === hash) {
      return { revision: rs.revision, waves: rs.waves, reason: `no change: the template is that of revision ${rs.revision} (${statusOf(record).phase})` };
    }
    return { revision: rs.revision + 1, waves: planWaves(strategy.waves, targets) };
  }
}
