// One strict address syntax for everything hostguard reads (SPEC "Addresses"): IPv4 is four
// decimal parts 0-255 without leading zeros; IPv6 is RFC 4291 text without a zone id. Legacy
// spellings (`010.0.0.1`, `0x0a.0.0.1`, `167772161`, `10.1`) are not addresses: libc, npm
// `netmask` and proxy-addr read them differently, and a guard must not guess.

/** An IPv4 address as an unsigned 32-bit number; IPv4-mapped IPv6 is folded into this form. */
interface IpV4 {
  readonly family: 4
  readonly value: number
}

/** An IPv6 address as four unsigned 32-bit words, most significant first. */
interface IpV6 {
  readonly family: 6
  readonly words: readonly [number, number, number, number]
}

export type Ip = IpV4 | IpV6

/**
 * Text to parse: a string, or the bytes of a request (the peer address is parsed where it lies in
 * the CheckRequest, without making a string). Any non-ASCII character or byte is invalid in an
 * address, so char codes and bytes give the same answers.
 */
export type AddressText = string | Uint8Array

function codeAt(text: AddressText, i: number): number {
  return typeof text === 'string' ? text.charCodeAt(i) : (text[i] ?? -1)
}

const DOT = 0x2e
const COLON = 0x3a
const ZERO = 0x30
const NINE = 0x39

/** Parses dotted-quad text between start and end as a uint32, or -1 when it is not strict IPv4. */
function parseV4Value(text: AddressText, start: number, end: number): number {
  let value = 0
  let parts = 0
  let i = start
  while (parts < 4) {
    const partStart = i
    let part = 0
    while (i < end) {
      const c = codeAt(text, i)
      if (c < ZERO || c > NINE) break
      part = part * 10 + (c - ZERO)
      i++
    }
    const digits = i - partStart
    if (digits === 0 || digits > 3 || part > 255) return -1
    if (digits > 1 && codeAt(text, partStart) === ZERO) return -1
    value = value * 256 + part
    parts++
    if (parts < 4) {
      if (i >= end || codeAt(text, i) !== DOT) return -1
      i++
    }
  }
  return i === end ? value : -1
}

function hexDigit(c: number): number {
  if (c >= ZERO && c <= NINE) return c - ZERO
  const lower = c | 0x20
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10
  return -1
}

/**
 * Parses RFC 4291 text between start and end into eight 16-bit groups, or returns false.
 * Groups are 1-4 hex digits; one `::` stands for one or more zero groups; a dotted IPv4 tail
 * (strict) may take the last two groups.
 */
function parseV6Groups(
  text: AddressText,
  start: number,
  end: number,
  groups: Uint16Array,
): boolean {
  let count = 0
  let gap = -1
  let i = start
  if (i < end && codeAt(text, i) === COLON) {
    if (i + 1 >= end || codeAt(text, i + 1) !== COLON) return false
    gap = 0
    i += 2
    if (i === end) {
      groups.fill(0)
      return true
    }
  }
  while (i < end) {
    if (count === 8) return false
    const groupStart = i
    let group = 0
    while (i < end && i - groupStart < 5) {
      const d = hexDigit(codeAt(text, i))
      if (d < 0) break
      group = group * 16 + d
      i++
    }
    const digits = i - groupStart
    if (i < end && codeAt(text, i) === DOT) {
      // A dotted IPv4 tail: only as the last thing in the address, filling two groups.
      if (count > 6) return false
      const v4 = parseV4Value(text, groupStart, end)
      if (v4 < 0) return false
      groups[count++] = v4 >>> 16
      groups[count++] = v4 & 0xffff
      i = end
      break
    }
    if (digits === 0 || digits > 4) return false
    groups[count++] = group
    if (i === end) break
    if (codeAt(text, i) !== COLON) return false
    i++
    if (i < end && codeAt(text, i) === COLON) {
      if (gap >= 0) return false
      gap = count
      i++
      if (i === end) break
    } else if (i === end) {
      return false
    }
  }
  if (gap < 0) return count === 8
  if (count > 7) return false
  const tail = count - gap
  for (let k = 0; k < tail; k++) groups[7 - k] = groups[count - 1 - k] ?? 0
  for (let k = gap; k < 8 - tail; k++) groups[k] = 0
  return true
}

const scratch = new Uint16Array(8)

function fromGroups(g: Uint16Array): Ip {
  const w0 = ((g[0] ?? 0) * 0x10000 + (g[1] ?? 0)) >>> 0
  const w1 = ((g[2] ?? 0) * 0x10000 + (g[3] ?? 0)) >>> 0
  const w2 = ((g[4] ?? 0) * 0x10000 + (g[5] ?? 0)) >>> 0
  const w3 = ((g[6] ?? 0) * 0x10000 + (g[7] ?? 0)) >>> 0
  // ::ffff:a.b.c.d is that IPv4 address for every match (SPEC "Addresses").
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) return { family: 4, value: w3 }
  return { family: 6, words: [w0, w1, w2, w3] }
}

/** Parses text[start, end) as a strict IPv4 or IPv6 address. */
export function parseIpRange(text: AddressText, start: number, end: number): Ip | undefined {
  if (end - start > 45 || end <= start) return undefined
  for (let i = start; i < end; i++) {
    if (codeAt(text, i) === COLON) {
      return parseV6Groups(text, start, end, scratch) ? fromGroups(scratch) : undefined
    }
  }
  const value = parseV4Value(text, start, end)
  return value < 0 ? undefined : { family: 4, value }
}

/** Parses a whole string as a strict IPv4 or IPv6 address. */
export function parseIp(text: string): Ip | undefined {
  return parseIpRange(text, 0, text.length)
}

/** Parses strict IPv6 text only (no folding decision is made here: mapped forms fold to IPv4). */
export function parseIpV6Range(text: AddressText, start: number, end: number): Ip | undefined {
  if (end - start > 45 || end <= start) return undefined
  return parseV6Groups(text, start, end, scratch) ? fromGroups(scratch) : undefined
}

function formatV4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 0xff}.${(value >>> 8) & 0xff}.${value & 0xff}`
}

const formatGroups = new Uint16Array(8)

/** RFC 5952 text: lower case, longest run (>= 2) of zero groups as `::`, IPv4 as dotted quad. */
export function formatIp(ip: Ip): string {
  if (ip.family === 4) return formatV4(ip.value)
  const groups = formatGroups
  for (let k = 0; k < 4; k++) {
    const w = ip.words[k] ?? 0
    groups[k * 2] = w >>> 16
    groups[k * 2 + 1] = w & 0xffff
  }
  let bestStart = -1
  let bestLength = 1
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  // A loop rather than slice/map/join: this runs for every IPv6 client of a request.
  let out = ''
  const headEnd = bestStart < 0 ? 8 : bestStart
  for (let i = 0; i < headEnd; i++) out += i === 0 ? hex4(groups[i]) : `:${hex4(groups[i])}`
  if (bestStart < 0) return out
  out += '::'
  for (let i = bestStart + bestLength; i < 8; i++)
    out += i === bestStart + bestLength ? hex4(groups[i]) : `:${hex4(groups[i])}`
  return out
}

function hex4(group: number | undefined): string {
  return (group ?? 0).toString(16)
}
