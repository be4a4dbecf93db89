// Through Envoy on envoy/edge.yaml with a policy that lacks a site the file names (blog), then
// a reload that adds it: the answers Envoy gives change without a restart of either.

import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { skipWithoutEnvoy } from '../support/envoy.js'
import { ENVOY } from '../support/envoy-bin.js'
import { type Stack, startStack } from '../support/stack.js'
import { http1 } from '../support/upstream.js'
import { until } from '../support/wait.js'

const WITHOUT_BLOG = `version: 1
allowedHosts: [www.example.com]
sites:
  admin:
    clientCidrs: { allow: [127.0.0.2] }
`
const WITH_BLOG = `${WITHOUT_BLOG}  blog:
    allowedHosts: [blog.example.com]
`

skipWithoutEnvoy('the reload tests through envoy/edge.yaml')

describe.skipIf(ENVOY === undefined)(
  'through Envoy, a policy without a site and its reload',
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-e2e-reload-'))
    const policy = join(dir, 'policy.yaml')
    let stack: Stack
    let n = 0
    const blog = () => {
      const path = `/?n=${++n}`
      return { path, reply: http1(stack.port, { host: 'blog.example.com', path }) }
    }

    beforeAll(async () => {
      writeFileSync(policy, WITHOUT_BLOG)
      stack = await startStack('edge.yaml', 'edge', policy)
    })

    afterAll(async () => {
      await stack?.stop()
      rmSync(dir, { recursive: true, force: true })
    })

    it('denies a route whose site the policy does not have (unknown_site)', async () => {
      const { path, reply } = blog()
      expect((await reply).status).toBe(403)
      expect(stack.upstream.requestsTo(path)).toEqual([])
      expect(await stack.envoy.logOf(path)).toMatchObject({
        decision: 'deny',
        reason: 'unknown_site',
      })
    })

    it('allows it once a reload of the policy file adds the site', async () => {
      writeFileSync(`${policy}.next`, WITH_BLOG)
      renameSync(`${policy}.next`, policy)
      let last = { path: '', status: 0 }
      await until(
        10_000,
        async () => {
          const { path, reply } = blog()
          last = { path, status: (await reply).status }
          return last.status !== 403
        },
        'the reload reaching the answers',
      )
      expect(last.status).toBe(200)
      expect(stack.upstream.requestsTo(last.path)).toHaveLength(1)
      expect(await stack.envoy.logOf(last.path)).toMatchObject({
        decision: 'allow',
        reason: 'host_allowed',
        site: 'blog',
      })
    })
  },
)
