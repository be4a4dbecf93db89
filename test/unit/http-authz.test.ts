// The HTTP front end (SPEC "HTTP authorization"): each dialect's inputs, the answer in its terms,
// and that a request whose proxy did not set the dialect's own headers is never allowed.

import { describe, expect, it } from 'vitest'
import { CLIENT_HEADER, STATUS_HEADER } from '../../src/http-authz/answer.js'
import { authorize } from '../../src/http-authz/authorize.js'
import {
  AUTHORITY_HEADER,
  DIALECTS,
  PATH_HEADER,
  PEER_HEADER,
  parseTarget,
} from '../../src/http-authz/request.js'
import { policyFrom } from '../support/policy.js'

const POLICY = policyFrom(
  `version: 1
trustedProxies: [10.0.0.0/8]
trustedHeaders: [x-forwarded-for, x-forwarded-host]
allowedHosts: [www.example.com]
clientIpHeader: x-real-ip
healthCheck: { header: x-health, value: { env: SECRET }, paths: [/health-check/] }
sites:
  blog: { allowedHosts: [blog.example.com], deny: { status: 404 } }
  dry: { allowedHosts: [dry.example.com], dryRun: true }
`,
  { SECRET: 'a-health-check-secret-of-32-bytes' },
)

/** The answer's headers as an object (names are unique in hostguard's answers). */
function answerHeaders(headers: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i < headers.length; i += 2) out[headers[i] as string] = headers[i + 1] as string
  return out
}

function ask(url: string, ...raw: string[]) {
  const result = authorize(POLICY, url, raw)
  if (result === undefined) throw new Error(`${url}: no dialect`)
  return { ...result, headers: answerHeaders(result.answer.headers) }
}

/** A request as each proxy sends it, for a peer, a Host and a path. */
function asSent(dialect: string, peer: string, host: string, path: string, site = 'default') {
  switch (dialect) {
    case 'traefik':
      return [
        `/traefik/${site}`,
        'X-Forwarded-For',
        peer,
        'X-Forwarded-Host',
        host,
        'X-Forwarded-Uri',
        path,
      ]
    case 'envoy':
      return [`/envoy/${site}${path}`, 'x-hostguard-peer', peer, 'host', host]
    default:
      return [`/${dialect}/${site}`, PEER_HEADER, peer, AUTHORITY_HEADER, host, PATH_HEADER, path]
  }
}

describe('the URL', () => {
  it.each([
    ['/nginx/default', { dialect: 'nginx', site: 'default', rest: '' }],
    ['/envoy/blog/a/b?c=d', { dialect: 'envoy', site: 'blog', rest: '/a/b?c=d' }],
    ['/caddy/blog?x', { dialect: 'caddy', site: 'blog', rest: '?x' }],
    ['/traefik', { dialect: 'traefik', site: '', rest: '' }],
  ])('%s names a dialect and a site', (url, target) => {
    expect(parseTarget(url)).toEqual(target)
  })

  it.each([
    '/',
    '',
    'nginx/default',
    '/nginxx/default',
    '/NGINX/default',
    '/ngin/default',
    '/metrics',
  ])('%j names no dialect', (url) => {
    expect(parseTarget(url)).toBeUndefined()
  })

  it('an unknown site is the unknown_site deny, a missing one too', () => {
    expect(
      ask(...(asSent('nginx', '203.0.113.7', 'www.example.com', '/', 'nope') as [string])),
    ).toMatchObject({
      decision: { reason: 'unknown_site', allowed: false },
    })
    expect(
      ask('/nginx', PEER_HEADER, '203.0.113.7', AUTHORITY_HEADER, 'www.example.com').decision
        .reason,
    ).toBe('unknown_site')
  })
})

