import { describe, expect, it } from 'vitest'
import { resolveClient } from '../../src/check/client.js'
import { evaluate, selectSite } from '../../src/check/evaluate.js'
import type { CheckInput, CompiledPolicy, HttpInput } from '../../src/check/types.js'
import { checkInput, headers, policyFrom } from '../support/policy.js'

const POLICY = policyFrom(
  `version: 1
trustedProxies: [10.1.0.0/16]
trustedHeaders: [x-forwarded-for, x-forwarded-host]
allowedHosts: [www.example.com, .example.org, "[2001:db8::1]"]
allowedCidrNets: [10.0.0.0/16, "2001:db8:1::/48"]
clientCidrs: { deny: [203.0.113.66] }
healthCheck: { header: x-health, value: { env: SECRET }, paths: [/health-check/] }
sites:
  internal:
    clientCidrs: { allow: [10.0.0.0/8], deny: [10.66.0.0/16] }
  anypath:
    healthCheck: { header: x-health, value: { env: SECRET } }
  allowonly:
    clientCidrs: { allow: [10.0.0.0/8] }
  fwd:
    trustedHeaders: [forwarded]
    clientCidrs: null
  tcp:
    clientCidrs: { allow: [192.0.2.0/24] }
`,
  { SECRET: 's3cret' },
)

function http(
  authority: string | undefined,
  extra: Record<string, string> = {},
  path = '/',
): HttpInput {
  return { authority, path, headers: headers(extra) }
}

function reasonOf(input: Partial<CheckInput>, policy: CompiledPolicy = POLICY): string {
  const full = checkInput(input.peer ?? '198.51.100.1', input.site, input.http)
  const site = selectSite(policy, full)
  if (!site) return 'unknown_site'
  return evaluate(site, full, resolveClient(site, full))
}

describe('evaluation order', () => {
  it.each([
    ['an allowed host', { http: http('www.example.com') }, 'host_allowed'],
    ['an allowed host with a port', { http: http('www.example.com:8443') }, 'host_allowed'],
    ['a subdomain of a .suffix pattern', { http: http('a.example.org') }, 'host_allowed'],
    ['the apex of a .suffix pattern', { http: http('example.org') }, 'host_allowed'],
    ['a bracketed IPv6 host', { http: http('[2001:db8::1]:443') }, 'host_allowed'],
    ['another host', { http: http('evil.example') }, 'host_not_allowed'],
    ['a node IP as Host (ELB health check)', { http: http('10.0.12.34') }, 'host_cidr'],
    ['an IPv6 literal Host inside allowedCidrNets', { http: http('[2001:db8:1::5]') }, 'host_cidr'],
    ['a legacy IPv4 spelling as Host', { http: http('010.0.12.34') }, 'host_not_allowed'],
    ['an IP Host outside allowedCidrNets', { http: http('10.1.0.1') }, 'host_not_allowed'],
    ['invalid Host syntax', { http: http('www.example.com/x') }, 'invalid_host'],
    ['no Host at all', { http: http(undefined) }, 'invalid_host'],
    ['a denied client', { peer: '203.0.113.66', http: http('www.example.com') }, 'client_denied'],
    ['an unknown site', { site: 'nope', http: http('www.example.com') }, 'unknown_site'],
    ['an empty site name', { site: '', http: http('www.example.com') }, 'unknown_site'],
    [
      'a named site',
      { site: 'internal', peer: '10.2.3.4', http: http('www.example.com') },
      'host_allowed',
    ],
    [
      'a client outside clientCidrs.allow',
      { site: 'internal', http: http('www.example.com') },
      'client_not_allowed',
    ],
    [
      'clientCidrs.deny before .allow',
      { site: 'internal', peer: '10.66.1.1', http: http('www.example.com') },
      'client_denied',
    ],
    [
      'an unknown client when clientCidrs.allow is set',
      { site: 'allowonly', peer: '', http: http('www.example.com') },
      'client_not_allowed',
    ],
    [
      'an unknown client when clientCidrs.deny is set (it cannot be shown to be outside)',
      { site: 'internal', peer: '', http: http('www.example.com') },
      'client_denied',
    ],
    [
      'a client made unknown by a non-address in the chain, with a deny list',
      {
        peer: '10.1.2.3',
        http: http('www.example.com', { 'x-forwarded-for': 'garbage, 10.1.9.9' }),
      },
      'client_denied',
    ],
  ])('%s: %s', (_, input, reason) => {
    expect(reasonOf(input)).toBe(reason)
  })
})

