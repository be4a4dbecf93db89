// One request through the whole pipeline: decode → select site → resolve client → evaluate →
// encode. The gRPC handler, `explain` and the benchmarks all call this one function.

import { resolveClient } from './client.js'
import { decode } from './decode.js'
import { encode } from './encode.js'
import { decide, evaluate, selectSite } from './evaluate.js'
import type { CheckInput, CompiledPolicy, Decision, Trace } from './types.js'

export interface CheckResult {
  readonly decision: Decision
  /** CheckResponse bytes. */
  readonly response: Buffer
  /** What was read from the request; undefined when it was not a CheckRequest. */
  readonly input: CheckInput | undefined
}

const UNKNOWN_CLIENT = Object.freeze({ ip: undefined, peerTrusted: false, walkedFrom: 0 })

/** `trace`, when given, is filled in with how the decision was reached (for `explain`). */
export function check(policy: CompiledPolicy, request: Buffer, trace?: Trace): CheckResult {
  const input = decode(request, policy.headerNames)
  let decision: Decision
  if (input === undefined) {
    if (trace) trace.rule = 'the bytes are not a CheckRequest'
    decision = decide(policy.top, UNKNOWN_CLIENT, 'invalid_request')
  } else {
    const site = selectSite(policy, input)
    if (site === undefined) {
      if (trace) trace.rule = `no site is named ${JSON.stringify(input.site)}`
      // An unknown site is answered with the top level's deny, dryRun and header rules.
      decision = decide(policy.top, resolveClient(policy.top, input, trace), 'unknown_site')
    } else {
      const client = resolveClient(site, input, trace)
      decision = decide(site, client, evaluate(site, input, client, trace))
    }
  }
  return { decision, response: encode(decision), input }
}
