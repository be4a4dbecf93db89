// The case suite against the benchmark's baseline (bench/baseline.ts) on examples/policy.yaml,
// the policy it is raced on: a ratio means something only if both answer the same. The baseline
// covers the features that policy uses; SPEC's other cases are check()'s alone.

import { baselinePipeline } from '../../bench/baseline.js'
import { answerOf } from './answer.js'
import { ENVOY_CASES } from './envoy.cases.js'
import { runCases } from './suite.js'

runCases((policy) => {
  const baseline = baselinePipeline(policy.text, policy.env)
  return { decide: (request) => answerOf(baseline(request.bytes)) }
}, ENVOY_CASES)
