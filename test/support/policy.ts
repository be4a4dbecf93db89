import type { CompiledPolicy, HttpInput, RequestInput } from '../../src/decision/types.js'
import { parseIp } from '../../src/net/ip.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { loadPolicyFile, parsePolicy } from '../../src/policy/load.js'

/** Compiles policy YAML given inline; `env` supplies secrets. */
export function policyFrom(yaml: string, env: NodeJS.ProcessEnv = {}): CompiledPolicy {
  return compilePolicy(parsePolicy(yaml, 'test.yaml', env))
}

/** Reads and compiles a policy file, as serve does for a policy without dynamic sources. */
export function policyFile(file: string, env: NodeJS.ProcessEnv = {}): CompiledPolicy {
  return compilePolicy(loadPolicyFile(file, env))
}

/** What decode hands over for a request from `peer` (its address parsed as decode parses it). */
export function checkInput(
  peer: string,
  site: string | undefined,
  http: HttpInput | undefined,
): RequestInput {
  return { peer, peerIp: parseIp(peer), site, http }
}

/** A header set as the decoder hands it over. */
/** Header values as decode's HeaderValues gives them; bytes are the UTF-8 of the text. */
export class TestHeaders extends Map<string, string> {
  bytes(name: string): Uint8Array | undefined {
    const value = this.get(name)
    return value === undefined ? undefined : Buffer.from(value, 'utf8')
  }
}

export function headers(entries: Record<string, string>): TestHeaders {
  return new TestHeaders(Object.entries(entries))
}
