import { type CompiledPolicy, compilePolicy } from './compile.js'
import { loadPolicyFile } from './load.js'

/** Reads, validates and compiles a policy file; throws PolicyLoadError listing every error. */
export function readPolicy(file: string, env: NodeJS.ProcessEnv = process.env): CompiledPolicy {
  return compilePolicy(loadPolicyFile(file, env))
}
