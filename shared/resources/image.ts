/**
 * Docker's grammar of an image reference (the distribution project's reference/regexp.go, with
 * its normalisation of Docker Hub names):
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [domain "/"] path-component ["/" path-component]*
 *   domain     := host [":" port]     (a host may use upper case; a path may not)
 *   path-component := [a-z0-9]+ (separator [a-z0-9]+)*   separator := [_.] | "__" | "-"+
 *   tag        := [\w][\w.-]{0,127}
 *   digest     := algorithm ":" hex{32,}
 *
 * One grammar for both sides: the hub refuses a manifest whose image is outside it at apply
 * (validateImageReference), and the agent checks a pod's image itself before the engine sees it
 * (imageReferenceProblem), reporting InvalidImageName as the kubelet does, whoever sent the spec.
 */

/** Name, tag and the longest digest Docker knows (sha512) with room to spare: longer text is not tried against the grammar. */
const REFERENCE_MAX_LENGTH = 512;

/** The problems of an image reference (empty = valid), in words a user can act on. */
export function validateImageReference(image: string): string[] {
  if (image.trim() !== image) return ['must not have leading or trailing whitespace'];
  if (image.length > REFERENCE_MAX_LENGTH) return [`must be no more than ${REFERENCE_MAX_LENGTH} characters`];
  const problem = imageReferenceProblem(image);
  if (problem === undefined) return [];
  if (problem.endsWith(`must not be more than ${NAME_MAX_LENGTH} characters`)) return [`repository name must not be more than ${NAME_MAX_LENGTH} characters`];
  if (problem === 'invalid checksum digest length') return [`invalid checksum digest length in '${image}': a sha256 digest has 64 hexadecimal digits`];
  const hint = problem.endsWith('must be lowercase') ? ' (the repository must be lower case)' : '';
  return [`invalid reference format '${image}'${hint}: an image is [host[:port]/]repository[:tag][@digest], the repository of lower case letters, digits and the separators '.', '_', '__' and '-'`];
}

// reference := name [ ":" tag ] [ "@" digest ]
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const PORT = /^[0-9]+$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
/** Docker's NameTotalLengthMax: the name (domain and path) may have at most 255 characters. */
export const NAME_MAX_LENGTH = 255;

/**
 * What is wrong with an image reference, in the engine's words (`invalid reference format…`),
 * or undefined when the engine would accept it.
 */
export function imageReferenceProblem(ref: string): string | undefined {
  const invalid = 'invalid reference format';
  if (ref === '' || ref !== ref.trim()) return invalid;
  const at = ref.indexOf('@');
  const beforeDigest = at < 0 ? ref : ref.slice(0, at);
  if (at >= 0) {
    const digest = ref.slice(at + 1);
    if (!DIGEST.test(digest)) return invalid;
    if (digest.startsWith('sha256:') && digest.length !== 'sha256:'.length + 64) return 'invalid checksum digest length';
  }
  // A tag is after the last colon that follows the last slash (a colon before it is a port).
  const lastSlash = beforeDigest.lastIndexOf('/');
  const colon = beforeDigest.indexOf(':', lastSlash + 1);
  const name = colon < 0 ? beforeDigest : beforeDigest.slice(0, colon);
  if (colon >= 0 && !TAG.test(beforeDigest.slice(colon + 1))) return invalid;
  if (name.length > NAME_MAX_LENGTH) return `${invalid}: repository name must not be more than ${NAME_MAX_LENGTH} characters`;
  const components = name.split('/');
  // The engine's normalisation: the first component names a registry when it has a dot, a
  // port or an upper-case letter, or is localhost; otherwise the name is on Docker Hub.
  const first = components[0]!;
  const hasDomain = components.length > 1 && (/[.:]/.test(first) || first === 'localhost' || first !== first.toLowerCase());
  const path = hasDomain ? components.slice(1) : components;
  if (hasDomain && !validDomain(first)) return invalid;
  if (path.some((c) => c !== c.toLowerCase()) && path.every((c) => PATH_COMPONENT.test(c.toLowerCase()))) return `${invalid}: repository name must be lowercase`;
  if (!path.every((c) => PATH_COMPONENT.test(c))) return invalid;
  return undefined;
}

function validDomain(domain: string): boolean {
  const colon = domain.lastIndexOf(':');
  const host = colon < 0 ? domain : domain.slice(0, colon);
  if (colon >= 0 && !PORT.test(domain.slice(colon + 1))) return false;
  // An IPv6 literal in brackets, as the grammar allows.
  if (host.startsWith('[') && host.endsWith(']')) return /^[0-9a-fA-F:.]+$/.test(host.slice(1, -1));
  return host.split('.').every((c) => DOMAIN_COMPONENT.test(c));
}
