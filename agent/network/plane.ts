import type { ContainerRuntime, RuntimeContainer } from '../runtime/runtime.js';
import { NetExecutor } from './execute.js';
import { observeNetwork } from './observe.js';
import type { NetStep, ObservedNetwork } from './plan.js';
import type { PolicyPlane } from './policy/enforcer.js';
import { kernelPolicyPlane } from './policy/kernel.js';

/**
 * The device's network as the overlay sees it: what is there, and the one way to change it.
 * The agent's is the kernel's (ip, wg, nft and the engine's networks); the hollow devices of
 * bench/ put an in-memory one behind the same interface, as they do for the container engine.
 */
export interface NetPlane {
  observe(opts: { interface: string; node: string; runtime: ContainerRuntime; containers: readonly RuntimeContainer[] }): Promise<ObservedNetwork>;
  run(step: NetStep): Promise<void>;
  /** Where network policy is enforced (agent/network/policy/); a plane without one enforces none. */
  policy?: PolicyPlane;
}

/** The device's own network: observe.ts reads it, execute.ts changes it. */
export function kernelNetPlane(runtime: ContainerRuntime): NetPlane {
  const executor = new NetExecutor(runtime);
  return { observe: (opts) => observeNetwork(opts), run: (step) => executor.run(step), policy: kernelPolicyPlane() };
}
