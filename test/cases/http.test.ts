// The case suite against the HTTP front end (http-authz/authorize.ts), in the envoy and nginx
// dialects: every case that an HTTP authorization request can carry (an HTTP part, a Host, a site
// other than `default`, which names the top level in the URL) must be decided as check() decides
// it. Each CheckRequest is turned into the request the proxy would send.

import { describe, expect, it } from 'vitest'
import type { Mode, Reason } from '../../src/decision/types.js'
import { authorize } from '../../src/http-authz/authorize.js'
import type { Dialect } from '../../src/http-authz/request.js'
import { policyFile } from '../support/policy.js'
import type { Message } from '../support/protos.js'
import type { Answer } from './answer.js'
import { CASES } from './cases.js'
import { type Case, type CaseGroup, runCases } from './suite.js'

interface Asked {
  readonly url: string
  readonly rawHeaders: string[]
}

/** The HTTP request `dialect`'s proxy sends for a CheckRequest; undefined when it cannot carry it. */
function asHttp(message: Message | undefined, dialect: Dialect): Asked | undefined {
  const attributes = message?.attributes
  const http = attributes?.request?.http
  if (http === undefined) return undefined
  const site: string | undefined = attributes.context_extensions?.site
  if (site === 'default') return undefined
  const headers: [string, string][] = Object.entries(http.headers ?? {})
  for (const h of http.header_map?.headers ?? [])
    headers.push([
      h.key,
      h.raw_value?.length ? Buffer.from(h.raw_value).toString('latin1') : (h.value ?? ''),
    ])
  const find = (name: string) => headers.find(([k]) => k === name)?.[1]
  const authority: string | undefined = http.host || find(':authority') || find('host')
  if (authority === undefined) return undefined
  const peer: string = attributes.source?.address?.socket_address?.address ?? ''
  const path: string = http.path ?? ''
  const rest = headers.filter(([k]) => !k.startsWith(':') && k !== 'host').flat()
  const url = `/${dialect}/${site ?? 'default'}`
  return dialect === 'envoy'
    ? { url: `${url}${path}`, rawHeaders: ['x-hostguard-peer', peer, 'host', authority, ...rest] }
    : {
        url,
        rawHeaders: [
          ...['x-hostguard-peer', peer, 'x-hostguard-authority', authority],
          ...['x-hostguard-path', path, ...rest],
        ],
      }
}

/** The cases `dialect` can carry; nginx's answers do not list headers (its configuration does). */
function casesFor(dialect: Dialect): CaseGroup[] {
  return CASES.map((group) => ({
    policy: group.policy,
    cases: group.cases.flatMap((c) => {
      if (asHttp(c.request.message, dialect) === undefined) return []
      const { set: _set, remove: _remove, ...rest } = c.want
      const carried: Case = dialect === 'nginx' ? { ...c, want: rest } : c
      return [carried]
    }),
  })).filter((g) => g.cases.length > 0)
}

function header(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1]
  return undefined
}

for (const dialect of ['envoy', 'nginx'] as const) {
  const groups = casesFor(dialect)
  describe(`${dialect} dialect`, () => {
    it('carries most of the suite', () => {
      const all = CASES.reduce((n, g) => n + g.cases.length, 0)
      const carried = groups.reduce((n, g) => n + g.cases.length, 0)
      expect(carried / all).toBeGreaterThan(0.75)
    })
    runCases((policy) => {
      const compiled = policyFile(policy.file, policy.env)
      return {
        decide(request) {
          const asked = asHttp(request.message, dialect)
          if (asked === undefined) throw new Error('a case the dialect cannot carry')
          const result = authorize(compiled, asked.url, asked.rawHeaders)
          if (result === undefined) throw new Error(`${asked.url}: no dialect`)
          const { answer } = result
          const get = (name: string) => header(answer.headers, name)
          const allowed = answer.status === 200
          const clientIpHeader = result.decision.site.clientIpHeader
          const client = get('x-hostguard-client')
          const set = clientIpHeader && get(clientIpHeader)
          const answered: Answer = {
            decision: get('x-hostguard-decision') as 'allow' | 'deny',
            reason: get('x-hostguard-reason') as Reason,
            site: get('x-hostguard-site') as string,
            mode: get('x-hostguard-mode') as Mode,
            client,
            status: allowed ? undefined : Number(get('x-hostguard-status') ?? answer.status),
            set: set ? [`${clientIpHeader}: ${set}`] : [],
            remove: (get('x-envoy-auth-headers-to-remove')?.split(',') ?? []).sort(),
          }
          return answered
        },
      }
    }, groups)
  })
}
