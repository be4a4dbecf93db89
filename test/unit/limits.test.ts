import { describe, expect, it } from 'vitest'
import { resolveClient } from '../../src/decision/client.js'
import { evaluate } from '../../src/decision/evaluate.js'
import type { RequestInput } from '../../src/decision/types.js'
import { formatIp } from '../../src/net/ip.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { parsePolicy } from '../../src/policy/load.js'
import { checkInput, headers } from '../support/policy.js'

const LIMITS = { maxForwardedHops: 4, maxHeaderBytes: 300 }
const POLICY = compilePolicy(
  parsePolicy(
    'version: 1\nallowedHosts: [".example.com"]\ntrustedProxies: [10.0.0.0/8]\ntrustedHeaders: [x-forwarded-for, x-forwarded-host]\nsites:\n  fwd: { trustedHeaders: [forwarded] }\n',
    'p.yaml',
    {},
  ),
  LIMITS,
)

function input(
  h: Record<string, string>,
  authority = 'www.example.com',
  site?: string,
): RequestInput {
  return checkInput('10.0.0.2', site, { authority, path: '/', headers: headers(h) })
}

function clientOf(h: Record<string, string>, site?: string): string | undefined {
  const s = site ? POLICY.sites.get(site) : POLICY.top
  if (!s) throw new Error('no site')
  const ip = resolveClient(s, input(h, 'www.example.com', site)).ip
  return ip && formatIp(ip)
}

describe('--max-forwarded-hops', () => {
  it('walks a chain of that many entries', () => {
    expect(clientOf({ 'x-forwarded-for': '10.0.0.4, 10.0.0.3, 10.0.0.2, 10.0.0.1' })).toBe(
      '10.0.0.4',
    )
  })

  it('makes the client unknown when a chain is longer, rather than scanning it all', () => {
    expect(
      clientOf({ 'x-forwarded-for': '10.0.0.5, 10.0.0.4, 10.0.0.3, 10.0.0.2, 10.0.0.1' }),
    ).toBeUndefined()
    expect(
      clientOf(
        { forwarded: 'for=10.0.0.5,for=10.0.0.4,for=10.0.0.3,for=10.0.0.2,for=10.0.0.1' },
        'fwd',
      ),
    ).toBeUndefined()
  })

  it('stops at an untrusted hop before counting the rest', () => {
    const stuffed = `${Array(50).fill('10.9.9.9').join(',')}, 203.0.113.7, 10.0.0.1`
    expect(clientOf({ 'x-forwarded-for': stuffed.slice(-100) })).toBe('203.0.113.7')
  })
})

describe('--max-header-bytes', () => {
  const long = `203.0.113.7${' '.repeat(300)}`
  it('makes the client unknown when the entries walked are longer', () => {
    expect(clientOf({ 'x-forwarded-for': long })).toBeUndefined()
    expect(clientOf({ 'x-forwarded-for': `${'10.0.0.9,'.repeat(40)}10.0.0.1` })).toBeUndefined()
    expect(clientOf({ 'x-real-ip': long })).toBe('10.0.0.2') // x-real-ip is not trusted here
  })

  it('treats a longer Host or x-forwarded-host as invalid', () => {
    const site = POLICY.top
    const longHost = `${'a'.repeat(300)}.example.com`
    const direct = input({}, longHost)
    expect(evaluate(site, direct, resolveClient(site, direct))).toBe('invalid_host')
    const viaProxy = input({ 'x-forwarded-host': longHost }, 'internal')
    expect(evaluate(site, viaProxy, resolveClient(site, viaProxy))).toBe('invalid_host')
    const short = input({}, `${'a'.repeat(240)}.example.com`)
    expect(evaluate(site, short, resolveClient(site, short))).toBe('host_allowed')
  })
})

