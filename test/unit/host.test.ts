import { describe, expect, it } from 'vitest'
import { compileHosts, hostDomain, hostLiteralIp, matchHost } from '../../src/net/host.js'
import { formatIp } from '../../src/net/ip.js'

describe("hostDomain: Django's split_domain_port", () => {
  it.each([
    ['example.com', 'example.com'],
    ['Example.COM', 'example.com'],
    ['example.com:8000', 'example.com'],
    ['example.com.', 'example.com'],
    ['example.com.:8000', 'example.com'],
    ['[::1]', '[::1]'],
    ['[::1]:8000', '[::1]'],
    ['[2001:DB8::1]', '[2001:db8::1]'],
    ['10.0.12.34', '10.0.12.34'],
    ['10.244.2.15:8080', '10.244.2.15'],
    ['localhost', 'localhost'],
    ['a-b.c', 'a-b.c'],
    ['example.com:99999999', 'example.com'],
  ])('%s has the domain %s', (host, domain) => {
    expect(hostDomain(host)).toBe(domain)
  })

  it.each([
    ['an underscore', 'under_score.example.com'],
    ['a space', 'example.com '],
    ['a newline', 'example.com\n'],
    ['userinfo', 'user@example.com'],
    ['a path', 'example.com/x'],
    ['a bare IPv6 address', '2001:db8::1'],
    ['an unclosed bracket', '[::1'],
    ['a non-numeric port', 'example.com:http'],
    ['an empty port', 'example.com:'],
    ['nothing', ''],
    ['only a dot', '.'],
    ['only a port', ':80'],
    ['non-ASCII', 'exämple.com'],
    ['a NUL byte', 'example.com\u0000'],
    ['a letter that lower-cases to ASCII (U+212A KELVIN SIGN)', '\u212Aexample.com'],
  ])('refuses %s', (_, host) => {
    expect(hostDomain(host)).toBeUndefined()
  })
})

describe("matchHost: Django's validate_host", () => {
  const patterns = ['www.example.com', '.example.org', '[::1]', '10.0.0.1']
  const m = compileHosts(patterns)
  it.each([
    ['www.example.com', 'www.example.com'],
    ['example.com', undefined],
    ['api.www.example.com', undefined],
    ['example.org', '.example.org'],
    ['a.example.org', '.example.org'],
    ['a.b.example.org', '.example.org'],
    ['badexample.org', undefined],
    ['example.org.evil.com', undefined],
    ['[::1]', '[::1]'],
    ['10.0.0.1', '10.0.0.1'],
    ['10.0.0.2', undefined],
  ])('%s matches %s', (domain, pattern) => {
    expect(matchHost(m, domain)).toBe(pattern)
  })

  it('matches anything with *', () => {
    expect(matchHost(compileHosts(['*']), 'whatever.test')).toBe('*')
  })
})

describe('hostLiteralIp', () => {
  it.each([
    ['10.0.12.34', '10.0.12.34'],
    ['[2001:db8::1]', '2001:db8::1'],
    ['[::ffff:10.0.0.1]', '10.0.0.1'],
    ['010.0.12.34', undefined],
    ['10.1', undefined],
    ['[1.2.3.4]', undefined],
    ['example.com', undefined],
  ])('%s is %s', (domain, ip) => {
    const parsed = hostLiteralIp(domain)
    expect(parsed && formatIp(parsed)).toBe(ip)
  })
})
