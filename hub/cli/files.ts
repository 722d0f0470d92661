import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { ManifestSyntaxError, parseManifests, type ManifestDocument } from '../../shared/resources/manifest.js';
import { CliError } from './errors.js';

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/** Reads `-f FILE|DIR|-` into documents; a missing path or a syntax error is exit 1, naming it. */
export function readManifests(paths: string[], stdin: () => string): ManifestDocument[] {
  const docs: ManifestDocument[] = [];
  for (const path of paths) {
    if (path === '-') {
      docs.push(...parse(stdin(), '<stdin>'));
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
    for (const file of files) docs.push(...parse(readFileSync(file, 'utf8'), file));
  }
  if (docs.length === 0) throw new CliError('no objects passed to apply');
  return docs;
}

function parse(text: string, source: string): ManifestDocument[] {
  try {
    return parseManifests(text, source);
  } catch (err) {
    if (err instanceof ManifestSyntaxError) throw new CliError(`error parsing ${err.message}`);
    throw err;
  }
}