describe.each(DIALECTS)('the %s dialect', (dialect) => {
  const send = (peer: string, host: string, path = '/', site = 'default') =>
    ask(...(asSent(dialect, peer, host, path, site) as [string, ...string[]]))

  it('allows an allowed Host, with the x-hostguard-* headers', () => {
    const r = send('203.0.113.7', 'www.example.com')
    expect(r.answer.status).toBe(200)
    expect(r.headers).toMatchObject({
      'x-hostguard-decision': 'allow',
      'x-hostguard-reason': 'host_allowed',
      'x-hostguard-site': 'default',
      'x-hostguard-mode': 'enforce',
      [CLIENT_HEADER]: '203.0.113.7',
    })
  })

  it("denies another Host with the site's status (nginx: 403 and the status in a header)", () => {
    const r = send('203.0.113.7', 'evil.example', '/', 'blog')
    expect(r.decision.reason).toBe('host_not_allowed')
    expect(r.answer.status).toBe(dialect === 'nginx' ? 403 : 404)
    expect(r.headers[STATUS_HEADER]).toBe(dialect === 'nginx' ? '404' : undefined)
    expect(r.answer.body).toBe('Not Found\n')
  })

  it('answers an invalid Host 400', () => {
    const r = send('203.0.113.7', 'www.example.com\\@evil')
    expect(r.decision.reason).toBe('invalid_host')
    expect(r.answer.status).toBe(dialect === 'nginx' ? 403 : 400)
  })

  it('answers a dry-run deny 200, with decision deny', () => {
    const r = send('203.0.113.7', 'evil.example', '/', 'dry')
    expect(r.answer.status).toBe(200)
    expect(r.headers).toMatchObject({
      'x-hostguard-decision': 'deny',
      'x-hostguard-mode': 'dry_run',
    })
  })

  it('lets the health check through on its path only', () => {
    const [url, ...raw] = asSent(dialect, '203.0.113.7', '10.1.2.3', '/health-check/?x=1') as [
      string,
    ]
    const probe = ask(url, ...raw, 'X-Health', 'a-health-check-secret-of-32-bytes')
    expect(probe.decision.reason).toBe('health_check')
    const [other, ...rawOther] = asSent(dialect, '203.0.113.7', '10.1.2.3', '/other') as [string]
    expect(
      ask(other, ...rawOther, 'X-Health', 'a-health-check-secret-of-32-bytes').decision.reason,
    ).toBe('host_not_allowed')
  })
})

