// Through Envoy on envoy/edge.yaml when hostguard cannot answer: slow (stopped with SIGSTOP,
// so its socket accepts and nothing answers) and gone (killed). The shipped filter fails
// closed with 503, which no policy decision produces, and Envoy's stats say why.

import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { skipWithoutEnvoy } from '../support/envoy.js'
import { ENVOY } from '../support/envoy-bin.js'
import { ROOT } from '../support/protos.js'
import { kill, type Stack, startStack } from '../support/stack.js'
import { http1 } from '../support/upstream.js'
import { until } from '../support/wait.js'

const POLICY = join(ROOT, 'test', 'e2e', 'edge.policy.yaml')

skipWithoutEnvoy('the failure tests through envoy/edge.yaml')

describe.skipIf(ENVOY === undefined)('through Envoy when hostguard cannot answer', () => {
  let stack: Stack
  let n = 0
  const request = () => {
    const path = `/outage?n=${++n}`
    return { path, reply: http1(stack.port, { host: 'www.example.com', path }) }
  }
  const authzStats = () => stack.envoy.stats(/^(http\.edge\.ext_authz\.|cluster\.hostguard\.)/)
  const delta = (before: Map<string, number>, after: Map<string, number>, name: string) =>
    (after.get(name) ?? 0) - (before.get(name) ?? 0)

  beforeAll(async () => {
    stack = await startStack('edge.yaml', 'edge', POLICY, {
      env: { HEALTH_CHECK_HEADER_VALUE: 'unused' },
    })
  })

  afterAll(async () => {
    await stack?.stop()
  })

  /** The outage as the client and the access log see it: 503, empty, no decision logged. */
  async function expectOutage(path: string, reply: Promise<{ status: number; body: string }>) {
    const { status, body } = await reply
    expect(status).toBe(503)
    expect(body).toBe('')
    expect(stack.upstream.requestsTo(path)).toEqual([])
    // UAEX is also a deny's flag; what tells an outage from a deny is the missing metadata.
    expect(await stack.envoy.logOf(path)).toMatchObject({
      status: 503,
      flags: 'UAEX',
      decision: '-',
    })
  }

  it('answers 503 when hostguard is too slow (the 0.2s timeout), and counts an error', async () => {
    const [hostguard] = stack.hostguards
    if (!hostguard) throw new Error('no hostguard')
    const first = request()
    expect((await first.reply).status).toBe(200)
    const before = await authzStats()
    hostguard.child.kill('SIGSTOP')
    try {
      const slow = request()
      await expectOutage(slow.path, slow.reply)
    } finally {
      hostguard.child.kill('SIGCONT')
    }
    const after = await authzStats()
    expect(delta(before, after, 'http.edge.ext_authz.error')).toBe(1)
    expect(delta(before, after, 'http.edge.ext_authz.denied')).toBe(0)
    expect(delta(before, after, 'cluster.hostguard.upstream_rq_timeout')).toBe(1)
    // Answers again once it runs.
    await until(10_000, async () => (await request().reply).status === 200, 'answers again')
  })

  it('answers 503 when hostguard is gone, and counts an error, not a denial', async () => {
    const [hostguard] = stack.hostguards
    if (!hostguard) throw new Error('no hostguard')
    const before = await authzStats()
    await kill(hostguard.child)
    const gone = request()
    await expectOutage(gone.path, gone.reply)
    const after = await authzStats()
    expect(delta(before, after, 'http.edge.ext_authz.error')).toBe(1)
    expect(delta(before, after, 'http.edge.ext_authz.denied')).toBe(0)
    expect(delta(before, after, 'cluster.hostguard.upstream_cx_connect_fail')).toBeGreaterThan(0)
  })
})
