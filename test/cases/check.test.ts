// The case suite against check(), the function the server, explain and the benchmarks call.

import { check } from '../../src/grpc-authz/check.js'
import { policyFile } from '../support/policy.js'
import { answerOf } from './answer.js'
import { CASES } from './cases.js'
import { runCases } from './suite.js'

runCases((policy) => {
  const compiled = policyFile(policy.file, policy.env)
  return { decide: (request) => answerOf(check(compiled, request.bytes).response) }
}, CASES)
