/**
 * Image references as the Docker engine reads them (the distribution project's reference
 * grammar, with its normalisation of Docker Hub names). The agent checks a pod's image itself:
 * the engine refuses a malformed reference ("invalid reference format"), and the kubelet reports
 * such a container as InvalidImageName without ever asking the engine, whoever sent the spec.
 */

// reference := name [ ":" tag ] [ "@" digest ]
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const PORT = /^[0-9]+$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
/** The engine's limit on a repository name. */
const NAME_MAX_LENGTH = 255;

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
