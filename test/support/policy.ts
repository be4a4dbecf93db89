import { type CompiledPolicy, compilePolicy } from '../../src/policy/compile.js'
import { parsePolicy } from '../../src/policy/load.js'

/** Compiles policy YAML given inline; `env` supplies secrets. */
export function policyFrom(yaml: string, env: NodeJS.ProcessEnv = {}): CompiledPolicy {
  return compilePolicy(parsePolicy(yaml, 'test.yaml', env))
}

/** A header set as the decoder hands it over. */
export function headers(entries: Record<string, string>): Map<string, string> {
  return new Map(Object.entries(entries))
}