describe('health check', () => {
  const probe = (value: string, path = '/health-check/', site?: string) =>
    reasonOf({
      site,
      peer: '203.0.113.66',
      http: http('10.244.2.15:8080', { 'x-health': value }, path),
    })
  it('allows the secret on the configured path before any other rule', () => {
    expect(probe('s3cret')).toBe('health_check')
  })
  it.each([
    ['a wrong secret', 's3creT'],
    ['a longer secret', 's3cret!'],
    ['a prefix of the secret', 's3cre'],
    ['the secret twice (a duplicated header)', 's3cret,s3cret'],
    ['an empty value', ''],
  ])('refuses %s', (_, value) => {
    expect(probe(value)).toBe('client_denied')
  })
  it('refuses the secret on another path', () => {
    expect(probe('s3cret', '/admin/')).toBe('client_denied')
  })
  it('allows any path when paths is not set', () => {
    expect(probe('s3cret', '/anything', 'anypath')).toBe('health_check')
  })
})

describe('trusted host headers', () => {
  const viaProxy = (extra: Record<string, string>, site?: string, peer = '10.1.2.3') =>
    reasonOf({ site, peer, http: http('web.default.svc.cluster.local:8080', extra) })
  it('checks x-forwarded-host instead of the authority from a trusted peer', () => {
    expect(viaProxy({ 'x-forwarded-host': 'www.example.com' })).toBe('host_allowed')
  })
  it('checks every element of x-forwarded-host', () => {
    expect(viaProxy({ 'x-forwarded-host': 'www.example.com, evil.example' })).toBe(
      'host_not_allowed',
    )
    expect(viaProxy({ 'x-forwarded-host': 'www.example.com, 10.0.0.9' })).toBe('host_cidr')
    // The worst element decides wherever it stands (found by the differential fuzzer).
    expect(viaProxy({ 'x-forwarded-host': 'evil.example, www.example.com' })).toBe(
      'host_not_allowed',
    )
    expect(viaProxy({ 'x-forwarded-host': '10.0.0.9, www.example.com' })).toBe('host_cidr')
  })
  it('treats an empty x-forwarded-host element as an invalid host', () => {
    expect(viaProxy({ 'x-forwarded-host': 'www.example.com,' })).toBe('invalid_host')
  })
  it('ignores x-forwarded-host from an untrusted peer', () => {
    expect(viaProxy({ 'x-forwarded-host': 'www.example.com' }, undefined, '198.51.100.1')).toBe(
      'host_not_allowed',
    )
  })
  it('checks the authority when the trusted header is absent', () => {
    expect(viaProxy({})).toBe('host_not_allowed')
  })
  it('checks every host= of a trusted forwarded header', () => {
    expect(viaProxy({ forwarded: 'for=192.0.2.60;host=www.example.com' }, 'fwd')).toBe(
      'host_allowed',
    )
    expect(
      viaProxy(
        { forwarded: 'for=192.0.2.60;host="www.example.com:443", for=10.1.9.9;host=evil.example' },
        'fwd',
      ),
    ).toBe('host_not_allowed')
  })
  it('fails closed on a malformed forwarded header', () => {
    expect(viaProxy({ forwarded: 'host=www.example.com, for="x' }, 'fwd')).toBe('invalid_host')
  })
  it('checks the authority when forwarded has no host=', () => {
    expect(viaProxy({ forwarded: 'for=192.0.2.60' }, 'fwd')).toBe('host_not_allowed')
  })
})

describe('requests without an HTTP part', () => {
  it.each([
    ['a site without clientCidrs.allow', undefined, '198.51.100.1', 'not_http'],
    ['a peer in clientCidrs.allow', 'tcp', '192.0.2.9', 'tcp_client_allowed'],
    ['a peer outside clientCidrs.allow', 'tcp', '198.51.100.1', 'client_not_allowed'],
    ['a denied peer', undefined, '203.0.113.66', 'client_denied'],
    ['no peer at all, with a deny list', undefined, '', 'client_denied'],
    ['no peer at all, with an allow list', 'tcp', '', 'client_not_allowed'],
    ['no peer at all, no client lists', 'fwd', '', 'not_http'],
  ])('%s: %s', (_, site, peer, reason) => {
    expect(reasonOf({ site, peer })).toBe(reason)
  })
})
