// Step 3 of SPEC's evaluation order, first half: who the client is. Forwarding headers are
// believed only from a trusted peer, and only the one client-address header the site trusts.

import { matchCidr } from '../net/cidr.js'
import {
  forwardedElementStart,
  MAX_CHAIN_ENTRY,
  owsEnd,
  owsStart,
  parseForwardedElement,
  parseNode,
} from '../net/forwarding.js'
import type { Ip } from '../net/ip.js'
import type { Client, ClientAddressHeader, CompiledSite, RequestInput, Trace } from './types.js'

/**
 * How one client-address header lists its entries. `entryStart` finds where the entry ending at
 * `end` begins, scanning no further left than `floor` (-1 when it begins before it); `node` reads
 * value[start, end): the address, EMPTY for an element to skip, undefined for a non-address.
 */
interface ChainSyntax {
  entryStart(value: string, end: number, floor: number): number
  node(value: string, start: number, end: number, trace: Trace | undefined): Ip | undefined | null
}

/** An empty element, skipped by the walk. */
const EMPTY = null

/** `x-forwarded-for`: comma-separated nodes; empty elements are skipped. */
const FORWARDED_FOR: ChainSyntax = {
  entryStart(value, end, floor) {
    const start = end > 0 ? value.lastIndexOf(',', end - 1) + 1 : 0
    return start < floor ? -1 : start
  },
  node(value, start, end, trace) {
    const s = owsStart(value, start, end)
    const e = owsEnd(value, s, end)
    if (s === e) return EMPTY
    trace?.chain.push(value.slice(s, e))
    return parseNode(value, s, e, true)
  },
}

/** RFC 7239 `Forwarded`: each element's `for=` node; a malformed element is a non-address. */
const FORWARDED: ChainSyntax = {
  entryStart: forwardedElementStart,
  node(value, start, end, trace) {
    const element = parseForwardedElement(value, start, end)
    if (element === undefined) return EMPTY
    const node = element.for
    trace?.chain.push(element.malformed ? '(malformed element)' : (node ?? '(no for=)'))
    return node === undefined ? undefined : parseNode(node, 0, node.length, false, true)
  },
}

/** `x-real-ip`, `x-client-ip`: one address, the whole value; a list is not an address. */
const SINGLE: ChainSyntax = {
  entryStart: (_value, _end, floor) => (floor > 0 ? -1 : 0),
  node: FORWARDED_FOR.node,
}

const SYNTAX: Record<ClientAddressHeader, ChainSyntax> = {
  'x-forwarded-for': FORWARDED_FOR,
  forwarded: FORWARDED,
  'x-real-ip': SINGLE,
  'x-client-ip': SINGLE,
}

/** Where the last walk's entries begin (Client.walkedFrom): set by walkChain, read at once. */
let walkedFrom = 0

/**
 * The one client walk (proxy-addr's shape): from the peer leftwards, the first address that is
 * not a trusted proxy; the leftmost when all are. Only the entries walked are read and counted
 * against the limits, so what a client puts left of its own address cannot move the walk.
 * Undefined (client unknown) at a non-address or when a limit is reached first.
 */
function walkChain(
  site: CompiledSite,
  syntax: ChainSyntax,
  value: string,
  peer: Ip,
  trace: Trace | undefined,
): Ip | undefined {
  const floor = Math.max(0, value.length - site.limits.maxHeaderBytes)
  let leftmost = peer
  let end = value.length
  let hops = 0
  for (;;) {
    const start = syntax.entryStart(value, end, floor)
    walkedFrom = Math.max(0, start)
    // The entry reaches past --max-header-bytes, or is longer than any address with its padding.
    if (start < 0 || end - start > MAX_CHAIN_ENTRY) return undefined
    // Every entry walked was a trusted proxy (or empty: `,,,` costs a step each as well): a
    // longer chain than any real one, client unknown.
    if (++hops > site.limits.maxForwardedHops) return undefined
    const ip = syntax.node(value, start, end, trace)
    if (ip !== EMPTY) {
      if (ip === undefined) return undefined
      if (!matchCidr(site.trustedProxies, ip)) return ip
      leftmost = ip
    }
    if (start === 0) return leftmost
    end = start - 1
  }
}

export function resolveClient(site: CompiledSite, input: RequestInput, trace?: Trace): Client {
  trace?.chain.push(input.peer)
  const peer = input.peerIp
  if (peer === undefined) return { ip: undefined, peerTrusted: false, walkedFrom: 0 }
  const peerTrusted = matchCidr(site.trustedProxies, peer)
  const header = site.clientHeader
  if (!peerTrusted || header === undefined) return { ip: peer, peerTrusted, walkedFrom: 0 }
  const value = input.http?.headers.get(header)
  if (value === undefined) return { ip: peer, peerTrusted, walkedFrom: 0 }
  if (trace) trace.header = header
  const ip = walkChain(site, SYNTAX[header], value, peer, trace)
  return { ip, peerTrusted, walkedFrom }
}
