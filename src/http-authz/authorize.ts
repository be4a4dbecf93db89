// The HTTP front end's pipeline: URL and headers → request.ts → the decision core → answer.ts.
// The HTTP authorization listener, `explain --dialect` and the benchmarks all call this one
// function.

import { decideRequest, decideUnreadable } from '../decision/decide.js'
import type { CompiledPolicy, Decided, Trace } from '../decision/types.js'
import { answer, type HttpAnswer } from './answer.js'
import {
  type Dialect,
  isMisconfigured,
  type Misconfigured,
  parseTarget,
  readRequest,
} from './request.js'

export interface AuthzResult extends Decided {
  readonly dialect: Dialect
  readonly answer: HttpAnswer
  /** Set when the proxy sent the request otherwise than its dialect says: answered 400. */
  readonly misconfigured: Misconfigured | undefined
}

/**
 * The decision and answer for one request; undefined when the URL names no dialect (answered
 * 404, not a decision). `trace`, when given, is filled in with how the decision was reached.
 */
export function authorize(
  policy: CompiledPolicy,
  url: string,
  rawHeaders: readonly string[],
  trace?: Trace,
): AuthzResult | undefined {
  const target = parseTarget(url)
  if (target === undefined) return undefined
  const read = readRequest(target, rawHeaders, policy.httpHeaderNames)
  if (isMisconfigured(read)) {
    if (trace) trace.rule = misconfiguration(target.dialect, read)
    const decision = decideUnreadable(policy)
    return {
      decision,
      input: undefined,
      dialect: target.dialect,
      answer: answer(decision, target.dialect),
      misconfigured: read,
    }
  }
  const decision = decideRequest(policy, read, trace)
  return {
    decision,
    input: read,
    dialect: target.dialect,
    answer: answer(decision, target.dialect),
    misconfigured: undefined,
  }
}

/** Why a request was not decided, for the log and `explain`. */
export function misconfiguration(dialect: Dialect, fault: Misconfigured): string {
  return fault.problem === 'missing'
    ? `the ${dialect} proxy sent no ${fault.header} header: its configuration must set it`
    : `the ${dialect} proxy sent ${fault.header} more than once: its configuration must set it, overwriting any a client sent`
}
