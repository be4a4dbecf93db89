import { describe, expect, it } from 'vitest'
import { resolveClient } from '../../src/decision/client.js'
import { MAX_CHAIN_ENTRY, parseForwarded, parseNode } from '../../src/net/forwarding.js'
import { formatIp } from '../../src/net/ip.js'
import { checkInput, headers, policyFrom } from '../support/policy.js'

function clientOf(
  trustedHeader: string,
  peer: string,
  extra: Record<string, string>,
  proxies = '[10.0.0.0/8, "fd00::/8"]',
) {
  const policy = policyFrom(
    `version: 1\nallowedHosts: ["*"]\ntrustedProxies: ${proxies}\ntrustedHeaders: [${trustedHeader}]\n`,
  )
  const input = checkInput(peer, undefined, {
    authority: 'a.example',
    path: '/',
    headers: headers(extra),
  })
  const client = resolveClient(policy.top, input)
  return { ip: client.ip && formatIp(client.ip), peerTrusted: client.peerTrusted }
}

describe('x-forwarded-for walk', () => {
  const xff = (value: string, peer = '10.0.0.2') =>
    clientOf('x-forwarded-for', peer, { 'x-forwarded-for': value }).ip
  it.each([
    [
      'stops at the first untrusted hop from the right',
      '203.0.113.7, 10.1.9.9,10.1.2.3',
      '203.0.113.7',
    ],
    [
      'ignores addresses left of the first untrusted hop',
      '10.9.9.9, 198.51.100.1, 203.0.113.7, 10.1.2.3',
      '203.0.113.7',
    ],
    ['trims spaces and tabs', ' 203.0.113.7 ,\t10.1.2.3\t', '203.0.113.7'],
    ['skips empty elements', '203.0.113.7,, ,10.1.2.3', '203.0.113.7'],
    ['reads an IPv4 port', '203.0.113.7:5678,10.1.2.3', '203.0.113.7'],
    ['reads a bracketed IPv6 with a port', '[2001:db8::1]:80, 10.1.2.3', '2001:db8::1'],
    ['reads a bracketed IPv6 without a port', '[2001:db8::1]', '2001:db8::1'],
    ['reads a bare IPv6', '2001:db8::1', '2001:db8::1'],
    ['folds IPv4-mapped IPv6 into IPv4', '::ffff:203.0.113.7', '203.0.113.7'],
    ['trusts an IPv4-mapped proxy', '203.0.113.7, ::ffff:10.1.2.3', '203.0.113.7'],
    ['takes the leftmost when all are trusted', '10.3.3.3, 10.2.2.2', '10.3.3.3'],
    ['takes the peer when the header is empty', '', '10.0.0.2'],
    ['makes the client unknown at a non-address', '203.0.113.7, garbage, 10.1.2.3', undefined],
    ['makes the client unknown at a legacy IPv4 spelling', '0x0a.0.0.1', undefined],
    ['makes the client unknown at a zone id', 'fe80::1%eth0', undefined],
    [
      'makes the client unknown at an IPv6 port without brackets',
      '2001:db8::1:80:1:2:3:4:5',
      undefined,
    ],
    [
      'never reads past the first untrusted hop, even if garbage',
      'garbage, 203.0.113.7',
      '203.0.113.7',
    ],
  ])('%s', (_, value, expected) => {
    expect(xff(value)).toBe(expected)
  })

  it('ignores the header from an untrusted peer', () => {
    expect(
      clientOf('x-forwarded-for', '198.51.100.200', {
        'x-forwarded-for': '10.0.0.1,198.51.100.200',
      }),
    ).toEqual({
      ip: '198.51.100.200',
      peerTrusted: false,
    })
  })

  it('ignores a header the policy does not trust', () => {
    expect(clientOf('x-forwarded-proto', '10.0.0.2', { 'x-forwarded-for': '203.0.113.7' }).ip).toBe(
      '10.0.0.2',
    )
  })

  it('treats an IPv6 peer in an IPv6 trusted range', () => {
    expect(clientOf('x-forwarded-for', 'fd00::5', { 'x-forwarded-for': '203.0.113.7' })).toEqual({
      ip: '203.0.113.7',
      peerTrusted: true,
    })
  })

  it('knows no client when the peer is not an address', () => {
    expect(clientOf('x-forwarded-for', '', { 'x-forwarded-for': '203.0.113.7' })).toEqual({
      ip: undefined,
      peerTrusted: false,
    })
  })
})