describe('padding left of the client cannot move the walk', () => {
  // The trusted proxy 10.0.0.2 appends the real client to whatever the client sent.
  it.each([
    ['8 KiB of anything', 'x'.repeat(8192)],
    ['8 KiB of commas', ','.repeat(8192)],
    ['thousands of trusted-looking entries', '10.0.0.9,'.repeat(1000)],
    ['an unterminated quote', '"'],
  ])('x-forwarded-for: %s', (_, padding) => {
    expect(clientOf({ 'x-forwarded-for': `${padding}, 192.0.2.9` })).toBe('192.0.2.9')
  })

  it.each([
    ['33 elements', 'for=10.0.0.9,'.repeat(33)],
    ['8 KiB of one element', `for="${'x'.repeat(8192)}",`],
    ['an unterminated quote', 'for="x,'],
    ['malformed elements', ';;=,'.repeat(100)],
  ])('forwarded: %s', (_, padding) => {
    expect(clientOf({ forwarded: `${padding}for=192.0.2.9` }, 'fwd')).toBe('192.0.2.9')
  })

  it('still stops at the limits when every entry walked is trusted', () => {
    expect(
      clientOf({ forwarded: `for=192.0.2.9,${'for=10.0.0.9,'.repeat(4)}for=10.0.0.8` }, 'fwd'),
    ).toBeUndefined()
  })
})

describe('hostile shapes of the host headers', () => {
  const reason = (h: Record<string, string>, authority = 'www.example.com', site?: string) => {
    const s = site ? POLICY.sites.get(site) : POLICY.top
    if (!s) throw new Error('no site')
    const i = input(h, authority, site)
    return evaluate(s, i, resolveClient(s, i))
  }

  it('treats a Host longer than a DNS name, its dot and a port as invalid', () => {
    const host = (labels: string) => `${labels}${'a.'.repeat(121)}example.com.:65535` // 260 + labels
    expect(host('').length).toBe(260)
    expect(reason({}, host(''))).toBe('host_allowed')
    expect(reason({}, host('b'))).toBe('invalid_host')
  })

  it('treats an x-forwarded-host of more elements than --max-forwarded-hops as invalid', () => {
    expect(reason({ 'x-forwarded-host': Array(4).fill('www.example.com').join(',') }, 'i')).toBe(
      'host_allowed',
    )
    expect(reason({ 'x-forwarded-host': Array(5).fill('www.example.com').join(',') }, 'i')).toBe(
      'invalid_host',
    )
  })

  it('treats a forwarded header of more elements than --max-forwarded-hops as invalid', () => {
    // Trusted hops all the way, so that the walk reads (and the host step checks) every element.
    const elements = (n: number) =>
      Array.from({ length: n }, (_, i) => `for=10.0.0.${i + 3};host=www.example.com`).join(',')
    expect(reason({ forwarded: elements(4) }, 'i', 'fwd')).toBe('host_allowed')
    expect(reason({ forwarded: elements(5) }, 'i', 'fwd')).toBe('invalid_host')
  })
})

describe('empty elements and parameters cost like any other', () => {
  it('counts empty x-forwarded-for and forwarded elements walked against --max-forwarded-hops', () => {
    expect(clientOf({ 'x-forwarded-for': '203.0.113.7,,,10.0.0.1' })).toBe('203.0.113.7')
    expect(clientOf({ 'x-forwarded-for': '203.0.113.7,,,,10.0.0.1' })).toBeUndefined()
    expect(clientOf({ forwarded: 'for=203.0.113.7,,,for=10.0.0.1' }, 'fwd')).toBe('203.0.113.7')
    expect(clientOf({ forwarded: 'for=203.0.113.7,,,,for=10.0.0.1' }, 'fwd')).toBeUndefined()
  })

  it('treats a trusted forwarded host header of more elements, empty ones included, as invalid', () => {
    const s = POLICY.sites.get('fwd')
    if (!s) throw new Error('no site')
    const reason = (forwarded: string) => {
      const i = input({ forwarded }, 'internal', 'fwd')
      return evaluate(s, i, resolveClient(s, i))
    }
    expect(reason('for=10.0.0.3;host=www.example.com,,,for=10.0.0.4')).toBe('host_allowed')
    expect(reason(',for=10.0.0.3;host=www.example.com,,,for=10.0.0.4')).toBe('invalid_host')
  })

  it('makes a forwarded element of more than 16 parameters malformed', () => {
    const params = (n: number) => Array.from({ length: n - 1 }, (_, i) => `e${i}=1;`).join('')
    expect(clientOf({ forwarded: `${params(16)}for=203.0.113.7` }, 'fwd')).toBe('203.0.113.7')
    expect(clientOf({ forwarded: `${params(17)}for=203.0.113.7` }, 'fwd')).toBeUndefined()
  })
})
