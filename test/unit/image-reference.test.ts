import { describe, expect, it } from 'vitest';
import { imageReferenceProblem } from '../../shared/resources/image.js';

describe('imageReferenceProblem: what the engine accepts', () => {
  it.each([
    'busybox',
    'busybox:1.36',
    'library/busybox:latest',
    'flotilla-test/busybox:1',
    'a__b/c.d-e---f:tag_1.2-x',
    'registry.example.com/team/app:v1',
    'localhost/app',
    'localhost:5000/app:1',
    '127.0.0.1:5000/app:1',
    '[::1]:5000/app',
    // The first component names a registry when it has an upper-case letter: registries are not case-sensitive.
    'Registry.Example/app:1',
    'Registry/app:1',
    `busybox@sha256:${'a'.repeat(64)}`,
    `busybox:1.36@sha256:${'0'.repeat(64)}`,
  ])('accepts %s', (ref) => {
    expect(imageReferenceProblem(ref)).toBeUndefined();
  });
});

describe('imageReferenceProblem: what the engine refuses', () => {
  it('says a repository with capitals must be lowercase, as the engine does', () => {
    expect(imageReferenceProblem('Redteam/BusyBox:1')).toBe('invalid reference format: repository name must be lowercase');
    expect(imageReferenceProblem('BusyBox')).toBe('invalid reference format: repository name must be lowercase');
  });

  it.each([
    '',
    ' busybox',
    'busybox ',
    'busybox:',
    'busybox:-tag',
    `busybox:${'t'.repeat(129)}`,
    'busy box',
    'busybox/',
    '/busybox',
    'bus//ybox',
    '-busybox',
    'busybox-',
    'busybox@sha256:abc',
    'busybox@sha256',
    'busybox@',
    'registry.example.com:port/app',
    'registry-.example.com/app',
    'app:1:2',
    'ünïcode/app',
  ])('refuses %j', (ref) => {
    expect(imageReferenceProblem(ref)).toMatch(/^invalid (reference format|checksum digest length)/);
  });

  it('refuses a name over 255 characters and a sha256 digest of the wrong length', () => {
    expect(imageReferenceProblem(`r/${'a'.repeat(260)}`)).toMatch(/must not be more than 255 characters/);
    expect(imageReferenceProblem(`busybox@sha256:${'a'.repeat(40)}`)).toBe('invalid checksum digest length');
  });
});
