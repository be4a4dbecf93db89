// A CompiledPolicy sent from the load worker to the main thread. Structured clone copies it
// whole, but the main thread pays for every object it rebuilds: for the 10,000 + 10,000 policy,
// the ranges of the CIDR matchers (kept only for `explain` to name a match) took 26 ms of
// deserialising against 2 ms for the rest (measured with v8.deserialize). So each matcher's
// ranges travel as one typed array and are rebuilt only when read; Buffers, which arrive as
// Uint8Arrays, become Buffers again over the same memory. Host patterns travel as one string per
// matcher and are put into their Set and Map a slice at a time, yielding to the event loop in
// between: building the 10,000-pattern matcher at once held the thread for milliseconds, and
// every Check due meanwhile waited (bench: "Check latency during reloads").

import type { CompiledPolicy, CompiledSite } from '../decision/types.js'
import type { CidrMatcher, CidrRange } from '../net/cidr.js'
import type { HostMatcher } from '../net/host.js'
import type { Ip } from '../net/ip.js'
import { deepFreeze } from './compile.js'

/** A CidrMatcher with its ranges packed: per range, family, four words (or value) and prefix. */
interface PackedMatcher {
  readonly size: number
  readonly v4: Float64Array
  readonly v6: Uint32Array
  readonly words: Uint32Array
  /** Each range's origin, joined with NUL ("" for none); undefined when no range has one. */
  readonly origins: string | undefined
}

/** A HostMatcher with its patterns joined by newlines (a pattern is printable ASCII). */
interface PackedHosts {
  readonly any: boolean
  readonly exact: string
  /** The `.suffix` patterns, with their dots. */
  readonly suffixes: string
  readonly longestExact: number
  readonly longestSuffix: number
  readonly suffixLengths: Uint8Array
}

const MATCHER_FIELDS = ['trustedProxies', 'allowedCidrNets', 'clientAllow', 'clientDeny'] as const
const WORDS = 6
/** Patterns added between two yields to the event loop (about 0.1 ms of work). */
const HOSTS_PER_SLICE = 1000

/** The policy as posted: CompiledPolicy with PackedMatcher in place of each CidrMatcher. */
export type PackedPolicy = { readonly packed: CompiledPolicy }

function packMatcher(m: CidrMatcher): PackedMatcher {
  const words = new Uint32Array(m.ranges.length * WORDS)
  let anyOrigin = false
  m.ranges.forEach((r, i) => {
    const at = i * WORDS
    words[at] = r.ip.family
    if (r.ip.family === 4) words[at + 1] = r.ip.value
    else words.set(r.ip.words, at + 1)
    words[at + 5] = r.prefix
    if (r.origin !== undefined) anyOrigin = true
  })
  return {
    size: m.size,
    v4: m.v4,
    v6: m.v6,
    words,
    origins: anyOrigin ? m.ranges.map((r) => r.origin ?? '').join('\0') : undefined,
  }
}

function unpackRanges(p: PackedMatcher): CidrRange[] {
  const origins = p.origins?.split('\0')
  const out: CidrRange[] = []
  for (let at = 0, i = 0; at < p.words.length; at += WORDS, i++) {
    const ip: Ip =
      p.words[at] === 4
        ? { family: 4, value: p.words[at + 1] as number }
        : {
            family: 6,
            words: [
              p.words[at + 1] as number,
              p.words[at + 2] as number,
              p.words[at + 3] as number,
              p.words[at + 4] as number,
            ],
          }
    const prefix = p.words[at + 5] as number
    const origin = origins?.[i]
    out.push(origin ? { ip, prefix, origin } : { ip, prefix })
  }
  return out
}

function unpackMatcher(p: PackedMatcher): CidrMatcher {
  let ranges: readonly CidrRange[] | undefined
  const matcher = { size: p.size, v4: p.v4, v6: p.v6 } as CidrMatcher
  Object.defineProperty(matcher, 'ranges', {
    enumerable: true,
    get: () => {
      ranges ??= Object.freeze(unpackRanges(p))
      return ranges
    },
  })
  return Object.freeze(matcher)
}

