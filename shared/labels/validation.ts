/**
 * Kubernetes' rules for object names, label keys and label values.
 *
 * These follow k8s.io/apimachinery/pkg/util/validation (IsDNS1123Label, IsDNS1123Subdomain,
 * IsQualifiedName, IsValidLabelValue) closely, including the wording of the messages, so that a
 * manifest rejected by Flotilla is rejected for the same reason, in the same words, as it would be
 * by a Kubernetes API server. Every function returns a list of problems (empty = valid) rather than
 * throwing: callers such as schema refinements want to report all problems at once.
 */

export const DNS1123_LABEL_MAX_LENGTH = 63;
export const DNS1123_SUBDOMAIN_MAX_LENGTH = 253;
export const QUALIFIED_NAME_MAX_LENGTH = 63;
export const LABEL_VALUE_MAX_LENGTH = 63;

const dns1123LabelFmt = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const dns1123SubdomainFmt = `${dns1123LabelFmt}(\\.${dns1123LabelFmt})*`;
const qualifiedNameFmt = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]';
const labelValueFmt = `(${qualifiedNameFmt})?`;

const dns1123LabelRegexp = new RegExp(`^${dns1123LabelFmt}$`);
const dns1123SubdomainRegexp = new RegExp(`^${dns1123SubdomainFmt}$`);
const qualifiedNameRegexp = new RegExp(`^${qualifiedNameFmt}$`);
const labelValueRegexp = new RegExp(`^${labelValueFmt}$`);

const dns1123LabelErrMsg =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const dns1123SubdomainErrMsg =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const qualifiedNameErrMsg =
  "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const labelValueErrMsg =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/** Kubernetes' MaxLenError. */
export function maxLenError(length: number): string {
  return `must be no more than ${length} characters`;
}

/** Kubernetes' EmptyError. */
export function emptyError(): string {
  return 'must be non-empty';
}

/**
 * Kubernetes' RegexError: the rule in words, examples, and the regular expression itself, so a
 * user can see exactly what is accepted.
 */
function regexError(msg: string, fmt: string, ...examples: string[]): string {
  if (examples.length === 0) return `${msg} (regex used for validation is '${fmt}')`;
  const eg = examples.map((e) => `'${e}'`).join(' or ');
  return `${msg} (e.g. ${eg}, regex used for validation is '${fmt}')`;
}

/**
 * A DNS-1123 label (RFC 1123 hostname part): what Kubernetes requires of namespace names,
 * container names and most other names that may end up in a hostname or DNS record.
 */
export function validateDns1123Label(value: string): string[] {
  const errs: string[] = [];
  if (value.length > DNS1123_LABEL_MAX_LENGTH) errs.push(maxLenError(DNS1123_LABEL_MAX_LENGTH));
  if (!dns1123LabelRegexp.test(value)) {
    // Kubernetes singles out the common mistake of using a subdomain where a label is required:
    // the length was already checked, so a valid subdomain can only have failed on its dots.
    if (dns1123SubdomainRegexp.test(value)) errs.push('must not contain dots');
    else errs.push(regexError(dns1123LabelErrMsg, dns1123LabelFmt, 'my-name', '123-abc'));
  }
  return errs;
}

/**
 * A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters in all. Kubernetes
 * requires this of most object names (pods, daemon sets, nodes) and of label key prefixes. Like
 * Kubernetes, the individual labels are not length-checked here, only the whole.
 */
export function validateDns1123Subdomain(value: string): string[] {
  const errs: string[] = [];
  if (value.length > DNS1123_SUBDOMAIN_MAX_LENGTH) errs.push(maxLenError(DNS1123_SUBDOMAIN_MAX_LENGTH));
  if (!dns1123SubdomainRegexp.test(value)) errs.push(regexError(dns1123SubdomainErrMsg, dns1123SubdomainFmt, 'example.com'));
  return errs;
}

/**
 * A qualified name, the form of a label or annotation key: an optional DNS-1123 subdomain prefix
 * and '/', then a name part of at most 63 characters. The name part may use upper case and '_',
 * the prefix may not.
 */
