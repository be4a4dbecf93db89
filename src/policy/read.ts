import { type CompiledPolicy, compilePolicy, DEFAULT_LIMITS, type Limits } from './compile.js'
import type { PolicyError } from './errors.js'
import { loadPolicyFile } from './load.js'

export interface ReadPolicy {
  readonly policy: CompiledPolicy
  /** Valid but risky settings, to print or log. */
  readonly warnings: readonly PolicyError[]
}

/** Reads, validates and compiles a policy file; throws PolicyLoadError listing every error. */
export function readPolicy(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  limits: Limits = DEFAULT_LIMITS,
): ReadPolicy {
  const spec = loadPolicyFile(file, env)
  return { policy: compilePolicy(spec, limits), warnings: spec.warnings }
}