function packHosts(m: HostMatcher): PackedHosts {
  return {
    any: m.any,
    exact: [...m.exact].join('\n'),
    suffixes: [...m.suffixes.values()].join('\n'),
    longestExact: m.longestExact,
    longestSuffix: m.longestSuffix,
    suffixLengths: m.suffixLengths,
  }
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Calls `add` with each newline-separated pattern of `joined`, yielding every slice. */
async function eachPattern(joined: string, add: (pattern: string) => void): Promise<void> {
  let n = 0
  for (let from = 0; from < joined.length; ) {
    let end = joined.indexOf('\n', from)
    if (end < 0) end = joined.length
    add(joined.slice(from, end))
    from = end + 1
    if (++n % HOSTS_PER_SLICE === 0) await nextTurn()
  }
}

async function unpackHosts(p: PackedHosts): Promise<HostMatcher> {
  const exact = new Set<string>()
  const suffixes = new Map<string, string>()
  await eachPattern(p.exact, (pattern) => exact.add(pattern))
  await eachPattern(p.suffixes, (pattern) => suffixes.set(pattern.slice(1), pattern))
  // The shape compileHosts gives, frozen as it is there.
  return Object.freeze({
    any: p.any,
    exact,
    suffixes,
    longestExact: p.longestExact,
    longestSuffix: p.longestSuffix,
    suffixLengths: p.suffixLengths,
  })
}

/** What the worker posts; a matcher shared by sites is packed once (clone keeps the sharing). */
export function packPolicy(policy: CompiledPolicy): PackedPolicy {
  const hosts = new Map<HostMatcher, PackedHosts>()
  const packed = new Map<CidrMatcher, PackedMatcher>()
  const once = (m: CidrMatcher | undefined) => {
    if (m === undefined) return undefined
    let p = packed.get(m)
    if (!p) {
      p = packMatcher(m)
      packed.set(m, p)
    }
    return p
  }
  const site = (s: CompiledSite) => {
    const out: Record<string, unknown> = { ...s }
    for (const field of MATCHER_FIELDS) out[field] = once(s[field])
    let h = hosts.get(s.allowedHosts)
    if (!h) {
      h = packHosts(s.allowedHosts)
      hosts.set(s.allowedHosts, h)
    }
    out['allowedHosts'] = h
    return out as unknown as CompiledSite
  }
  const sites = new Map<string, CompiledSite>()
  for (const [name, s] of policy.sites) sites.set(name, site(s))
  return {
    packed: {
      top: site(policy.top),
      sites,
      headerNames: policy.headerNames,
      // Maps of arrays of strings: the clone carries them as they are.
      httpHeaderNames: policy.httpHeaderNames,
    },
  }
}

/** Buffers arrive as plain Uint8Arrays: views of the same bytes as Buffers again. */
function restoreBuffers(value: unknown): unknown {
  if (value instanceof Uint8Array)
    return Buffer.isBuffer(value)
      ? value
      : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) return value
  if (value instanceof Map) {
    for (const [k, v] of value) value.set(k, restoreBuffers(v))
  } else if (!(value instanceof Set)) {
    const record = value as Record<string, unknown>
    for (const k of Object.keys(record)) record[k] = restoreBuffers(record[k])
  }
  return value
}

/** The policy the main thread installs, from what the worker posted (structured-cloned). */
export async function unpackPolicy({ packed }: PackedPolicy): Promise<CompiledPolicy> {
  const matchers = new Map<PackedMatcher, CidrMatcher>()
  const hosts = new Map<PackedHosts, HostMatcher>()
  const site = async (s: CompiledSite): Promise<CompiledSite> => {
    const out = s as unknown as Record<string, unknown>
    for (const field of MATCHER_FIELDS) {
      const p = out[field] as PackedMatcher | undefined
      if (p === undefined) continue
      let m = matchers.get(p)
      if (!m) {
        m = unpackMatcher(p)
        matchers.set(p, m)
      }
      out[field] = m
    }
    const p = out['allowedHosts'] as PackedHosts
    let h = hosts.get(p)
    if (!h) {
      h = await unpackHosts(p)
      hosts.set(p, h)
    }
    out['allowedHosts'] = h
    // The gRPC answers: Maps of a few small Buffers.
    restoreBuffers(s.grpc)
    restoreBuffers(s.healthCheck)
    return s
  }
  await site(packed.top)
  for (const s of packed.sites.values()) await site(s)
  restoreBuffers(packed.headerNames)
  return deepFreeze(packed)
}
