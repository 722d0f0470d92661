import * as z from 'zod';
import { validateLabels } from '../labels/validation.js';

/** A map of labels, each key and value checked by Kubernetes' rules. */
export const labelMap = z.record(z.string(), z.string()).superRefine((labels, ctx) => {
  for (const problem of validateLabels(labels)) {
    ctx.addIssue({ code: 'custom', path: [problem.key], message: problem.message });
  }
});
