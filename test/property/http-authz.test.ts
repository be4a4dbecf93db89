// Properties of the HTTP front end under arbitrary headers: a request that lacks its dialect's
// peer or authority header, or carries one twice, is never allowed, whatever else it carries and
// however permissive the policy; and no header soup makes authorize() throw.

import { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { authorize } from '../../src/http-authz/authorize.js'
import { DIALECTS, type Dialect } from '../../src/http-authz/request.js'
import { headersNodeReads } from '../../src/server/authz-http.js'
import { policyFrom } from '../support/policy.js'
import { prop } from '../support/prop.js'

// As permissive as a policy gets, and in dry run: nothing but the front end can deny.
const POLICY = policyFrom(
  'version: 1\nallowedHosts: ["*"]\ntrustedProxies: ["0.0.0.0/0"]\ntrustedHeaders: [x-forwarded-for, x-forwarded-host]\ndryRun: true\n',
)

const REQUIRED: Record<Dialect, readonly string[]> = {
  nginx: ['x-hostguard-peer', 'x-hostguard-authority'],
  caddy: ['x-hostguard-peer', 'x-hostguard-authority'],
  envoy: ['x-hostguard-peer', 'host'],
  traefik: ['x-forwarded-for', 'x-forwarded-host'],
}

const NAMES = [
  'x-hostguard-peer',
  'x-hostguard-authority',
  'x-hostguard-path',
  'host',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-uri',
  'forwarded',
  'x-real-ip',
  'x-hostguard-client',
]

/** A header name in any case: Node gives rawHeaders names as the proxy spelled them. */
const anyCase = (name: string) =>
  fc
    .array(fc.boolean(), { minLength: name.length, maxLength: name.length })
    .map((upper) => [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join(''))

const header = fc
  .constantFrom(...NAMES)
  .chain((name) =>
    fc.tuple(
      anyCase(name),
      fc.oneof(
        fc.constantFrom('203.0.113.7', 'www.example.com', '10.0.0.1, 10.0.0.2', '/'),
        fc.string(),
      ),
    ),
  )

const dialect = fc.constantFrom(...DIALECTS)
const site = fc.constantFrom('default', '', 'nope')

describe('the HTTP front end under arbitrary headers', () => {
  prop(
    "never allows a request without its dialect's peer and authority exactly once",
    [dialect, site, fc.array(header, { maxLength: 12 })],
    (d, s, pairs) => {
      const count = (name: string) => pairs.filter(([n]) => n.toLowerCase() === name).length
      const result = authorize(POLICY, `/${d}/${s}/x`, pairs.flat())
      if (REQUIRED[d].every((name) => count(name) === 1)) return
      // Traefik's x-forwarded-for may come as several lines: joined, its last element is the peer.
      if (d === 'traefik' && count('x-forwarded-for') > 1 && count('x-forwarded-host') === 1) return
      expect(result?.decision.reason).toBe('invalid_request')
      expect(result?.answer.status).not.toBe(200)
      expect(result?.input).toBeUndefined()
    },
    3000,
  )

  prop(
    'answers every request, with headers and a status node:http can send',
    [dialect, site, fc.array(header, { maxLength: 12 })],
    (d, s, pairs) => {
      const result = authorize(POLICY, `/${d}/${s}`, pairs.flat())
      expect(result).toBeDefined()
      const headers = result?.answer.headers ?? []
      expect(headers.length % 2).toBe(0)
      // Nothing a client wrote is echoed: every value is hostguard's own printable ASCII.
      for (const value of headers) expect(value).toMatch(/^[\x20-\x7e]*$/)
      expect(result?.answer.status).toBeGreaterThanOrEqual(200)
    },
    1000,
  )

  prop(
    'decides a request whose header names come in any case as it decides them in lower case',
    [dialect, site, fc.array(header, { maxLength: 12 })],
    (d, s, pairs) => {
      const lower = pairs.flatMap(([n, v]) => [n.toLowerCase(), v])
      const given = authorize(POLICY, `/${d}/${s}/x`, pairs.flat())
      const expected = authorize(POLICY, `/${d}/${s}/x`, lower)
      expect(given?.decision).toEqual(expected?.decision)
      expect(given?.input).toEqual(expected?.input)
      // The kept headers too (toEqual does not look into HeaderValues' private fields).
      const kept = (r: typeof given) => NAMES.map((n) => r?.input?.http?.headers.get(n))
      expect(kept(given)).toEqual(kept(expected))
    },
    2000,
  )
})

/** node:http's own headers getter over rawHeaders as its parser hands them over (at most 2000). */
function nodeHeaders(raw: string[]): Record<string, unknown> {
  const message = new IncomingMessage(new Socket())
  const parsed = message as unknown as { _addHeaderLines(h: string[], n: number): void }
  parsed._addHeaderLines(raw, Math.min(raw.length, 2000))
  return message.headers
}

describe("the authz port's request headers (server/authz-http.ts)", () => {
  const READ = ['host', 'expect', 'te', 'content-length', 'transfer-encoding']
  const any = fc
    .constantFrom(...READ, 'hosts', 'x-host', 'accept', 'cookie', 'set-cookie', 'tf')
    .chain((name) => fc.tuple(anyCase(name), fc.constantFrom('a', 'b, c', '', '100-continue')))

  prop(
    'has what node:http itself makes of every header it reads',
    [fc.array(any, { maxLength: 10 })],
    (pairs) => {
      const raw = pairs.flat()
      // node:http's own: the headers getter over rawHeaders, as the parser hands them over.
      const lean = headersNodeReads(raw)
      for (const name of READ) expect(lean[name], name).toEqual(nodeHeaders(raw)[name])
      expect(Object.keys(lean).every((name) => READ.includes(name))).toBe(true)
    },
    2000,
  )

  it('reads no further than node:http does (2000 names and values)', () => {
    const raw = [...Array.from({ length: 1000 }, (_, i) => [`x-${i}`, '.']).flat(), 'Host', 'a']
    expect(nodeHeaders(raw)['host']).toBeUndefined()
    expect(headersNodeReads(raw).host).toBeUndefined()
    expect(headersNodeReads(raw.slice(2)).host).toBe('a')
  })
})
