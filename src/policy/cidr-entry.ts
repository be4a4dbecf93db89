// The text of one address list entry, `ADDRESS` or `ADDRESS/PREFIX`: in the policy, in address
// files and in the cache of a dynamic source.

import { type CidrRange, networkAddress, sameIp } from '../net/cidr.js'
import { formatIp, parseIp } from '../net/ip.js'
import type { PolicyErrorCode } from './errors.js'

type CidrResult = { range: CidrRange } | { code: PolicyErrorCode; detail: string }

/**
 * One `trustedProxies`/`allowedCidrNets`/`clientCidrs` entry, read with the same strict parser
 * as the request path, so that the policy and the request agree on what an address is.
 */
export function parseCidrEntry(text: string): CidrResult {
  const slash = text.indexOf('/')
  const address = slash < 0 ? text : text.slice(0, slash)
  const ip = parseIp(address)
  if (ip === undefined) {
    return {
      code: 'POLICY_CIDR_INVALID',
      detail: `"${text}" is not an IP address or CIDR (IPv4 is four decimal parts 0-255 without leading zeros; IPv6 has no zone id)`,
    }
  }
  const writtenV6 = address.includes(':')
  const width = writtenV6 ? 128 : 32
  const bits = slash < 0 ? String(width) : text.slice(slash + 1)
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bits) || Number(bits) > width) {
    return {
      code: 'POLICY_CIDR_INVALID',
      detail: `"${text}": the prefix length must be a number from 0 to ${width}`,
    }
  }
  const prefix = Number(bits)
  const mapped = ip.family === 4 && writtenV6
  if (mapped && prefix < 96) {
    // SPEC "Addresses": IPv4 and IPv6 are separate spaces. A shorter prefix would reach outside
    // ::ffff:0:0/96 into IPv6; reading it as ::/n (as proxy-addr 2.0.7 did) trusts every IPv4 peer.
    // Suggested only when the address is exactly the network of a.b.c.d/n: a rounded range
    // (::ffff:10.0.0.0/0 → 0.0.0.0/0) would widen trust, so none is offered then.
    const exact = prefix <= 32 && sameIp(networkAddress(ip, prefix), ip)
    const v4 = formatIp(ip)
    const meant = exact ? `; did you mean ${v4}/${prefix} (or ::ffff:${v4}/${prefix + 96})?` : ''
    return {
      code: 'POLICY_CIDR_MAPPED_PREFIX',
      detail: `"${text}" is an IPv4-mapped range with a prefix under 96, which would reach outside the mapped space${meant}`,
    }
  }
  // ::ffff:a.b.c.d/n is the IPv4 range a.b.c.d/(n-96) (SPEC "Addresses").
  const range: CidrRange = mapped ? { ip, prefix: prefix - 96 } : { ip, prefix }
  const network = networkAddress(range.ip, range.prefix)
  if (!sameIp(network, range.ip)) {
    const shown = mapped ? `::ffff:${formatIp(network)}` : formatIp(network)
    return {
      code: 'POLICY_CIDR_HOST_BITS',
      detail: `"${text}" has host bits set; did you mean ${shown}/${prefix}?`,
    }
  }
  return { range }
}
