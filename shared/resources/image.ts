/**
 * Docker's grammar of an image reference (the distribution project's reference/regexp.go):
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [domain "/"] path-component ["/" path-component]*
 *   domain     := host [":" port]     (a host may use upper case; a path may not)
 *   path-component := [a-z0-9]+ (separator [a-z0-9]+)*   separator := [_.] | "__" | "-"+
 *   tag        := [\w][\w.-]{0,127}
 *   digest     := algorithm ":" hex{32,}
 *
 * An engine refuses anything else when it pulls or creates the container, on the device, long
 * after the manifest was stored: the hub refuses it at apply instead.
 */

const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const domainName = `${domainComponent}(?:\\.${domainComponent})*`;
const ipv6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainAndPort = `(?:${domainName}|${ipv6})(?::[0-9]+)?`;
const pathComponent = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const name = `(?:${domainAndPort}/)?${pathComponent}(?:/${pathComponent})*`;
const tag = '[\\w][\\w.-]{0,127}';
const digest = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';

const referenceRegexp = new RegExp(`^(${name})(?::${tag})?(?:@${digest})?$`);

/** Docker's NameTotalLengthMax: the name (domain and path) may have at most 255 characters. */
export const IMAGE_NAME_MAX_LENGTH = 255;
/** Name, tag and the longest digest Docker knows (sha512) with room to spare: longer text is not tried against the grammar. */
const REFERENCE_MAX_LENGTH = 512;

/** The problems of an image reference (empty = valid), in words a user can act on. */
export function validateImageReference(image: string): string[] {
  if (image.trim() !== image) return ['must not have leading or trailing whitespace'];
  if (image.length > REFERENCE_MAX_LENGTH) return [`must be no more than ${REFERENCE_MAX_LENGTH} characters`];
  const match = referenceRegexp.exec(image);
  if (!match) {
    // The name without tag or digest; with a '/', its first component is the registry's host.
    const beforeDigest = image.split('@', 1)[0] ?? '';
    const tagAt = beforeDigest.lastIndexOf(':');
    const nameOnly = tagAt > beforeDigest.lastIndexOf('/') ? beforeDigest.slice(0, tagAt) : beforeDigest;
    const repository = nameOnly.includes('/') ? nameOnly.slice(nameOnly.indexOf('/') + 1) : nameOnly;
    const hint = /[A-Z]/.test(repository) ? ' (the repository must be lower case)' : '';
    return [`invalid reference format '${image}'${hint}: an image is [host[:port]/]repository[:tag][@digest], the repository of lower case letters, digits and the separators '.', '_', '__' and '-'`];
  }
  if ((match[1] ?? '').length > IMAGE_NAME_MAX_LENGTH) return [`repository name must not be more than ${IMAGE_NAME_MAX_LENGTH} characters`];
  return [];
}
