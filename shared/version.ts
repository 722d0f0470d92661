/** The version of hub and agent; both report it (node info, `flotilla version`). */
export const FLOTILLA_VERSION = '0.1.0';
