import { type CompiledPolicy, compilePolicy } from './compile.js'
import type { PolicyError } from './errors.js'
import { loadPolicyFile } from './load.js'

export interface ReadPolicy {
  readonly policy: CompiledPolicy
  /** Valid but risky settings, to print or log. */
  readonly warnings: readonly PolicyError[]
}

/** Reads, validates and compiles a policy file; throws PolicyLoadError listing every error. */
export function readPolicy(file: string, env: NodeJS.ProcessEnv = process.env): ReadPolicy {
  const spec = loadPolicyFile(file, env)
  return { policy: compilePolicy(spec), warnings: spec.warnings }
}
