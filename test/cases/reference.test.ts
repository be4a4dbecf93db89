// The case suite against the differential fuzzer's reference evaluator (fuzz/reference.ts), which
// reads the request as the official protos decode it: the suite checks the oracle the fuzzer
// trusts.

import { ReferenceEvaluator, specInput } from '../../fuzz/reference.js'
import type { Reason } from '../../src/decision/types.js'
import { CASES } from './cases.js'
import { runCases } from './suite.js'

runCases((policy) => {
  const reference = new ReferenceEvaluator(policy.text, policy.secret)
  return {
    decide(request) {
      const a = reference.evaluate(request.message && specInput(request.message))
      return { ...a, reason: a.reason as Reason, remove: [...a.remove].sort() }
    },
  }
}, CASES)
