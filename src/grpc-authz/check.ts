// The gRPC front end's pipeline: CheckRequest bytes → decode → the decision core → encode →
// CheckResponse bytes. The gRPC handler, `explain` and the benchmarks all call this one function.

import { decideRequest, decideUnreadable } from '../decision/decide.js'
import type { CompiledPolicy, Decided, Decision, Trace } from '../decision/types.js'
import { decode } from './decode.js'
import { encode } from './encode.js'

export interface CheckResult extends Decided {
  /** CheckResponse bytes. */
  readonly response: Buffer
}

/** `trace`, when given, is filled in with how the decision was reached (for `explain`). */
export function check(policy: CompiledPolicy, request: Buffer, trace?: Trace): CheckResult {
  const input = decode(request, policy.headerNames)
  let decision: Decision
  if (input === undefined) {
    if (trace) trace.rule = 'the bytes are not a CheckRequest'
    decision = decideUnreadable(policy)
  } else {
    decision = decideRequest(policy, input, trace)
  }
  return { decision, response: encode(decision), input }
}
