// One request's decision, whatever API it came by: select site → resolve client → evaluate. A
// front end turns its wire input into a RequestInput, calls this, and turns the Decision into
// its answer.

import { resolveClient } from './client.js'
import { decide, evaluate, selectSite } from './evaluate.js'
import type { CompiledPolicy, Decision, RequestInput, Trace } from './types.js'

const UNKNOWN_CLIENT = Object.freeze({ ip: undefined, peerTrusted: false, walkedFrom: 0 })

/** `trace`, when given, is filled in with how the decision was reached (for `explain`). */
export function decideRequest(
  policy: CompiledPolicy,
  input: RequestInput,
  trace?: Trace,
): Decision {
  const site = selectSite(policy, input)
  if (site === undefined) {
    if (trace) trace.rule = `no site is named ${JSON.stringify(input.site)}`
    // An unknown site is answered with the top level's deny, dryRun and header rules.
    return decide(policy.top, resolveClient(policy.top, input, trace), 'unknown_site')
  }
  const client = resolveClient(site, input, trace)
  return decide(site, client, evaluate(site, input, client, trace))
}

/** The decision for a request its front end could not read: the top level's, client unknown. */
export function decideUnreadable(policy: CompiledPolicy): Decision {
  return decide(policy.top, UNKNOWN_CLIENT, 'invalid_request')
}