describe('forwarded (RFC 7239) walk', () => {
  const fwd = (value: string) => clientOf('forwarded', '10.0.0.2', { forwarded: value }).ip
  it.each([
    [
      'reads for= of the only element',
      'for=192.0.2.60;proto=https;host=shop.example.com;by=10.1.2.3',
      '192.0.2.60',
    ],
    ['reads a quoted IPv6 with a port', 'for="[2001:db8:cafe::17]:4711"', '2001:db8:cafe::17'],
    ['reads a quoted IPv4 with a port', 'for="192.0.2.43:47011"', '192.0.2.43'],
    ['reads parameter names in any case', 'For=192.0.2.60', '192.0.2.60'],
    [
      'walks several elements from the right',
      'for=198.51.100.17, for=192.0.2.43;by=x, for=10.1.2.3',
      '192.0.2.43',
    ],
    ['allows spaces around ; and ,', 'for=192.0.2.60 ; proto=http ,for=10.1.2.3', '192.0.2.60'],
    ['takes the leftmost when all are trusted', 'for=10.1.1.1, for=10.2.2.2', '10.1.1.1'],
    ['makes the client unknown at "unknown"', 'for=unknown, for=10.1.2.3', undefined],
    ['makes the client unknown at an obfuscated node', 'for=_hidden, for=10.1.2.3', undefined],
    ['makes the client unknown at an element without for=', 'proto=https, for=10.1.2.3', undefined],
    ['makes the client unknown at an unquoted IPv6', 'for=[2001:db8::1]', undefined],
    [
      'stops at a malformed element left of the trusted run',
      'for=192.0.2.1;;bad, for="unterminated, for=10.1.2.3',
      undefined,
    ],
    [
      'keeps the trusted run right of a malformed element',
      'for=bad"x, for=203.0.113.9, for=10.1.2.3',
      '203.0.113.9',
    ],
    ['reads an obfuscated port', 'for="192.0.2.43:_abc"', '192.0.2.43'],
  ])('%s', (_, value, expected) => {
    expect(fwd(value)).toBe(expected)
  })
})

describe('x-real-ip and x-client-ip', () => {
  it.each([
    ['x-real-ip', '203.0.113.7', '203.0.113.7'],
    ['x-real-ip', '10.9.9.9', '10.9.9.9'],
    ['x-client-ip', '[2001:db8::1]:443', '2001:db8::1'],
    ['x-real-ip', '192.0.2.10,192.0.2.11', undefined],
    ['x-real-ip', 'unknown', undefined],
  ])('%s: %s is %s', (header, value, expected) => {
    expect(clientOf(header, '10.0.0.2', { [header]: value }).ip).toBe(expected)
  })
})

describe('parseNode and parseForwarded', () => {
  it.each([
    ['1.2.3.4:65535', '1.2.3.4'],
    ['1.2.3.4:65536', undefined],
    ['1.2.3.4:', undefined],
    ['[::1]x', undefined],
    ['[::1', undefined],
    ['1.2.3.4]', undefined],
  ])('parseNode(%s) is %s', (text, expected) => {
    const ip = parseNode(text, 0, text.length, true)
    expect(ip && formatIp(ip)).toBe(expected)
  })

  it('unescapes quoted-pairs and reads host=', () => {
    expect(parseForwarded('for="\\"x\\"";host="a.example:8080"')).toEqual([
      { malformed: false, for: '"x"', host: 'a.example:8080' },
    ])
  })

  it('refuses a parameter twice in one element', () => {
    expect(parseForwarded('for=1.2.3.4;for=5.6.7.8')).toEqual([
      { malformed: true, for: undefined, host: undefined },
    ])
  })
})

describe('a forwarded element longer than MAX_CHAIN_ENTRY', () => {
  const fwd = (value: string) => clientOf('forwarded', '10.0.0.2', { forwarded: value }).ip
  const padded = (n: number) => `for=192.0.2.60;ext=${'x'.repeat(n - 'for=192.0.2.60;ext='.length)}`

  it('is read up to the bound', () => {
    expect(padded(MAX_CHAIN_ENTRY)).toHaveLength(MAX_CHAIN_ENTRY)
    expect(fwd(padded(MAX_CHAIN_ENTRY))).toBe('192.0.2.60')
    expect(fwd(`${padded(MAX_CHAIN_ENTRY)}, for=10.1.2.3`)).toBe('192.0.2.60')
  })

  it('cannot be read past it, quoted or not: the client is unknown', () => {
    expect(fwd(padded(MAX_CHAIN_ENTRY + 1))).toBeUndefined()
    expect(fwd(`for=192.0.2.60;ext="${'x,'.repeat(600)}", for=10.1.2.3`)).toBeUndefined()
  })

  it('makes a trusted forwarded host header unreadable', () => {
    expect(parseForwarded(`host=a.example;ext=${'x'.repeat(2000)}`)).toBeUndefined()
    expect(parseForwarded('host=a.example;ext="x,y"')).toEqual([
      { malformed: false, for: undefined, host: 'a.example' },
    ])
  })
})

describe('an x-forwarded-for or x-real-ip entry longer than MAX_CHAIN_ENTRY', () => {
  const pad = (n: number) => ' '.repeat(n - '203.0.113.7'.length)
  it('is read up to the bound, trimmed', () => {
    expect(
      clientOf('x-real-ip', '10.0.0.2', { 'x-real-ip': `203.0.113.7${pad(MAX_CHAIN_ENTRY)}` }).ip,
    ).toBe('203.0.113.7')
    expect(
      clientOf('x-forwarded-for', '10.0.0.2', {
        'x-forwarded-for': `${pad(MAX_CHAIN_ENTRY)}203.0.113.7`,
      }).ip,
    ).toBe('203.0.113.7')
  })

  it('is not an address past it: the client is unknown', () => {
    const long = `203.0.113.7${pad(MAX_CHAIN_ENTRY + 1)}`
    expect(clientOf('x-real-ip', '10.0.0.2', { 'x-real-ip': long }).ip).toBeUndefined()
    expect(clientOf('x-forwarded-for', '10.0.0.2', { 'x-forwarded-for': long }).ip).toBeUndefined()
  })
})
