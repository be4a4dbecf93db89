// SPEC's evaluation order, one function a step; the first step that decides wins.

import { timingSafeEqual } from 'node:crypto'
import { matchCidr } from '../net/cidr.js'
import { parseForwarded } from '../net/forwarding.js'
import { hostDomain, hostLiteralIp, matchHost } from '../net/host.js'
import type { CompiledPolicy, CompiledSite } from '../policy/compile.js'
import type { CheckInput, Client, Decision, HttpInput, Mode, Reason } from './types.js'

const ALLOW_REASONS: ReadonlySet<Reason> = new Set([
  'health_check',
  'host_allowed',
  'host_cidr',
  'tcp_client_allowed',
])

/** The HTTP status of a deny: invalid Host syntax and unreadable requests are always 400. */
export function denyStatusFor(reason: Reason, siteStatus: number): number {
  return reason === 'invalid_host' || reason === 'invalid_request' ? 400 : siteStatus
}

export function isAllowReason(reason: Reason): boolean {
  return ALLOW_REASONS.has(reason)
}

/** A request hostguard cannot read is not a policy decision: dry run does not wave it through. */
export function modeFor(dryRun: boolean, reason: Reason): Mode {
  return dryRun && reason !== 'invalid_request' ? 'dry_run' : 'enforce'
}

/** The one factory for decisions, so every Decision has the same shape. */
export function decide(site: CompiledSite, client: Client, reason: Reason): Decision {
  const allowed = ALLOW_REASONS.has(reason)
  return {
    site,
    client,
    reason,
    allowed,
    status: allowed ? 0 : denyStatusFor(reason, site.denyStatus),
    mode: modeFor(site.dryRun, reason),
  }
}

/** 1. The site named by `context_extensions.site`, the top level when none; undefined if unknown. */
export function selectSite(policy: CompiledPolicy, input: CheckInput): CompiledSite | undefined {
  return input.site === undefined ? policy.top : policy.sites.get(input.site)
}

/** 2. The health-check header carries the secret (constant-time) on an allowed path. */
function isHealthCheck(site: CompiledSite, http: HttpInput): boolean {
  const check = site.healthCheck
  if (!check) return false
  const value = http.headers.get(check.header)
  if (value === undefined) return false
  if (check.paths && !check.paths.has(http.path)) return false
  const given = Buffer.from(value, 'utf8')
  // Compare equal lengths only: timingSafeEqual throws otherwise, and the length is no secret.
  if (given.length !== check.secret.length) return false
  return timingSafeEqual(given, check.secret)
}

/** 3. `clientCidrs` on the resolved client; undefined when the client may go on. */
function clientReason(site: CompiledSite, client: Client): Reason | undefined {
  const ip = client.ip
  if (ip && site.clientDeny && matchCidr(site.clientDeny, ip)) return 'client_denied'
  if (site.clientAllow && (!ip || !matchCidr(site.clientAllow, ip))) return 'client_not_allowed'
  return undefined
}

/** 4, for one Host value: Django's split and match, then `allowedCidrNets` for IP literals. */
function hostReason(site: CompiledSite, raw: string): Reason {
  const domain = hostDomain(raw)
  if (domain === undefined) return 'invalid_host'
  if (matchHost(site.allowedHosts, domain) !== undefined) return 'host_allowed'
  if (site.allowedCidrNets.size > 0) {
    const ip = hostLiteralIp(domain)
    if (ip && matchCidr(site.allowedCidrNets, ip)) return 'host_cidr'
  }
  return 'host_not_allowed'
}

/** Every host must pass; the worst reason wins (invalid syntax, then not allowed). */
function hostsReason(site: CompiledSite, hosts: readonly string[]): Reason {
  let result: Reason = 'host_allowed'
  for (const raw of hosts) {
    const reason = hostReason(site, raw)
    if (reason === 'invalid_host') return reason
    if (reason === 'host_not_allowed') result = reason
    else if (reason === 'host_cidr' && result === 'host_allowed') result = reason
  }
  return result
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09
}

/** x-forwarded-host elements, trimmed; an empty element stays empty and is an invalid host. */
function splitList(value: string): string[] {
  const out: string[] = []
  let start = 0
  for (;;) {
    const comma = value.indexOf(',', start)
    let s = start
    let e = comma < 0 ? value.length : comma
    while (s < e && isOws(value.charCodeAt(s))) s++
    while (e > s && isOws(value.charCodeAt(e - 1))) e--
    out.push(value.slice(s, e))
    if (comma < 0) return out
    start = comma + 1
  }
}

/**
 * 4. The hosts to check: from the trusted host header when the peer is a trusted proxy (then the
 * authority names the internal hop and is not checked), else the authority.
 */
function hostStep(site: CompiledSite, http: HttpInput, client: Client): Reason {
  if (client.peerTrusted && site.hostHeader === 'x-forwarded-host') {
    const value = http.headers.get('x-forwarded-host')
    if (value !== undefined) return hostsReason(site, splitList(value))
  } else if (client.peerTrusted && site.hostHeader === 'forwarded') {
    const value = http.headers.get('forwarded')
    if (value !== undefined) {
      const elements = parseForwarded(value)
      // Fail closed: a host= we cannot read may be the one that would not pass.
      if (elements.some((e) => e.malformed)) return 'invalid_host'
      const hosts = elements.flatMap((e) => (e.host === undefined ? [] : [e.host]))
      if (hosts.length > 0) return hostsReason(site, hosts)
    }
  }
  return http.authority === undefined ? 'invalid_host' : hostReason(site, http.authority)
}

/** Steps 2-4 for a known site; the client was resolved by `resolveClient`. */
export function evaluate(site: CompiledSite, input: CheckInput, client: Client): Reason {
  const http = input.http
  if (http === undefined) {
    // No HTTP part: no host to vouch for, only the client lists can allow.
    return clientReason(site, client) ?? (site.clientAllow ? 'tcp_client_allowed' : 'not_http')
  }
  if (isHealthCheck(site, http)) return 'health_check'
  return clientReason(site, client) ?? hostStep(site, http, client)
}
