import { describe, expect, it } from 'vitest'
import { compileCidrs, matchCidr } from '../../src/net/cidr.js'
import { parseIp } from '../../src/net/ip.js'
import { parseCidrEntry } from '../../src/policy/cidr-entry.js'

function matcher(...entries: string[]) {
  return compileCidrs(
    entries.map((e) => {
      const result = parseCidrEntry(e)
      if (!('range' in result)) throw new Error(result.detail)
      return result.range
    }),
  )
}

function inRanges(entries: string[], address: string): boolean {
  const ip = parseIp(address)
  if (!ip) throw new Error(`not an address: ${address}`)
  return matchCidr(matcher(...entries), ip)
}

describe('CIDR matching', () => {
  it.each([
    [['0.0.0.0/0'], '255.255.255.255', true],
    [['0.0.0.0/0'], '2001:db8::1', false],
    [['10.0.0.1'], '10.0.0.1', true],
    [['10.0.0.1/32'], '10.0.0.2', false],
    [['10.0.0.0/8'], '10.0.0.0', true],
    [['10.0.0.0/8'], '10.255.255.255', true],
    [['10.0.0.0/8'], '11.0.0.0', false],
    [['10.0.0.0/8'], '9.255.255.255', false],
    [['192.168.0.0/31'], '192.168.0.1', true],
    [['192.168.0.0/31'], '192.168.0.2', false],
    [['2001:db8::/32'], '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', true],
    [['2001:db8::/32'], '2001:db9::', false],
    [['2001:db8::1/128'], '2001:db8::1', true],
    [['2001:db8::1/128'], '2001:db8::2', false],
    [['::/0'], '2001:db8::1', true],
    [['10.0.0.0/8'], '::ffff:10.1.2.3', true],
    [['::ffff:10.0.0.0/104'], '10.1.2.3', true],
    [['::ffff:10.0.0.0/104'], '11.1.2.3', false],
    [['::ffff:10.0.0.1'], '10.0.0.1', true],
    [['::ffff:0:0/96'], '1.2.3.4', true],
    [['::/0'], '1.2.3.4', false],
    [['::/0'], '::ffff:1.2.3.4', false],
    [['0.0.0.0/0'], '::ffff:1.2.3.4', true],
    [['::1.2.3.4'], '1.2.3.4', false],
    [['::1.2.3.4'], '::102:304', true],
    [['::fffe:0:0/95'], '1.2.3.4', false],
    [['::/1'], '1.2.3.4', false],
    [['::/8'], '10.9.9.9', false],
    [['::/64'], '10.9.9.9', false],
    [['8000::/1'], '1.2.3.4', false],
    [['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'], '172.31.255.255', true],
    [['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'], '172.32.0.0', false],
    [['10.0.0.0/9', '10.128.0.0/9'], '10.200.0.1', true],
    [['10.0.0.0/8', '10.1.0.0/16'], '10.1.2.3', true],
    [[], '10.1.2.3', false],
  ])('%j holds %s: %s', (entries, address, expected) => {
    expect(inRanges(entries, address)).toBe(expected)
  })

  it('merges adjacent and nested ranges into one interval', () => {
    expect(matcher('10.0.0.0/9', '10.128.0.0/9', '10.1.0.0/16').v4).toEqual(
      Float64Array.from([0x0a000000, 0x0affffff]),
    )
  })
})
