import type { RunningHub } from './processes.js';

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: T;
}

export interface ObjectWatch<T> {
  /** Every event so far, in the order the hub sent them. */
  readonly events: WatchEvent<T>[];
  stop(): Promise<void>;
}

/**
 * Follows an API collection with `?watch=true` and keeps every event, so a test sees each
 * status the hub stored, however briefly it lasted (polling would miss a short-lived one).
 * `path` is an API list path such as `/api/v1/namespaces/default/pods`.
 */
export async function watchObjects<T>(hub: RunningHub, path: string): Promise<ObjectWatch<T>> {
  const controller = new AbortController();
  const res = await fetch(`${hub.apiUrl}${path}?watch=true`, { headers: { authorization: `Bearer ${hub.adminToken}` }, signal: controller.signal });
  if (res.status !== 200 || !res.body) throw new Error(`watch ${path}: HTTP ${res.status}`);
  const events: WatchEvent<T>[] = [];
  const body = res.body;
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
          events.push(JSON.parse(buffer.slice(0, nl)) as WatchEvent<T>);
          buffer = buffer.slice(nl + 1);
        }
      }
    } catch {
      // Aborted by stop(), or the hub went away: the events so far are what the test gets.
    }
  })();
  return {
    events,
    stop: async () => {
      controller.abort();
      await reading;
    },
  };
}
