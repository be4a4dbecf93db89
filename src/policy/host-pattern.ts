// `allowedHosts` patterns (Django's ALLOWED_HOSTS): each checked to be one that some Host can
// match, since the port and a trailing dot are removed from the Host before matching.

import type { PolicyErrorCode } from './errors.js'
import { type LoadContext, report, type Value } from './yaml-nodes.js'

const DOMAIN = /^[a-z0-9.-]+$/i
const BRACKETED_V6 = /^\[[a-f0-9]*:[a-f0-9.:]+\]$/i

/** One `allowedHosts` pattern, lower-cased; undefined (reported) when it can never match. */
export function hostPattern(
  ctx: LoadContext,
  node: Value,
  field: string,
  raw: string,
): string | undefined {
  const pattern = raw.trim().toLowerCase()
  const fail = (code: PolicyErrorCode, detail: string): undefined => {
    report(ctx, code, node, field, detail)
    return undefined
  }
  if (pattern === '')
    return fail('POLICY_HOST_PATTERN_EMPTY', 'an empty host pattern matches nothing')
  // Checked before lower-casing matters: U+212A (KELVIN SIGN) lower-cases to an ASCII "k".
  if (!/^[\x21-\x7e]+$/.test(raw.trim())) {
    return fail(
      'POLICY_HOST_PATTERN_INVALID',
      `"${raw}" never matches: a Host is ASCII (write names in punycode)`,
    )
  }
  if (pattern === '*') return pattern
  if (pattern.startsWith('*.')) {
    return fail(
      'POLICY_HOST_PATTERN_WILDCARD',
      `"${raw}" is not a pattern Django matches; use "${pattern.slice(1)}" for the domain and all its subdomains`,
    )
  }
  const body = pattern.startsWith('.') ? pattern.slice(1) : pattern
  if (!body.startsWith('[') && (body.match(/:/g)?.length ?? 0) >= 2) {
    return fail(
      'POLICY_HOST_PATTERN_IPV6_UNBRACKETED',
      `"${raw}": write an IPv6 address in brackets, as in a Host header: "[${body}]"`,
    )
  }
  const port = /^(.*[^:]):[0-9]+$/.exec(body)
  if (port && (DOMAIN.test(port[1] ?? '') || BRACKETED_V6.test(port[1] ?? ''))) {
    return fail(
      'POLICY_HOST_PATTERN_PORT',
      `"${raw}" never matches: the port is removed from the Host before matching; use "${pattern.slice(0, pattern.length - body.length)}${port[1]}"`,
    )
  }
  if (!DOMAIN.test(body) && !BRACKETED_V6.test(body)) {
    return fail(
      'POLICY_HOST_PATTERN_INVALID',
      `"${raw}" never matches: a host is letters, digits, "." and "-", or an IPv6 literal in brackets`,
    )
  }
  if (body === '' || body === '.')
    return fail('POLICY_HOST_PATTERN_INVALID', `"${raw}" never matches a host`)
  if (body.endsWith('.')) {
    return fail(
      'POLICY_HOST_PATTERN_TRAILING_DOT',
      `"${raw}" never matches: the trailing dot is removed from the Host before matching; use "${pattern.slice(0, -1)}"`,
    )
  }
  return pattern
}
