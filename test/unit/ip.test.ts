import { describe, expect, it } from 'vitest'
import { formatIp, parseIp } from '../../src/net/ip.js'

describe('parseIp: one strict syntax', () => {
  it.each([
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['10.0.0.1', '10.0.0.1'],
    ['::', '::'],
    ['::1', '::1'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1::8', '1::8'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::1.2.3.4', '::102:304'],
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['::ffff:a00:1', '10.0.0.1'],
    ['0:0:0:0:0:ffff:192.0.2.1', '192.0.2.1'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
  ])('reads %s as %s', (text, canonical) => {
    const ip = parseIp(text)
    expect(ip && formatIp(ip)).toBe(canonical)
  })

  it.each([
    ['a leading zero', '010.0.0.1'],
    ['a hex part', '0x0a.0.0.1'],
    ['a single number', '167772161'],
    ['two parts', '10.1'],
    ['three parts', '10.0.1'],
    ['five parts', '1.2.3.4.5'],
    ['a part over 255', '256.0.0.1'],
    ['an empty part', '1..2.3'],
    ['a trailing dot', '1.2.3.4.'],
    ['spaces', ' 1.2.3.4'],
    ['a zone id', 'fe80::1%eth0'],
    ['a zone id on a mapped address', '::ffff:10.0.0.1%1'],
    ['two ::', '1::2::3'],
    ['nine groups', '1:2:3:4:5:6:7:8:9'],
    ['seven groups without ::', '1:2:3:4:5:6:7'],
    ['a five-digit group', '12345::1'],
    ['a lone leading colon', ':1:2:3:4:5:6:7'],
    ['a lone trailing colon', '1:2:3:4:5:6:7:'],
    [':::', ':::'],
    ['a legacy IPv4 tail', '::ffff:010.0.0.1'],
    ['an IPv4 tail in the middle', '::1.2.3.4:1'],
    ['brackets', '[::1]'],
    ['a port', '1.2.3.4:80'],
    ['a name', 'localhost'],
    ['nothing', ''],
  ])('refuses %s (%s)', (_, text) => {
    expect(parseIp(text)).toBeUndefined()
  })
})
