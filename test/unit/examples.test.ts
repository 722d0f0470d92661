import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseManifests } from '../../shared/resources/manifest.js';
import { validateManifest } from '../../shared/resources/validate.js';

// Every manifest shipped in examples/ must apply as it is: valid, and with nothing ignored.
const dir = join(import.meta.dirname, '..', '..', 'examples');
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));

describe('examples/', () => {
  it('has manifests', () => {
    expect(files.length).toBeGreaterThanOrEqual(4);
  });

  it.each(files)('%s is valid, with no warnings', (name) => {
    const file = join(dir, name);
    const docs = parseManifests(readFileSync(file, 'utf8'), file);
    expect(docs.length).toBeGreaterThan(0);
    for (const doc of docs) {
      const result = validateManifest(doc.value);
      expect(result.errors, doc.source).toEqual([]);
      expect(result.warnings, doc.source).toEqual([]);
    }
  });
});
