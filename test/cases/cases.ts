// Every case of the suite, by policy.

import { ENVOY_CASES } from './envoy.cases.js'
import { SPEC_CASES } from './spec.cases.js'
import type { CaseGroup } from './suite.js'

export const CASES: readonly CaseGroup[] = [...SPEC_CASES, ...ENVOY_CASES]
