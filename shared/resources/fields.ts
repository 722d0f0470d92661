import type * as z from 'zod';

/** A validation problem at one field of a manifest or message, named by its path. */
export interface FieldError {
  /** Dotted path with indices, e.g. `spec.template.spec.containers[0].image`. */
  path: string;
  message: string;
}

export function formatFieldErrors(errors: FieldError[]): string {
  return errors.map((e) => `${e.path}: ${e.message}`).join('; ');
}

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

export function fieldErrorsFromZod(error: z.ZodError, prefix = ''): FieldError[] {
  return error.issues.map((issue) => {
    const path = formatPath(issue.path);
    return { path: prefix && path ? `${prefix}.${path}` : prefix || path || '(root)', message: issue.message };
  });
}

/**
 * The fields that validation dropped: present in the input, absent from the parsed value.
 * docs/ARCHITECTURE.md, 'Rules of the house': a field that Flotilla does not support is reported back as a warning,
 * never silently dropped.
 */
export function droppedFields(input: unknown, parsed: unknown, path: PropertyKey[] = []): string[] {
  if (Array.isArray(input) && Array.isArray(parsed)) {
    return input.flatMap((item, i) => droppedFields(item, parsed[i], [...path, i]));
  }
  if (isPlainObject(input) && isPlainObject(parsed)) {
    const out: string[] = [];
    for (const key of Object.keys(input)) {
      if (!(key in parsed)) {
        if (input[key] !== undefined && input[key] !== null) out.push(formatPath([...path, key]));
      } else if (!isFreeForm(path, key)) {
        out.push(...droppedFields(input[key], parsed[key], [...path, key]));
      }
    }
    return out;
  }
  return [];
}

// Maps whose keys are user data (labels, annotations, selectors, resource lists) never drop keys.
const FREE_FORM = new Set(['labels', 'annotations', 'matchLabels', 'nodeSelector', 'limits', 'requests', 'data', 'stringData', 'capacity', 'allocatable']);
function isFreeForm(_path: PropertyKey[], key: string): boolean {
  return FREE_FORM.has(key);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
