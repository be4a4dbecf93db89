// Step 3 of SPEC's evaluation order, first half: who the client is. Forwarding headers are
// believed only from a trusted peer, and only the one client-address header the site trusts.

import { matchCidr } from '../net/cidr.js'
import { owsEnd, owsStart, parseForwarded, parseNode } from '../net/forwarding.js'
import type { Ip } from '../net/ip.js'
import type { CompiledSite } from '../policy/compile.js'
import type { ClientAddressHeader } from '../policy/schema.js'
import type { CheckInput, Client, Trace } from './types.js'

/**
 * Walks an x-forwarded-for value from the right (the hop nearest the peer) and returns the first
 * address that is not a trusted proxy; the leftmost when all are. Undefined (client unknown) at
 * the first entry that is not an address. Empty elements are skipped.
 */
function walkForwardedFor(
  site: CompiledSite,
  value: string,
  peer: Ip,
  trace: Trace | undefined,
): Ip | undefined {
  if (value.length > site.limits.maxHeaderBytes) return undefined
  let leftmost = peer
  let end = value.length
  let hops = 0
  for (;;) {
    const comma = end > 0 ? value.lastIndexOf(',', end - 1) : -1
    const start = owsStart(value, comma + 1, end)
    const stop = owsEnd(value, start, end)
    if (start < stop) {
      // A chain longer than any real one is a client stuffing the header: client unknown.
      if (++hops > site.limits.maxForwardedHops) return undefined
      trace?.chain.push(value.slice(start, stop))
      const ip = parseNode(value, start, stop, true)
      if (ip === undefined) return undefined
      if (!matchCidr(site.trustedProxies, ip)) return ip
      leftmost = ip
    }
    if (comma < 0) return leftmost
    end = comma
  }
}

/** The same walk over RFC 7239 `for=` nodes; a malformed element ends it, client unknown. */
function walkForwarded(
  site: CompiledSite,
  value: string,
  peer: Ip,
  trace: Trace | undefined,
): Ip | undefined {
  if (value.length > site.limits.maxHeaderBytes) return undefined
  const elements = parseForwarded(value)
  if (elements.length > site.limits.maxForwardedHops) return undefined
  let leftmost = peer
  for (let i = elements.length - 1; i >= 0; i--) {
    const element = elements[i]
    const node = element?.for
    trace?.chain.push(element?.malformed ? '(malformed element)' : (node ?? '(no for=)'))
    if (node === undefined) return undefined
    const ip = parseNode(node, 0, node.length, false, true)
    if (ip === undefined) return undefined
    if (!matchCidr(site.trustedProxies, ip)) return ip
    leftmost = ip
  }
  return leftmost
}

/** x-real-ip / x-client-ip: one address; any list or non-address makes the client unknown. */
function walkSingle(
  site: CompiledSite,
  value: string,
  peer: Ip,
  trace: Trace | undefined,
): Ip | undefined {
  if (value.length > site.limits.maxHeaderBytes) return undefined
  const start = owsStart(value, 0, value.length)
  const stop = owsEnd(value, start, value.length)
  if (start === stop) return peer
  trace?.chain.push(value.slice(start, stop))
  // Trusted or not, the one address is the client: it is the whole chain left of the peer.
  return parseNode(value, start, stop, true)
}

type Walk = (
  site: CompiledSite,
  value: string,
  peer: Ip,
  trace: Trace | undefined,
) => Ip | undefined

const WALKS: Record<ClientAddressHeader, Walk> = {
  'x-forwarded-for': walkForwardedFor,
  forwarded: walkForwarded,
  'x-real-ip': walkSingle,
  'x-client-ip': walkSingle,
}

export function resolveClient(site: CompiledSite, input: CheckInput, trace?: Trace): Client {
  trace?.chain.push(input.peer)
  const peer = input.peerIp
  if (peer === undefined) return { ip: undefined, peerTrusted: false }
  const peerTrusted = matchCidr(site.trustedProxies, peer)
  const header = site.clientHeader
  if (!peerTrusted || header === undefined) return { ip: peer, peerTrusted }
  const value = input.http?.headers.get(header)
  if (value === undefined) return { ip: peer, peerTrusted }
  if (trace) trace.header = header
  return { ip: WALKS[header](site, value, peer, trace), peerTrusted }
}
