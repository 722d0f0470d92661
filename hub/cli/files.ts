import { createReadStream, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { DEFAULT_BODY_LIMIT } from '../api/body.js';
import { isListing, withoutServerFields } from '../api/server-fields.js';
import { depthMessage, jsonTooDeep } from '../../shared/resources/depth.js';
import { ManifestSyntaxError, parseManifests } from '../../shared/resources/manifest.js';
import { CliError } from './errors.js';
import { DocumentTooLong, splitYamlDocuments, type TextDocument } from './yaml-documents.js';

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/**
 * The most a single object may take as JSON: the hub's body limit (3 MiB, as Kubernetes'
 * apiserver), less room for the request's envelope. The CLI refuses an object over it itself,
 * naming the file and the object, rather than sending it to be refused.
 */
export const MAX_OBJECT_BYTES = DEFAULT_BODY_LIMIT - 4 * 1024;

/**
 * A YAML document's text past which it is refused without being parsed, or even read to its
 * end: parsing YAML costs tens of times the text's size in memory (a listing of 8 MiB took
 * 790 MB), and a document this long cannot make an object under MAX_OBJECT_BYTES but by being
 * mostly comments and indentation. A listing in YAML (`kind: List`, `PodList` …) has the same
 * bound, though its items are applied one by one: a larger one is applied as JSON.
 */
const MAX_DOCUMENT_TEXT = 4 * 1024 * 1024;

/** A listing as JSON (`get -o json`) is parsed whole too, for a few times its text. */
const MAX_JSON_LISTING_TEXT = 256 * 1024 * 1024;

/** One object of a manifest, serialized as it is sent to the hub. */
export interface ManifestObject {
  /** `file.yaml`, `file.yaml (document 2)`, `file.yaml (document 2) item 3`: for messages. */
  source: string;
  /** The object as JSON; parse it again where its fields are needed. */
  json: string;
  /** Size of `json` in UTF-8 bytes. */
  bytes: number;
  kind?: string;
  name?: string;
  namespace?: string;
}

/** Where the text of `-` comes from (stdin; a test may hand another stream). */
export type TextSource = () => AsyncIterable<string | Buffer>;

/**
 * Reads `-f FILE|DIR|-` into objects, one document at a time: a file is never parsed whole,
 * and an object over what the hub takes in one request is refused here, naming its file and
 * name, before anything is sent. A missing path or a syntax error is exit 1, naming it.
 */
export async function readManifests(paths: string[], stdin: TextSource = () => process.stdin): Promise<ManifestObject[]> {
  const objects: ManifestObject[] = [];
  for (const path of paths) {
    if (path === '-') {
      await readText(stdin(), '<stdin>', objects);
      continue;
    }
    let stat;
    try {
      stat = statSync(path);
    } catch {
      throw new CliError(`the path "${path}" does not exist`);
    }
    const files = stat.isDirectory()
      ? readdirSync(path)
          .filter((f) => MANIFEST_EXTENSIONS.has(extname(f)))
          .sort()
          .map((f) => join(path, f))
      : [path];
    if (stat.isDirectory() && files.length === 0) throw new CliError(`no manifests (.yaml, .yml, .json) in "${path}"`);
    for (const file of files) await readText(createReadStream(file), file, objects);
  }
  if (objects.length === 0) throw new CliError('no objects passed to apply');
  return objects;
}

/** Splits one file's text into documents as it streams in, and each document into objects. */
async function readText(chunks: AsyncIterable<string | Buffer>, file: string, into: ManifestObject[]): Promise<void> {
  try {
    await splitYamlDocuments(chunks, { maxLength: maxDocumentText }, (doc, several) => {
      const source = several ? `${file} (document ${doc.index})` : file;
      for (const { value, source: itemSource } of parseDocument(doc, source, file)) into.push(toObject(value, itemSource));
    });
  } catch (err) {
    if (err instanceof CliError) throw err;
    if (err instanceof DocumentTooLong) {
      const doc = err.document;
      const source = doc.index > 1 ? `${file} (document ${doc.index})` : file;
      if (listingKind(doc.head) === 'yaml') throw new CliError(`${source}: a listing of more than ${mebibytes(MAX_DOCUMENT_TEXT)} of YAML is too large to parse; apply it as JSON (get -o json), or in parts; nothing was sent`);
      if (listingKind(doc.head) === 'json') throw new CliError(`${source}: a listing of more than ${mebibytes(MAX_JSON_LISTING_TEXT)} is too large to parse; apply it in parts; nothing was sent`);
      throw tooLarge(source, describeHead(doc.head), doc.length, 'of YAML', 'more than ');
    }
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

/**
 * Parses one document (a JSON text as JSON: far cheaper than as YAML). A listing (what
 * `get -o yaml|json` prints: `kind: List`, `PodList` …) is applied item by item, each as if
 * written by hand: its items' resourceVersion and status are a snapshot, stale by the time
 * it is applied (see withoutServerFields).
 */
function parseDocument(doc: TextDocument, source: string, file: string): { value: unknown; source: string }[] {
  const text = doc.text!;
  let values: { value: unknown; source: string }[] | undefined;
  if (/^\s*[[{]/.test(text)) {
    // Depth is checked on the text, before any tree is built (JSON.parse would build it).
    if (jsonTooDeep(text)) throw new CliError(`${source}: ${depthMessage()}; nothing was sent`);
    try {
      values = [{ value: JSON.parse(text) as unknown, source }];
    } catch {
      // YAML's flow style also starts with a brace: parsed as YAML below.
    }
  }
  values ??= parseYaml(text, source, doc.firstLine, file);
  const out: { value: unknown; source: string }[] = [];
  for (const { value, source: from } of values) {
    if (value === null || value === undefined) continue;
    if (isListing(value)) value.items.forEach((item, i) => out.push({ value: withoutServerFields(item, { listItem: true }), source: `${from} item ${i}` }));
    else if (isPlainObject(value) && Array.isArray(value.items) && !('kind' in value)) value.items.forEach((item, i) => out.push({ value: withoutServerFields(item, { listItem: true }), source: `${from} item ${i}` }));
    // parseManifests has already flattened a YAML `kind: List`: its items are named `… item N`.
    else out.push({ value: from === source ? value : withoutServerFields(value, { listItem: true }), source: from });
  }
  return out;
}

function parseYaml(text: string, source: string, firstLine: number, file: string): { value: unknown; source: string }[] {
  try {
    return parseManifests(text, source);
  } catch (err) {
    if (!(err instanceof ManifestSyntaxError)) throw err;
    // The document was parsed alone: count its lines from the top of the file.
    const message = err.line === undefined ? err.message : err.message.replace(/\bline \d+, column (\d+)/, `line ${err.line + firstLine - 1}, column $1`);
    throw new CliError(`error parsing ${message.startsWith(file) ? message : `${file}: ${message}`}`);
  }
}

function toObject(value: unknown, source: string): ManifestObject {
  const json = JSON.stringify(value);
  const bytes = Buffer.byteLength(json);
  const meta = isPlainObject(value) && isPlainObject(value.metadata) ? value.metadata : {};
  const object: ManifestObject = { source, json, bytes };
  if (isPlainObject(value) && typeof value.kind === 'string') object.kind = value.kind;
  if (typeof meta.name === 'string') object.name = meta.name;
  if (typeof meta.namespace === 'string') object.namespace = meta.namespace;
  if (bytes > MAX_OBJECT_BYTES) throw tooLarge(source, object.kind && object.name ? `${object.kind.toLowerCase()}/${object.name}` : undefined, bytes, 'as JSON');
  return object;
}

function tooLarge(source: string, what: string | undefined, bytes: number, measure: string, atLeast = ''): CliError {
  return new CliError(`${source}: ${what ? `${what} is` : 'the object is'} ${atLeast}${mebibytes(bytes)} ${measure}, over the ${mebibytes(MAX_OBJECT_BYTES)} the hub takes for one object; nothing was sent`);
}

/** Whether a document's head is a listing's, in YAML (`kind: PodList`) or JSON (`"kind": "PodList"`, as `get -o json` prints it first). */
function listingKind(head: string): 'yaml' | 'json' | undefined {
  if (/^\s*\{\s*"kind"\s*:\s*"\w*List"/.test(head)) return 'json';
  // kubectl's -o json sorts a list's keys: apiVersion, then items (kind comes after the items).
  if (/^\s*\{\s*(?:"apiVersion"\s*:\s*"[^"]*"\s*,\s*)?"items"\s*:\s*\[/.test(head)) return 'json';
  // kubectl prints a list's keys in order: `items:` comes before `kind: List`.
  if (/^kind:[ \t]*["']?\w*List["']?[ \t]*(#.*)?$/m.test(head) || /^items:[ \t]*$/m.test(head)) return 'yaml';
  return undefined;
}

/** How long a document may grow before it is refused unread (see MAX_DOCUMENT_TEXT). */
function maxDocumentText(head: string): number {
  return listingKind(head) === 'json' ? MAX_JSON_LISTING_TEXT : MAX_DOCUMENT_TEXT;
}

function mebibytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** `kind/name` from the first lines of a document too large to parse, when they say it plainly. */
function describeHead(head: string): string | undefined {
  const kind = /^kind:[ \t]*["']?([A-Za-z0-9]+)/m.exec(head)?.[1];
  const metadata = /^metadata:[ \t]*\r?\n((?:[ \t]+.*\r?\n?)*)/m.exec(head)?.[1];
  const name = metadata ? /^[ \t]+name:[ \t]*["']?([-.a-z0-9]+)/m.exec(metadata)?.[1] : undefined;
  return kind && name ? `${kind.toLowerCase()}/${name}` : undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
