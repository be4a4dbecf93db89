import { type Ip, parseIpRange, parseIpV6Range } from './ip.js'

// Django's `host_validation_re`, /^([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(:\d+)?$/i, matched
// against the whole value (Django's `$` also lets a trailing newline through; a guard should not)
// by the scanner below: sticky regexes for a name, a loop over char codes for a [v6] literal
// (Django's regex is its test oracle in test/property/net.test.ts). It is checked before lower-casing, unlike Django: Unicode
// lower-casing turns U+212A KELVIN SIGN into an ASCII "k", and the backend would see another
// name than the one checked.

const CHAR_HEX = 2 // [a-f0-9], either case
const CHAR_UPPER = 4
/** Character classes of ASCII, by code. */
const CLASS = new Uint8Array(128)
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c)
  if (/[a-f0-9]/i.test(ch)) CLASS[c] = (CLASS[c] ?? 0) | CHAR_HEX
  if (/[A-Z]/.test(ch)) CLASS[c] = (CLASS[c] ?? 0) | CHAR_UPPER
}

const LOWER_NAME_RUN = /[a-z0-9.-]*/y
const NAME_RUN = /[a-z0-9.-]*/iy

function charClass(raw: string, i: number): number {
  const c = raw.charCodeAt(i)
  return c < 128 ? (CLASS[c] as number) : 0
}

/** Whether raw[from, raw.length) is `:` and one or more digits. */
function isPort(raw: string, from: number): boolean {
  if (from + 1 >= raw.length || raw.charCodeAt(from) !== 0x3a /* : */) return false
  for (let i = from + 1; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return false
  }
  return true
}

/**
 * Django's `split_domain_port`: the domain of a Host value, lower-cased, without its port and
 * without one trailing dot; `[v6]` literals keep their brackets. Undefined when the syntax is
 * invalid or the domain is empty, which Django answers with 400.
 */
export function hostDomain(raw: string): string | undefined {
  let upper = false
  let end: number
  if (raw.charCodeAt(0) === 0x5b /* [ */) {
    const close = raw.indexOf(']')
    if (close < 0) return undefined
    // [a-f0-9]* : [a-f0-9.:]+
    let i = 1
    while (i < close && (charClass(raw, i) & CHAR_HEX) !== 0) i++
    if (i >= close - 1 || raw.charCodeAt(i) !== 0x3a /* : */) return undefined
    for (i++; i < close; i++) {
      const c = raw.charCodeAt(i)
      if ((charClass(raw, i) & CHAR_HEX) === 0 && c !== 0x2e && c !== 0x3a) return undefined
    }
    for (let k = 1; k < close; k++) if ((charClass(raw, k) & CHAR_UPPER) !== 0) upper = true
    end = close + 1
    if (end < raw.length && !isPort(raw, end)) return undefined
  } else {
    // Sticky regexes scan in native code, about three times faster than a loop over char codes
    // (a Host may be 260 characters, and a trusted x-forwarded-host holds up to 32 of them).
    // Lower case first (one pass for the usual Host); upper case only where that one stops.
    LOWER_NAME_RUN.lastIndex = 0
    LOWER_NAME_RUN.test(raw)
    let i = LOWER_NAME_RUN.lastIndex
    if (i < raw.length && raw.charCodeAt(i) !== 0x3a /* : */) {
      NAME_RUN.lastIndex = i
      NAME_RUN.test(raw)
      i = NAME_RUN.lastIndex
      upper = true
    }
    if (i === 0 || (i < raw.length && !isPort(raw, i))) return undefined
    end = i
    if (raw.charCodeAt(end - 1) === 0x2e /* . */) end--
  }
  if (end === 0) return undefined
  const domain = end === raw.length ? raw : raw.slice(0, end)
  return upper ? domain.toLowerCase() : domain
}

/** The address a domain names when it is an IP literal (`10.0.12.34`, `[2001:db8::1]`). */
export function hostLiteralIp(domain: string): Ip | undefined {
  if (domain.charCodeAt(0) === 0x5b /* [ */) return parseIpV6Range(domain, 1, domain.length - 1)
  return parseIpRange(domain, 0, domain.length)
}

/**
 * `allowedHosts` compiled once: exact names in a set, `.suffix` patterns in a map from the name
 * after the dot to the pattern. A lookup walks the host's dot positions, but only within the last
 * `longestSuffix + 1` characters and hashes a suffix only when a pattern has its length, so a
 * Host of thousands of labels costs no more than a short one (SPEC "Bounded work").
 */
export interface HostMatcher {
  readonly any: boolean
  readonly exact: ReadonlySet<string>
  readonly suffixes: ReadonlyMap<string, string>
  readonly longestExact: number
  readonly longestSuffix: number
  /** suffixLengths[n] is 1 when some `.suffix` pattern has n characters after its dot. */
  readonly suffixLengths: Uint8Array
}

/** Compiles patterns already checked by the policy loader (lower case, Django syntax). */
export function compileHosts(patterns: readonly string[]): HostMatcher {
  const exact = new Set<string>()
  const suffixes = new Map<string, string>()
  let any = false
  let longestSuffix = 0
  let longestExact = 0
  for (const pattern of patterns) {
    if (pattern === '*') any = true
    else if (pattern.startsWith('.')) {
      suffixes.set(pattern.slice(1), pattern)
      longestSuffix = Math.max(longestSuffix, pattern.length - 1)
    } else {
      exact.add(pattern)
      longestExact = Math.max(longestExact, pattern.length)
    }
  }
  const suffixLengths = new Uint8Array(longestSuffix + 1)
  for (const suffix of suffixes.keys()) suffixLengths[suffix.length] = 1
  // Frozen here, not by compile's deep freeze, which would walk every pattern (strings).
  return Object.freeze({ any, exact, suffixes, longestExact, longestSuffix, suffixLengths })
}

/**
 * Django's `validate_host` on a domain from `hostDomain`: the pattern that matches it, or
 * undefined. `.example.com` matches `example.com` and every name ending in `.example.com`.
 */
export function matchHost(matcher: HostMatcher, domain: string): string | undefined {
  // Hashing a name costs per character: only one that some exact pattern is as long as.
  if (domain.length <= matcher.longestExact && matcher.exact.has(domain)) return domain
  const longest = matcher.longestSuffix
  if (longest > 0) {
    const n = domain.length
    if (n <= longest && matcher.suffixLengths[n] === 1) {
      const apex = matcher.suffixes.get(domain)
      if (apex !== undefined) return apex
    }
    // A dot further left has a suffix longer than any pattern's.
    for (let dot = domain.indexOf('.', Math.max(0, n - longest - 1)); dot >= 0; ) {
      const length = n - dot - 1
      if (matcher.suffixLengths[length] === 1) {
        const pattern = matcher.suffixes.get(domain.slice(dot + 1))
        if (pattern !== undefined) return pattern
      }
      dot = domain.indexOf('.', dot + 1)
    }
  }
  return matcher.any ? '*' : undefined
}