export function validateQualifiedName(value: string): string[] {
  const errs: string[] = [];
  const parts = value.split('/');
  let name: string;
  if (parts.length === 1) {
    name = parts[0] ?? '';
  } else if (parts.length === 2) {
    const prefix = parts[0] ?? '';
    name = parts[1] ?? '';
    if (prefix.length === 0) errs.push(`prefix part ${emptyError()}`);
    else for (const msg of validateDns1123Subdomain(prefix)) errs.push(`prefix part ${msg}`);
  } else {
    // More than one '/': Kubernetes reports the whole shape rather than guessing which part is wrong.
    return [
      `a qualified name ${regexError(qualifiedNameErrMsg, qualifiedNameFmt, 'MyName', 'my.name', '123-abc')}` +
        " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    ];
  }

  if (name.length === 0) errs.push(`name part ${emptyError()}`);
  else if (name.length > QUALIFIED_NAME_MAX_LENGTH) errs.push(`name part ${maxLenError(QUALIFIED_NAME_MAX_LENGTH)}`);
  // As in Kubernetes, an empty name part also fails the pattern and gets both messages.
  if (!qualifiedNameRegexp.test(name)) errs.push(`name part ${regexError(qualifiedNameErrMsg, qualifiedNameFmt, 'MyName', 'my.name', '123-abc')}`);
  return errs;
}

/** A label value: empty, or up to 63 characters of the qualified-name alphabet. */
export function validateLabelValue(value: string): string[] {
  const errs: string[] = [];
  if (value.length > LABEL_VALUE_MAX_LENGTH) errs.push(maxLenError(LABEL_VALUE_MAX_LENGTH));
  if (!labelValueRegexp.test(value)) errs.push(regexError(labelValueErrMsg, labelValueFmt, 'MyValue', 'my_value', '12345'));
  return errs;
}

/** One problem with a label map, attributed to the label key it concerns. */
export interface LabelProblem {
  key: string;
  message: string;
}

/**
 * Checks every key and value of a label map, as Kubernetes' ValidateLabels does for
 * metadata.labels, and reports each problem against its key.
 */
export function validateLabels(labels: Record<string, string>): LabelProblem[] {
  const problems: LabelProblem[] = [];
  for (const [key, value] of Object.entries(labels)) {
    for (const msg of validateQualifiedName(key)) problems.push({ key, message: `invalid label key '${key}': ${msg}` });
    if (typeof value !== 'string') {
      // Label maps usually come from YAML, where `version: 2` yields a number, not a string.
      problems.push({ key, message: `invalid label value for '${key}': must be a string, not ${typeof value}` });
      continue;
    }
    for (const msg of validateLabelValue(value)) problems.push({ key, message: `invalid label value '${value}': ${msg}` });
  }
  return problems;
}

/** Kubernetes' TotalAnnotationSizeLimitB: the keys and values of an object's annotations together. */
export const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

/**
 * Kubernetes' ValidateAnnotations: every key a qualified name (checked in lower case, so upper
 * case passes as it does there), and keys plus values no more than 256 KiB in all.
 */
export function validateAnnotations(annotations: Record<string, string>): LabelProblem[] {
  const problems: LabelProblem[] = [];
  let total = 0;
  for (const [key, value] of Object.entries(annotations)) {
    for (const msg of validateQualifiedName(key.toLowerCase())) problems.push({ key, message: `invalid annotation key '${key}': ${msg}` });
    total += Buffer.byteLength(key) + (typeof value === 'string' ? Buffer.byteLength(value) : 0);
  }
  if (total > TOTAL_ANNOTATION_SIZE_LIMIT) problems.push({ key: '', message: `annotations must have at most ${TOTAL_ANNOTATION_SIZE_LIMIT} bytes in all (keys and values), not ${total}` });
  return problems;
}

const envVarNameFmt = '[-._a-zA-Z][-._a-zA-Z0-9]*';
const envVarNameRegexp = new RegExp(`^${envVarNameFmt}$`);

/**
 * Kubernetes' IsEnvVarName: letters, digits, '_', '-' and '.', not starting with a digit. A
 * name with '=' or a space would be cut or misread by the engine's `NAME=value` list.
 */
export function validateEnvVarName(value: string): string[] {
  if (envVarNameRegexp.test(value)) return [];
  return [regexError("a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit", envVarNameFmt, 'my.env-name', 'MY_ENV.NAME', 'MyEnvName1')];
}

const portNameFmt = '[-a-z0-9]+';
const portNameRegexp = /^[-a-z0-9]+$/;
const portNameOneLetter = /[a-z]/;

/** Kubernetes' IsValidPortName (an IANA_SVC_NAME): at most 15 of [-a-z0-9], a letter among them, no '--', no '-' at either end. */
export function validatePortName(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 15) errs.push(maxLenError(15));
  if (!portNameRegexp.test(value)) errs.push(regexError("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)", portNameFmt));
  if (!portNameOneLetter.test(value)) errs.push('must contain at least one letter (a-z)');
  if (value.includes('--')) errs.push("must not contain consecutive hyphens ('--')");
  if (value.startsWith('-') || value.endsWith('-')) errs.push("must not begin or end with a hyphen ('-')");
  return errs;
}
