import { describe, expect, it } from 'vitest';
import { dryRunOf, dryRunOfDeleteOptions, dryRunOfOptions } from '../../hub/api/dry-run.js';
import { HubError } from '../../hub/api/errors.js';

const query = (q: string) => new URLSearchParams(q);

function refusal(fn: () => unknown): HubError {
  try {
    fn();
  } catch (err) {
    return err as HubError;
  }
  return expect.fail('expected a refusal');
}

describe('dryRun', () => {
  it('is a dry run for All (Kubernetes) and true (the older CLIs\' apply), a real write when absent or false', () => {
    expect(dryRunOf(query('dryRun=All'))).toBe(true);
    expect(dryRunOf(query('dryRun=true'))).toBe(true);
    expect(dryRunOf(query('dryRun=All&dryRun=All'))).toBe(true);
    expect(dryRunOf(query(''))).toBe(false);
    expect(dryRunOf(query('dryRun=false'))).toBe(false);
  });

  it('refuses any other value, and a mix of dry and real, with a 400 naming the parameter', () => {
    for (const q of ['dryRun=all', 'dryRun=', 'dryRun', 'dryRun=Server', 'dryRun=All&dryRun=false']) {
      const err = refusal(() => dryRunOf(query(q)));
      expect(err.code, q).toBe('HUB_ERR_BAD_REQUEST');
      expect(err.message, q).toMatch(/^dryRun: /);
    }
  });

  it('reads DeleteOptions and an Eviction\'s deleteOptions, naming the field of a bad one', () => {
    expect(dryRunOfDeleteOptions(Buffer.from(''))).toBe(false);
    expect(dryRunOfDeleteOptions(Buffer.from('{"kind":"DeleteOptions","dryRun":["All"]}'))).toBe(true);
    expect(dryRunOfDeleteOptions(Buffer.from('{"propagationPolicy":"Background"}'))).toBe(false);
    expect(refusal(() => dryRunOfDeleteOptions(Buffer.from('{"dryRun":"All"}'))).message).toMatch(/^dryRun: must be a list/);
    expect(refusal(() => dryRunOfDeleteOptions(Buffer.from('nope'))).code).toBe('HUB_ERR_BAD_REQUEST');
    expect(dryRunOfOptions({ dryRun: ['All'] }, 'deleteOptions.dryRun')).toBe(true);
    expect(refusal(() => dryRunOfOptions({ dryRun: ['Yes'] }, 'deleteOptions.dryRun')).message).toMatch(/^deleteOptions\.dryRun: unsupported value "Yes"/);
  });
});
