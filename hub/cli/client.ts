import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CliError } from './errors.js';

export interface ClientOptions {
  server?: string;
  token?: string;
}

export const DEFAULT_SERVER = 'http://127.0.0.1:8080';
export const DEFAULT_TOKEN_FILE = './flotilla-data/admin.token';

export interface ApiAnswer<T> {
  body: T;
  warnings: string[];
}

/** The CLI's view of the hub's HTTP API: finds the server and token as docs/ARCHITECTURE.md, 'The command line', says. */
export class HubClient {
  readonly server: string;
  private readonly token: string;

  constructor(opts: ClientOptions) {
    this.server = (opts.server ?? process.env.FLOTILLA_SERVER ?? DEFAULT_SERVER).replace(/\/+$/, '');
    const token = opts.token ?? process.env.FLOTILLA_TOKEN ?? readTokenFile();
    if (!token) throw new CliError(`no admin token: pass --token, set FLOTILLA_TOKEN, or run from the folder that holds ${DEFAULT_TOKEN_FILE}`);
    this.token = token;
  }

  /**
   * One call of the API; an error answer becomes a CliError with the hub's message. A body may
   * be given already serialized (a string), as apply sends its batches.
   */
  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<ApiAnswer<T>> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const res = await this.send(method, path, payload, contentType);
    let parsed: unknown;
    try {
      parsed = res.text ? JSON.parse(res.text) : undefined;
    } catch {
      throw new CliError(`the hub answered ${res.status} with a body that is not JSON`);
    }
    if (res.status < 200 || res.status > 299) throw CliError.fromApi(res.status, parsed);
    const warning = res.headers.warning;
    return { body: parsed as T, warnings: parseWarnings(Array.isArray(warning) ? warning.join(', ') : (warning ?? null)) };
  }

  /**
   * Sends a request and reads its answer. When the hub answers before it has read the whole
   * body (a 413 for a body over its limit) and closes, the answer is what counts: the write
   * that then fails (EPIPE, a reset) is not reported in its place.
   */
  private send(method: string, path: string, payload: string | undefined, contentType: string): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
    const url = new URL(`${this.server}${path}`);
    const headers: Record<string, string | number> = { authorization: `Bearer ${this.token}` };
    if (payload !== undefined) {
      headers['content-type'] = contentType;
      headers['content-length'] = Buffer.byteLength(payload);
    }
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = request(url, { method, headers }, (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', done);
        // The hub closed the connection after its answer (it does after refusing a body).
        res.on('error', done);
        res.on('aborted', done);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (answered) return;
        const sending = payload !== undefined && (err.code === 'EPIPE' || err.code === 'ECONNRESET');
        reject(new CliError(`cannot reach the hub at ${this.server}: ${err.code ?? err.message}${sending ? ` (the connection closed while a body of ${Buffer.byteLength(payload)} bytes was being sent)` : ''}`));
      });
      req.end(payload);
    });
  }

  /** Opens a watch stream and calls `onEvent` for each line until the stream ends. */
  async watch(path: string, onEvent: (event: { type: string; object: Record<string, unknown> }) => void): Promise<void> {
    const res = await this.fetch('GET', path);
    if (!res.ok) throw CliError.fromApi(res.status, await res.json().catch(() => undefined));
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line) onEvent(JSON.parse(line) as { type: string; object: Record<string, unknown> });
      }
    }
  }

  /**
   * Reads a plain-text stream (logs) and hands each piece to `onText` as it arrives. A stream
   * that breaks off (the hub cut it: the device went away) is an error, not a quiet end.
   */
  async streamText(path: string, onText: (text: string) => void | Promise<void>): Promise<void> {
    const res = await this.fetch('GET', path);
    if (!res.ok) throw CliError.fromApi(res.status, await res.json().catch(() => undefined));
    if (!res.body) return;
    const decoder = new TextDecoder();
    const reader = res.body.getReader();
    for (;;) {
      let read: Awaited<ReturnType<typeof reader.read>>;
      try {
        read = await reader.read();
      } catch (err) {
        throw new CliError(`the stream from the hub broke off: ${(err as { cause?: Error }).cause?.message ?? (err as Error).message}`);
      }
      if (read.done) break;
      await onText(decoder.decode(read.value, { stream: true }));
    }
    const rest = decoder.decode();
    if (rest) await onText(rest);
  }

  private async fetch(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    let payload: string | undefined;
    if (body !== undefined) {
      headers['content-type'] = contentType;
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    try {
      return await fetch(`${this.server}${path}`, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(`cannot reach the hub at ${this.server}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
  }
}

function readTokenFile(): string | undefined {
  return existsSync(DEFAULT_TOKEN_FILE) ? readFileSync(DEFAULT_TOKEN_FILE, 'utf8').trim() : undefined;
}

function parseWarnings(header: string | null): string[] {
  if (!header) return [];
  const out: string[] = [];
  const re = /299 - ("(?:[^"\\]|\\.)*")/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(header))) out.push(JSON.parse(m[1]!) as string);
  return out;
}

/** API paths for a kind, as the hub serves them. */
export function objectPath(plural: string, namespaced: boolean, namespace: string | undefined, name?: string): string {
  const base = namespaced && namespace ? `/api/v1/namespaces/${encodeURIComponent(namespace)}/${plural}` : `/api/v1/${plural}`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}