describe('reading the client', () => {
  it('nginx and Caddy: the chain a trusted peer vouches for', () => {
    const r = ask(
      '/nginx/default',
      PEER_HEADER,
      '10.0.0.5',
      AUTHORITY_HEADER,
      'internal',
      'X-Forwarded-For',
      '198.51.100.9, 10.0.0.7',
      'X-Forwarded-Host',
      'www.example.com',
    )
    expect(r.decision).toMatchObject({ reason: 'host_allowed', client: { peerTrusted: true } })
    expect(r.headers[CLIENT_HEADER]).toBe('198.51.100.9')
  })

  it('a header the policy reads is found in any case and repeats, among others of its length', () => {
    const r = ask(
      '/nginx/default',
      PEER_HEADER,
      '10.0.0.5',
      AUTHORITY_HEADER,
      'internal',
      'X-FORWARDED-FOR',
      '198.51.100.9',
      'X-Forwarded-Fox',
      '192.0.2.1',
      'User-Agent',
      'Mozilla/5.0',
      'x-Forwarded-for',
      '10.0.0.7',
      'X-Forwarded-HOST',
      'www.example.com',
    )
    expect(r.decision).toMatchObject({ reason: 'host_allowed', client: { peerTrusted: true } })
    expect(r.headers[CLIENT_HEADER]).toBe('198.51.100.9')
  })

  it("nginx and Caddy: an untrusted peer's forwarding headers are not believed", () => {
    const r = ask(
      '/caddy/default',
      PEER_HEADER,
      '203.0.113.7',
      AUTHORITY_HEADER,
      'evil.example',
      'X-Forwarded-For',
      '10.0.0.1',
      'X-Forwarded-Host',
      'www.example.com',
    )
    expect(r.decision.reason).toBe('host_not_allowed')
    expect(r.headers[CLIENT_HEADER]).toBe('203.0.113.7')
  })

  it('Traefik: the peer is the last x-forwarded-for element, x-forwarded-host the authority', () => {
    const trusted = ask(
      '/traefik/default',
      'X-Forwarded-For',
      '198.51.100.9, 10.0.0.5',
      'X-Forwarded-Host',
      'www.example.com',
      'X-Forwarded-Uri',
      '/',
    )
    expect(trusted.headers[CLIENT_HEADER]).toBe('198.51.100.9')
    // An untrusted peer: what a client wrote left of it is not read.
    const stranger = ask(
      '/traefik/default',
      'X-Forwarded-For',
      '10.0.0.1, 203.0.113.7',
      'X-Forwarded-Host',
      'www.example.com',
      'X-Forwarded-Uri',
      '/',
    )
    expect(stranger.headers[CLIENT_HEADER]).toBe('203.0.113.7')
    expect(stranger.decision.client.peerTrusted).toBe(false)
  })

  it('Envoy: the element its connection manager appends for the peer is not a hop', () => {
    const r = ask(
      '/envoy/default/',
      PEER_HEADER,
      '10.0.0.5',
      'host',
      'www.example.com',
      'x-forwarded-for',
      '198.51.100.9,10.0.0.5',
    )
    expect(r.headers[CLIENT_HEADER]).toBe('198.51.100.9')
  })

  it('Envoy: the untrusted forwarding headers to remove, and the clientIpHeader to set', () => {
    const stranger = ask('/envoy/default/', PEER_HEADER, '203.0.113.7', 'host', 'www.example.com')
    expect(stranger.headers['x-envoy-auth-headers-to-remove']?.split(',')).toContain(
      'x-forwarded-for',
    )
    expect(stranger.headers['x-real-ip']).toBe('203.0.113.7')
    expect(stranger.headers['x-envoy-auth-headers-to-remove']?.split(',')).not.toContain(
      'x-real-ip',
    )
    const unknown = ask('/envoy/default/', PEER_HEADER, 'not-an-address', 'host', 'www.example.com')
    expect(unknown.headers['x-real-ip']).toBeUndefined()
    expect(unknown.headers['x-envoy-auth-headers-to-remove']?.split(',')).toContain('x-real-ip')
  })
})

describe('a request its proxy did not set up', () => {
  it.each([
    ['nginx', [AUTHORITY_HEADER, 'www.example.com']],
    ['caddy', [PEER_HEADER, '203.0.113.7']],
    ['envoy', [PEER_HEADER, '203.0.113.7']],
    ['envoy', ['host', 'www.example.com']],
    ['traefik', ['X-Forwarded-Host', 'www.example.com']],
    ['traefik', ['X-Forwarded-For', '203.0.113.7']],
    [
      'nginx',
      [
        PEER_HEADER,
        '203.0.113.7',
        'X-Hostguard-Peer',
        '10.0.0.1',
        AUTHORITY_HEADER,
        'www.example.com',
      ],
    ],
    [
      'caddy',
      [
        PEER_HEADER,
        '203.0.113.7',
        AUTHORITY_HEADER,
        'www.example.com',
        'x-hostguard-authority',
        'www.example.com',
      ],
    ],
    ['envoy', [PEER_HEADER, '203.0.113.7', 'Host', 'www.example.com', 'host', 'www.example.com']],
    [
      'traefik',
      [
        'X-Forwarded-For',
        '203.0.113.7',
        'X-Forwarded-Host',
        'www.example.com',
        'X-Forwarded-Host',
        'www.example.com',
      ],
    ],
  ])('%s with %j is answered 400 invalid_request, even in dry run', (dialect, raw) => {
    for (const site of ['default', 'dry']) {
      const r = ask(`/${dialect}/${site}/`, ...raw)
      expect(r.decision).toMatchObject({
        reason: 'invalid_request',
        allowed: false,
        mode: 'enforce',
      })
      expect(r.misconfigured).toBeDefined()
      expect(r.answer.status).toBe(dialect === 'nginx' ? 403 : 400)
    }
  })
})
