/** A pod spec the scheduler cannot act on; `field` is its path from the pod, as the API names fields. */
export class PodSpecError extends Error {
  override readonly name = 'PodSpecError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}
