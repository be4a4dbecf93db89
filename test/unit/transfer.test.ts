// The policy as the load worker posts it and the main thread takes it: the same answers to every
// request, the same ranges for `explain`, frozen.

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { check } from '../../src/grpc-authz/check.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { parsePolicy } from '../../src/policy/load.js'
import { packPolicy, unpackPolicy } from '../../src/policy/transfer.js'
import { FIXTURES, ROOT } from '../support/protos.js'

const text = readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8')
const spec = parsePolicy(text, 'examples/policy.yaml', {
  HEALTH_SECRET: 'x',
  HEALTHCHECK_SECRET: 'x',
})
const ranges = new Map([
  [
    'k8s:nodes',
    [{ ip: { family: 4 as const, value: 0x0a000c22 }, prefix: 32, origin: 'k8s:nodes → node a' }],
  ],
])
const direct = compilePolicy(spec, undefined, ranges)
const moved = await unpackPolicy(structuredClone(packPolicy(direct)))

describe('a policy passed from the load worker', () => {
  it.each(readdirSync(FIXTURES).filter((f) => f.endsWith('.bin')))(
    'answers %s byte for byte as the policy compiled in place',
    (fixture) => {
      const request = readFileSync(join(FIXTURES, fixture))
      const a = check(direct, request)
      const b = check(moved, request)
      expect(Buffer.from(b.response).equals(Buffer.from(a.response))).toBe(true)
      expect(b.decision.reason).toBe(a.decision.reason)
    },
  )

  it('keeps every range with its origin, the host patterns, and the Buffers as Buffers', async () => {
    const withSources = compilePolicy(
      parsePolicy(
        'version: 1\nallowedHosts: [a.example]\nallowedCidrNets: [k8s:nodes, 10.0.0.0/8, "2001:db8::/32"]\n',
        'p.yaml',
        {},
      ),
      undefined,
      ranges,
    )
    const back = await unpackPolicy(structuredClone(packPolicy(withSources)))
    expect(back.top.allowedCidrNets.ranges).toEqual(withSources.top.allowedCidrNets.ranges)
    expect(back.top.allowedCidrNets.ranges.map((r) => r.origin)).toEqual([
      undefined,
      undefined,
      'k8s:nodes → node a',
    ])
    for (const [name, site] of [['default', direct.top], ...direct.sites] as const) {
      const other = name === 'default' ? moved.top : moved.sites.get(name)
      expect(other?.allowedCidrNets.ranges).toEqual(site.allowedCidrNets.ranges)
      expect(other?.trustedProxies.ranges).toEqual(site.trustedProxies.ranges)
      expect(other?.allowedHosts).toEqual(site.allowedHosts)
      if (site.healthCheck) expect(Buffer.isBuffer(other?.healthCheck?.secret)).toBe(true)
    }
    // The HTTP front end's header tables, which authorize() reads from the moved policy.
    expect(moved.httpHeaderNames).toEqual(direct.httpHeaderNames)
    expect(moved.httpHeaderNames.size).toBe(4)
    expect(Object.isFrozen(moved)).toBe(true)
    expect(Object.isFrozen(moved.top.allowedCidrNets)).toBe(true)
  })
})
