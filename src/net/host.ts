import { type Ip, parseIpRange, parseIpV6Range } from './ip.js'

// Django's `host_validation_re`, matched against the whole value (Django's `$` also lets a
// trailing newline through; a guard should not). It is matched before lower-casing, unlike
// Django: Unicode lower-casing turns U+212A KELVIN SIGN into an ASCII "k", and the backend would
// see another name than the one checked.
const HOST_SYNTAX = /^(?:[a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::[0-9]+)?$/i

/**
 * Django's `split_domain_port`: the domain of a Host value, lower-cased, without its port and
 * without one trailing dot; `[v6]` literals keep their brackets. Undefined when the syntax is
 * invalid or the domain is empty, which Django answers with 400.
 */
export function hostDomain(raw: string): string | undefined {
  if (!HOST_SYNTAX.test(raw)) return undefined
  const host = raw.toLowerCase()
  let end = host.length
  if (host.charCodeAt(end - 1) !== 0x5d /* ] */) {
    const colon = host.lastIndexOf(':')
    if (colon >= 0) end = colon
    if (end > 0 && host.charCodeAt(end - 1) === 0x2e /* . */) end--
  }
  return end === 0 ? undefined : host.slice(0, end)
}

/** The address a domain names when it is an IP literal (`10.0.12.34`, `[2001:db8::1]`). */
export function hostLiteralIp(domain: string): Ip | undefined {
  if (domain.charCodeAt(0) === 0x5b /* [ */) return parseIpV6Range(domain, 1, domain.length - 1)
  return parseIpRange(domain, 0, domain.length)
}

/**
 * `allowedHosts` compiled once: exact names in a set, `.suffix` patterns in a map from the name
 * after the dot to the pattern, so a lookup walks the host's dot positions instead of every pattern.
 */
export interface HostMatcher {
  readonly any: boolean
  readonly exact: ReadonlySet<string>
  readonly suffixes: ReadonlyMap<string, string>
}

/** Compiles patterns already checked by the policy loader (lower case, Django syntax). */
export function compileHosts(patterns: readonly string[]): HostMatcher {
  const exact = new Set<string>()
  const suffixes = new Map<string, string>()
  let any = false
  for (const pattern of patterns) {
    if (pattern === '*') any = true
    else if (pattern.startsWith('.')) suffixes.set(pattern.slice(1), pattern)
    else exact.add(pattern)
  }
  return { any, exact, suffixes }
}

/**
 * Django's `validate_host` on a domain from `hostDomain`: the pattern that matches it, or
 * undefined. `.example.com` matches `example.com` and every name ending in `.example.com`.
 */
export function matchHost(matcher: HostMatcher, domain: string): string | undefined {
  if (matcher.exact.has(domain)) return domain
  if (matcher.suffixes.size > 0) {
    const apex = matcher.suffixes.get(domain)
    if (apex !== undefined) return apex
    for (let dot = domain.indexOf('.'); dot >= 0; dot = domain.indexOf('.', dot + 1)) {
      const pattern = matcher.suffixes.get(domain.slice(dot + 1))
      if (pattern !== undefined) return pattern
    }
  }
  return matcher.any ? '*' : undefined
}
