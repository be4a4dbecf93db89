// One request through the whole pipeline: decode → select site → resolve client → evaluate →
// encode. The gRPC handler, `explain` and the benchmarks all call this one function.

import { formatIp } from '../net/ip.js'
import type { CompiledPolicy } from '../policy/compile.js'
import { resolveClient } from './client.js'
import { decode } from './decode.js'
import { encode } from './encode.js'
import { decide, evaluate, selectSite } from './evaluate.js'
import type { CheckInput, Decision } from './types.js'

export interface CheckResult {
  readonly decision: Decision
  /** CheckResponse bytes. */
  readonly response: Buffer
  /** What was read from the request; undefined when it was not a CheckRequest. */
  readonly input: CheckInput | undefined
  /** The resolved client address as text, when known. */
  readonly client: string | undefined
}

const UNKNOWN_CLIENT = Object.freeze({ ip: undefined, peerTrusted: false })

export function check(policy: CompiledPolicy, request: Buffer): CheckResult {
  const input = decode(request, policy.headerNames)
  let decision: Decision
  if (input === undefined) {
    decision = decide(policy.top, UNKNOWN_CLIENT, 'invalid_request')
  } else {
    const site = selectSite(policy, input)
    if (site === undefined) {
      // An unknown site is answered with the top level's deny, dryRun and header rules.
      decision = decide(policy.top, resolveClient(policy.top, input), 'unknown_site')
    } else {
      const client = resolveClient(site, input)
      decision = decide(site, client, evaluate(site, input, client))
    }
  }
  const client = decision.client.ip && formatIp(decision.client.ip)
  return { decision, response: encode(decision, client), input, client }
}
