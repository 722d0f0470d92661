import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { LogsParams } from '../../shared/protocol/rpc.js';
import type { PodSpec } from '../../shared/resources/pod.js';
import type { RpcClient } from '../dispatch/rpc.js';
import type { ObjectStore } from '../store/objects.js';
import { HubError } from './errors.js';

/**
 * Output the hub holds for one slow HTTP reader before it gives up on the stream: the device
 * sends at a bounded rate, and a reader that does not keep up must not fill the hub's memory.
 */
export const MAX_UNREAD_LOG_BYTES = 1024 * 1024;

/**
 * `GET /api/v1/namespaces/{ns}/pods/{name}/log`, Kubernetes' path and query (container,
 * tailLines, follow, sinceSeconds, previous): plain text streamed from the device that runs
 * the pod. Errors found before the first byte are API errors; after it, the stream breaks off.
 */
export class PodLogRoutes {
  constructor(
    private readonly store: ObjectStore,
    private readonly rpc: RpcClient,
    private readonly log: Logger,
  ) {}

  async serve(res: ServerResponse, namespace: string, name: string, query: URLSearchParams): Promise<void> {
    const pod = this.store.get('Pod', namespace, name);
    if (!pod) throw new HubError('HUB_ERR_NOT_FOUND', `pods "${name}" not found`);
    const spec = pod.spec as PodSpec;
    const names = spec.containers.map((c) => c.name);
    let container = query.get('container') ?? undefined;
    // kubectl's answers, word for word where it has one.
    if (!container) {
      if (names.length !== 1) throw new HubError('HUB_ERR_BAD_REQUEST', `a container name must be specified for pod ${name}, choose one of: [${names.join(' ')}]`);
      container = names[0]!;
    } else if (!names.includes(container)) {
      throw new HubError('HUB_ERR_BAD_REQUEST', `container ${container} is not valid for pod ${name}, choose one of: [${names.join(' ')}]`);
    }
    if (!spec.nodeName) throw new HubError('HUB_ERR_BAD_REQUEST', `pod ${name} does not have a host assigned`);
    const params: LogsParams = {
      podUid: pod.metadata.uid,
      container,
      follow: flag(query, 'follow'),
      ...optionalInt(query, 'tailLines', 0, 'tail'),
      ...optionalInt(query, 'sinceSeconds', 1, 'sinceSeconds'),
      ...(flag(query, 'previous') ? { previous: true } : {}),
    };

    const startResponse = () => {
      if (res.headersSent) return;
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
      res.flushHeaders();
    };
    const stream = this.rpc.logs(spec.nodeName, params, (chunk) => {
      startResponse();
      res.write(chunk);
      if (res.writableLength > MAX_UNREAD_LOG_BYTES) {
        this.log.warn({ pod: `${namespace}/${name}` }, 'log reader too slow; stream ended');
        stream.cancel();
        res.destroy();
      }
    });
    // The reader going away (Ctrl-C on `flotilla logs -f`) stops the device's stream.
    res.on('close', () => stream.cancel());
    await stream.started;
    if (res.destroyed) return;
    startResponse();
    try {
      await stream.finished;
      res.end();
    } catch (err) {
      // Headers are out: breaking the connection is the only way to tell the reader the output is incomplete.
      this.log.info({ pod: `${namespace}/${name}`, err: (err as Error).message }, 'log stream broke off');
      res.destroy();
    }
  }
}

function flag(query: URLSearchParams, key: string): boolean {
  const value = query.get(key);
  return value !== null && value !== 'false' && value !== '0';
}

function optionalInt<K extends string>(query: URLSearchParams, key: string, min: number, as: K): Partial<Record<K, number>> {
  const text = query.get(key);
  if (text === null || text === '') return {};
  const n = Number(text);
  if (!Number.isInteger(n)) throw new HubError('HUB_ERR_BAD_REQUEST', `${key}: '${text}' is not an integer`);
  // kubectl sends --tail=-1 as "all"; no query parameter means the same.
  if (key === 'tailLines' && n < 0) return {};
  if (n < min) throw new HubError('HUB_ERR_BAD_REQUEST', `${key}: must be at least ${min}`);
  return { [as]: n } as Partial<Record<K, number>>;
}
