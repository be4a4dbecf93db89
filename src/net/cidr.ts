import { formatIp, type Ip } from './ip.js'

/** A range as written in a policy: an address and a prefix length (32 or 128 for one address). */
export interface CidrRange {
  readonly ip: Ip
  readonly prefix: number
  /** Where a dynamic source's range came from, for `explain` (`k8s:nodes → node ip-10-0-12-34`). */
  readonly origin?: string
}

/**
 * Ranges compiled once into sorted, merged, non-overlapping intervals, so that a lookup is one
 * binary search with no allocation, however many entries the policy holds.
 * IPv4 and IPv6 are separate spaces (SPEC "Addresses"): an IPv6 range holds IPv6 addresses only,
 * so `::/0` or `::/1` never holds an IPv4 peer (proxy-addr 2.0.7's CVE-2026-90711). A range written
 * in mapped form, `::ffff:a.b.c.d/n` with n >= 96, is an IPv4 range by the time it gets here, and
 * a mapped address is folded into IPv4 when it is parsed.
 */
export interface CidrMatcher {
  /** The ranges as compiled, for `explain` to name the one that matched. */
  readonly ranges: readonly CidrRange[]
  readonly size: number
  /** [start0, end0, start1, end1, …] */
  readonly v4: Float64Array
  /** Four words a bound: [start0 w0..w3, end0 w0..w3, start1 …] */
  readonly v6: Uint32Array
}

const TWO_32 = 2 ** 32

function v4Interval(value: number, prefix: number): [number, number] {
  const size = 2 ** (32 - prefix)
  const start = Math.floor(value / size) * size
  return [start, start + size - 1]
}

function toBig(words: readonly number[]): bigint {
  let n = 0n
  for (const w of words) n = (n << 32n) | BigInt(w >>> 0)
  return n
}

function toWords(n: bigint): number[] {
  return [
    Number((n >> 96n) & 0xffffffffn),
    Number((n >> 64n) & 0xffffffffn),
    Number((n >> 32n) & 0xffffffffn),
    Number(n & 0xffffffffn),
  ]
}

function merge<T extends number | bigint>(intervals: [T, T][], successor: (x: T) => T): [T, T][] {
  intervals.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  const merged: [T, T][] = []
  for (const [start, end] of intervals) {
    const last = merged.at(-1)
    // Adjacent intervals merge too: [a, b] and [b + 1, c] are [a, c].
    if (last && start <= successor(last[1])) {
      if (end > last[1]) last[1] = end
    } else {
      merged.push([start, end])
    }
  }
  return merged
}

/** The mask of the `bits` high bits of a 32-bit word (0 to 32). */
function highBits(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0
}

/** The first address of ip/prefix: the address with its host bits cleared. */
export function networkAddress(ip: Ip, prefix: number): Ip {
  if (ip.family === 4) return { family: 4, value: (ip.value & highBits(prefix)) >>> 0 }
  const [w0, w1, w2, w3] = ip.words
  return {
    family: 6,
    words: [
      (w0 & highBits(prefix)) >>> 0,
      (w1 & highBits(prefix - 32)) >>> 0,
      (w2 & highBits(prefix - 64)) >>> 0,
      (w3 & highBits(prefix - 96)) >>> 0,
    ],
  }
}

/** The same address (an IPv4 address and its mapped IPv6 form are both folded to IPv4). */
export function sameIp(a: Ip, b: Ip): boolean {
  if (a.family === 4) return b.family === 4 && a.value === b.value
  return b.family === 6 && a.words.every((w, k) => w === b.words[k])
}

export function compileCidrs(ranges: readonly CidrRange[]): CidrMatcher {
  const v4: [number, number][] = []
  const v6: [bigint, bigint][] = []
  for (const { ip, prefix } of ranges) {
    if (ip.family === 4) {
      v4.push(v4Interval(ip.value, prefix))
      continue
    }
    const hostBits = BigInt(128 - prefix)
    const start = (toBig(ip.words) >> hostBits) << hostBits
    const end = start + (1n << hostBits) - 1n
    v6.push([start, end])
  }
  const mergedV4 = merge(v4, (x) => x + 1)
  const mergedV6 = merge(v6, (x) => x + 1n)
  const v6Words = new Uint32Array(mergedV6.length * 8)
  mergedV6.forEach(([start, end], i) => {
    v6Words.set(toWords(start), i * 8)
    v6Words.set(toWords(end), i * 8 + 4)
  })
  // Frozen here, not by compile's deep freeze: walking into the ranges (the spec's own objects,
  // read only by explain) to freeze each took a third of compiling a 10,000-entry list.
  return Object.freeze({
    ranges,
    size: ranges.length,
    v4: Float64Array.from(mergedV4.flat()),
    v6: v6Words,
  })
}

function inV4(table: Float64Array, value: number): boolean {
  let lo = 0
  let hi = (table.length >>> 1) - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const start = table[mid * 2] ?? TWO_32
    const end = table[mid * 2 + 1] ?? -1
    if (value < start) hi = mid - 1
    else if (value > end) lo = mid + 1
    else return true
  }
  return false
}

/** Compares the address words with the bound at table[offset..offset+3]. */
function compareV6(table: Uint32Array, offset: number, words: readonly number[]): number {
  for (let k = 0; k < 4; k++) {
    const a = words[k] ?? 0
    const b = table[offset + k] ?? 0
    if (a !== b) return a < b ? -1 : 1
  }
  return 0
}

function inV6(table: Uint32Array, words: readonly number[]): boolean {
  let lo = 0
  let hi = (table.length >>> 3) - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (compareV6(table, mid * 8, words) < 0) hi = mid - 1
    else if (compareV6(table, mid * 8 + 4, words) > 0) lo = mid + 1
    else return true
  }
  return false
}

/** The families whose every address the ranges hold (all of IPv4, all of IPv6, or both). */
export function familiesCovered(matcher: CidrMatcher): ('IPv4' | 'IPv6')[] {
  const out: ('IPv4' | 'IPv6')[] = []
  const { v4, v6 } = matcher
  if (v4.length === 2 && v4[0] === 0 && v4[1] === TWO_32 - 1) out.push('IPv4')
  const all = (from: number, word: number) => v6.subarray(from, from + 4).every((w) => w === word)
  if (v6.length === 8 && all(0, 0) && all(4, 0xffffffff)) out.push('IPv6')
  return out
}

export function matchCidr(matcher: CidrMatcher, ip: Ip): boolean {
  return ip.family === 4 ? inV4(matcher.v4, ip.value) : inV6(matcher.v6, ip.words)
}

/** The first listed range that holds `ip`, as text (slow: for `explain`, not for requests). */
export function matchingRange(matcher: CidrMatcher, ip: Ip): string | undefined {
  const range = matcher.ranges.find((r) => matchCidr(compileCidrs([r]), ip))
  if (!range) return undefined
  const cidr = `${formatIp(range.ip)}/${range.prefix}`
  return range.origin ? `${range.origin} (${cidr})` : cidr
}

export function sameRanges(a: readonly CidrRange[], b: readonly CidrRange[]): boolean {
  return (
    a.length === b.length &&
    a.every((r, i) => {
      const other = b[i] as CidrRange
      return r.prefix === other.prefix && r.origin === other.origin && sameIp(r.ip, other.ip)
    })
  )
}
