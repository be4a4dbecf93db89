// Through a real Envoy running envoy/sidecar.yaml as shipped (addresses filled in by
// envoy:render): one app, the policy's top level, the same fail-closed answer as the edge.

import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { skipWithoutEnvoy } from '../support/envoy.js'
import { ENVOY } from '../support/envoy-bin.js'
import { ROOT } from '../support/protos.js'
import { kill, type Stack, startStack } from '../support/stack.js'
import { http1 } from '../support/upstream.js'

const POLICY = join(ROOT, 'test', 'e2e', 'sidecar.policy.yaml')

skipWithoutEnvoy('the end-to-end tests through envoy/sidecar.yaml')

describe.skipIf(ENVOY === undefined)('through Envoy on envoy/sidecar.yaml', () => {
  let stack: Stack
  let n = 0
  const get = (host: string, headers: Record<string, string> = {}) => {
    const path = `/?n=${++n}`
    return { path, reply: http1(stack.port, { host, path, headers }) }
  }

  beforeAll(async () => {
    stack = await startStack('sidecar.yaml', 'inbound', POLICY)
  })

  afterAll(async () => {
    await stack?.stop()
  })

  it('lets the app host through with x-real-ip set and spoofed forwarding headers gone', async () => {
    const { path, reply } = get('app.example.com', {
      'x-forwarded-for': '10.9.9.9',
      'x-real-ip': '10.9.9.9',
      forwarded: 'for=10.9.9.9',
      x_forwarded_for: '10.9.9.9',
    })
    expect(await reply).toMatchObject({ status: 200, body: `app ${path}` })
    const [seen] = stack.upstream.requestsTo(path)
    expect(seen?.headers['x-real-ip']).toBe('127.0.0.1')
    for (const name of ['x-forwarded-for', 'forwarded', 'x_forwarded_for'])
      expect(seen?.headers[name], name).toBeUndefined()
    expect(await stack.envoy.logOf(path)).toMatchObject({
      decision: 'allow',
      reason: 'host_allowed',
      site: 'default',
      mode: 'enforce',
      client: '127.0.0.1',
    })
  })

  it('denies any other host with 403', async () => {
    const { path, reply } = get('other.example.com')
    expect(await reply).toMatchObject({ status: 403, body: 'Forbidden\n' })
    expect(stack.upstream.requestsTo(path)).toEqual([])
  })

  it('answers 503, not a deny, once hostguard is gone', async () => {
    for (const h of stack.hostguards) await kill(h.child)
    const { path, reply } = get('app.example.com')
    expect(await reply).toMatchObject({ status: 503, body: '' })
    expect(stack.upstream.requestsTo(path)).toEqual([])
    expect(await stack.envoy.logOf(path)).toMatchObject({ status: 503, decision: '-' })
  })
})
