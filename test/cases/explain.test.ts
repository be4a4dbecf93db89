// The case suite against `hostguard explain`, called in process (the command around it is in
// test/integration/commands.test.ts): what it reports must be what the server answers.

import { explain } from '../../src/commands/explain.js'
import type { Reason } from '../../src/decision/types.js'
import { CASES } from './cases.js'
import { runCases } from './suite.js'

runCases(
  (policy) => ({
    async decide(request) {
      const e = await explain(policy.file, request.bytes, { syncWaitMs: 0 }, policy.env)
      if ((e.answer === 'allow') !== (e.status === null))
        throw new Error(`answer ${e.answer} with status ${e.status}`)
      if (e.rule === null) throw new Error('explain names no rule that decided')
      return {
        decision: e.decision,
        reason: e.reason as Reason,
        site: e.site,
        mode: e.mode as 'enforce' | 'dry_run',
        client: e.client ?? undefined,
        status: e.status ?? undefined,
        set: e.set.map((h) => `${h.name}: ${h.value}`),
        remove: [...e.remove].sort(),
      }
    },
  }),
  CASES,
)
