import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { packBatches } from '../../hub/cli/apply.js';
import { CliError } from '../../hub/cli/errors.js';
import { MAX_OBJECT_BYTES, readManifests, type ManifestObject } from '../../hub/cli/files.js';
import { DocumentTooLong, splitYamlDocuments, type TextDocument } from '../../hub/cli/yaml-documents.js';

/** The text as a stream of pieces of `size` characters, as a file arrives. */
async function* pieces(text: string, size: number): AsyncIterable<string> {
  for (let i = 0; i < text.length; i += size) yield text.slice(i, i + size);
}

async function split(text: string, size = 7, keepTextUpTo = 1 << 20): Promise<{ docs: TextDocument[]; several: boolean[] }> {
  const docs: TextDocument[] = [];
  const several: boolean[] = [];
  await splitYamlDocuments(pieces(text, size), { maxLength: (head) => (/^kind: \w*List$/m.test(head) ? Infinity : keepTextUpTo) }, (doc, s) => {
    docs.push(doc);
    several.push(s);
  });
  return { docs, several };
}

describe('splitYamlDocuments', () => {
  it('splits at --- lines only, whatever the pieces the text arrives in, and counts lines from the top', async () => {
    const text = 'a: 1\nb: "--- not a marker"\n---\nc: 2\n----\n--- # a comment\nd: |\n  ---\n';
    for (const size of [1, 3, 7, 1000]) {
      const { docs, several } = await split(text, size);
      expect(docs.map((d) => d.text)).toEqual(['a: 1\nb: "--- not a marker"\n', '---\nc: 2\n----\n', '--- # a comment\nd: |\n  ---\n']);
      expect(docs.map((d) => [d.index, d.firstLine])).toEqual([[1, 1], [2, 3], [3, 6]]);
      expect(several).toEqual([true, true, true]);
    }
  });

  it('takes a leading --- and comments before it as no document, a lone document as not several, and a BOM away', async () => {
    const { docs, several } = await split('\uFEFF# licence\n\n---\r\nkind: Pod\r\n');
    expect(docs.map((d) => [d.index, d.firstLine, d.text])).toEqual([[1, 3, '---\r\nkind: Pod\r\n']]);
    expect(several).toEqual([false]);
  });

  it('ends a document at a --- with nothing after it on the last line', async () => {
    const { docs } = await split('a: 1\n---');
    expect(docs.map((d) => d.text)).toEqual(['a: 1\n', '---']);
  });

  it('stops at a document longer than it may be, keeping its head, and reads no further', async () => {
    let read = 0;
    async function* endless(): AsyncIterable<string> {
      yield 'kind: ConfigMap\nmetadata:\n  name: big\ndata:\n';
      for (;;) {
        read++;
        yield '  k: vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\n';
      }
    }
    const err = await splitYamlDocuments(endless(), { maxLength: () => 10_000 }, () => {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DocumentTooLong);
    expect((err as DocumentTooLong).document.head).toContain('name: big');
    expect(read).toBeLessThan(200);
  });

  it('keeps a listing whatever its length', async () => {
    const items = Array.from({ length: 100 }, (_, i) => `- {kind: Pod, metadata: {name: p${i}}}`).join('\n');
    const { docs } = await split(`kind: PodList\nitems:\n${items}\n`, 50, 500);
    expect(docs).toHaveLength(1);
    expect(docs[0]!.text).toContain('p99');
  });
});

describe('readManifests', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });
  function file(name: string, text: string): string {
    dir ??= mkdtempSync(join(tmpdir(), 'cli-files-'));
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  }
  const caught = (p: Promise<unknown>) => p.then(() => expect.fail('expected a refusal'), (e: unknown) => e as CliError);

  it('names each document of a file of several, and each item of a listing, without the items\' server fields', async () => {
    const path = file('m.yaml', 'kind: Pod\nmetadata: {name: a}\n---\nkind: PodList\nitems:\n- kind: Pod\n  metadata: {name: b, resourceVersion: "7", uid: x}\n  status: {phase: Running}\n');
    const objects = await readManifests([path]);
    expect(objects.map((o) => [o.source, o.kind, o.name])).toEqual([[`${path} (document 1)`, 'Pod', 'a'], [`${path} (document 2) item 0`, 'Pod', 'b']]);
    expect(JSON.parse(objects[1]!.json)).toEqual({ kind: 'Pod', metadata: { name: 'b' } });
  });

  it('reads a JSON listing as JSON, as `get -o json` prints it', async () => {
    const path = file('pods.json', JSON.stringify({ kind: 'PodList', apiVersion: 'flotilla/v1', metadata: { resourceVersion: '9' }, items: [{ kind: 'Pod', metadata: { name: 'a', resourceVersion: '3' } }] }, null, 2));
    const objects = await readManifests([path]);
    expect(objects.map((o) => o.source)).toEqual([`${path} item 0`]);
    expect(JSON.parse(objects[0]!.json)).toEqual({ kind: 'Pod', metadata: { name: 'a' } });
  });

  it('reads a JSON listing over 4 MiB as kubectl prints it (keys sorted: apiVersion, items, then kind)', async () => {
    const items = Array.from({ length: 2_000 }, (_, i) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `c${i}`, resourceVersion: '5' }, data: { v: 'x'.repeat(2_500) } }));
    const path = file('kubectl.json', JSON.stringify({ apiVersion: 'v1', items, kind: 'List', metadata: { resourceVersion: '' } }, null, 4));
    const objects = await readManifests([path]);
    expect(objects).toHaveLength(2_000);
    expect(JSON.parse(objects[1_999]!.json)).toMatchObject({ kind: 'ConfigMap', metadata: { name: 'c1999' } });
  });

  it('names the line of a syntax error in a later document from the top of the file', async () => {
    const path = file('bad.yaml', 'kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata:\n  name: b\n spec: [\n');
    const err = await caught(readManifests([path]));
    expect(err.message).toContain(`${path} (document 2)`);
    expect(err.message).toContain('line 7, column 1');
  });

  it('refuses an object over the limit, naming the file, document and object', async () => {
    const path = file('big.yaml', `kind: Pod\nmetadata: {name: a}\n---\nkind: ConfigMap\nmetadata:\n  name: huge\ndata:\n  a: ${'x'.repeat(MAX_OBJECT_BYTES)}\n`);
    const err = await caught(readManifests([path]));
    expect(err.message).toMatch(new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(document 2\\): configmap/huge is 3\\.0 MiB as JSON, over the 3\\.0 MiB`));
  });
});

describe('packBatches', () => {
  const object = (name: string, bytes: number): ManifestObject => ({ source: name, json: '', bytes, name });

  it('fills each request up to its capacity, in order; an object alone is never split', () => {
    const batches = packBatches([object('a', 40), object('b', 40), object('c', 40), object('d', 150)], 100);
    expect(batches.map((b) => b.map((o) => o.name))).toEqual([['a', 'b'], ['c'], ['d']]);
  });
});
