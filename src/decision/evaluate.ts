// SPEC's evaluation order, one function a step; the first step that decides wins.

import { timingSafeEqual } from 'node:crypto'
import { matchCidr, matchingRange } from '../net/cidr.js'
import { MAX_CHAIN_ENTRY, owsEnd, owsStart, parseForwarded } from '../net/forwarding.js'
import { hostDomain, hostLiteralIp, matchHost } from '../net/host.js'
import type {
  Client,
  CompiledPolicy,
  CompiledSite,
  Decision,
  HttpInput,
  Mode,
  Reason,
  RequestInput,
  Trace,
} from './types.js'

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

/** 1. The site the request names, the top level when none; undefined if unknown. */
export function selectSite(policy: CompiledPolicy, input: RequestInput): CompiledSite | undefined {
  return input.site === undefined ? policy.top : policy.sites.get(input.site)
}

/** 2. The health-check header carries the secret (constant-time) on an allowed path. */
function isHealthCheck(site: CompiledSite, http: HttpInput, trace: Trace | undefined): boolean {
  const check = site.healthCheck
  if (!check) return false
  const given = http.headers.bytes(check.header)
  if (given === undefined) return false
  if (check.paths && !check.paths.has(http.path)) return false
  // Bytes, not text: invalid UTF-8 would become U+FFFD, and two different secrets compare equal.
  // Compare equal lengths only: timingSafeEqual throws otherwise, and the length is no secret.
  if (given.length !== check.secret.length) return false
  const ok = timingSafeEqual(given, check.secret)
  if (ok && trace) trace.rule = `healthCheck: ${check.header} carries the secret`
  return ok
}

/** 3. `clientCidrs` on the resolved client; undefined when the client may go on. */
function clientReason(
  site: CompiledSite,
  client: Client,
  trace: Trace | undefined,
): Reason | undefined {
  const ip = client.ip
  if (site.clientDeny && (!ip || matchCidr(site.clientDeny, ip))) {
    // Fail closed: a client that cannot be named cannot be shown to be outside the list.
    if (trace)
      trace.rule = ip
        ? `clientCidrs.deny ${matchingRange(site.clientDeny, ip)} holds the client`
        : 'clientCidrs.deny is set and the client is unknown'
    return 'client_denied'
  }
  if (site.clientAllow && (!ip || !matchCidr(site.clientAllow, ip))) {
    if (trace)
      trace.rule = ip
        ? 'clientCidrs.allow does not hold the client'
        : 'clientCidrs.allow is set and the client is unknown'
    return 'client_not_allowed'
  }
  return undefined
}

/**
 * The longest Host read: a 253-character DNS name, its trailing dot and a port. Django sets no
 * bound; a longer name can name no host, and scanning one costs per character (SPEC "Bounded
 * work"), so it is an invalid Host at once.
 */
const MAX_HOST_LENGTH = 253 + 1 + 6

/** 4, for one Host value: Django's split and match, then `allowedCidrNets` for IP literals. */
function hostReason(site: CompiledSite, raw: string, trace: Trace | undefined): Reason {
  const tooLong = raw.length > MAX_HOST_LENGTH
  const domain = tooLong ? undefined : hostDomain(raw)
  if (domain === undefined) {
    if (trace) {
      trace.rule = tooLong
        ? `the Host is longer than ${MAX_HOST_LENGTH} characters (a DNS name has at most 253)`
        : `${JSON.stringify(raw)} is not name[:port] or [IPv6][:port] (Django's host syntax)`
    }
    return 'invalid_host'
  }
  const pattern = matchHost(site.allowedHosts, domain)
  if (pattern !== undefined) {
    if (trace) trace.rule = `allowedHosts "${pattern}" matches "${domain}"`
    return 'host_allowed'
  }
  if (site.allowedCidrNets.size > 0) {
    const ip = hostLiteralIp(domain)
    if (ip && matchCidr(site.allowedCidrNets, ip)) {
      if (trace)
        trace.rule = `allowedCidrNets ${matchingRange(site.allowedCidrNets, ip)} holds "${domain}"`
      return 'host_cidr'
    }
  }
  if (trace) trace.rule = `no allowedHosts pattern or allowedCidrNets range matches "${domain}"`
  return 'host_not_allowed'
}

const HOST_REASON_RANK: Partial<Record<Reason, number>> = {
  host_allowed: 0,
  host_cidr: 1,
  host_not_allowed: 2,
}

/** Every host must pass; the worst reason wins (invalid syntax, then not allowed). */
function hostsReason(
  site: CompiledSite,
  hosts: readonly string[],
  trace: Trace | undefined,
): Reason {
  let result: Reason | undefined
  let rule: string | undefined
  for (const raw of hosts) {
    const reason = hostReason(site, raw, trace)
    if (reason === 'invalid_host') return reason
    if (result === undefined || (HOST_REASON_RANK[reason] ?? 0) > (HOST_REASON_RANK[result] ?? 0)) {
      result = reason
      rule = trace?.rule
    }
  }
  if (trace) trace.rule = rule
  return result ?? 'host_allowed'
}

/**
 * x-forwarded-host elements, trimmed; an empty element stays empty and is an invalid host.
 * Undefined when there are more than `max`: one element a hop, and no chain is that long.
 */
function splitList(value: string, max: number): string[] | undefined {
  const out: string[] = []
  let start = 0
  for (;;) {
    if (out.length === max) return undefined
    const comma = value.indexOf(',', start)
    const end = comma < 0 ? value.length : comma
    const s = owsStart(value, start, end)
    out.push(value.slice(s, owsEnd(value, s, end)))
    if (comma < 0) return out
    start = comma + 1
  }
}

const TOO_MANY_HOSTS = (site: CompiledSite, header: string): string =>
  `the trusted ${header} header is longer than ${site.limits.maxHeaderBytes} bytes (--max-header-bytes), has more than ${site.limits.maxForwardedHops} elements (--max-forwarded-hops)${header === 'forwarded' ? ` or an element longer than ${MAX_CHAIN_ENTRY} characters` : ''}`

const UNREADABLE = 'unreadable'

/**
 * The hosts the site's trusted host header names, read only from a trusted peer: undefined when
 * the header is absent (or `forwarded` has no `host=`), UNREADABLE when it cannot be read.
 */
function trustedHosts(
  site: CompiledSite,
  http: HttpInput,
  client: Client,
  trace: Trace | undefined,
): readonly string[] | typeof UNREADABLE | undefined {
  const header = site.hostHeader
  const value = header === undefined ? undefined : http.headers.get(header)
  if (header === undefined || value === undefined) return undefined
  const max = site.limits.maxForwardedHops
  const tooLong = value.length > site.limits.maxHeaderBytes
  if (header === 'x-forwarded-host') {
    const hosts = tooLong ? undefined : splitList(value, max)
    if (hosts !== undefined) return hosts
  } else {
    // Only the elements the client walk read (forwarded is then also the client header): a
    // host= the client wrote left of its own element must not stand in for the authority.
    const elements = tooLong ? undefined : parseForwarded(value, max, client.walkedFrom)
    // Fail closed: a host= we cannot read may be the one that would not pass.
    if (elements?.some((e) => e.malformed)) {
      if (trace) trace.rule = 'the trusted forwarded header has a malformed element'
      return UNREADABLE
    }
    if (elements !== undefined) {
      const hosts = elements.flatMap((e) => (e.host === undefined ? [] : [e.host]))
      return hosts.length > 0 ? hosts : undefined
    }
  }
  if (trace) trace.rule = TOO_MANY_HOSTS(site, header)
  return UNREADABLE
}

/**
 * 4. The hosts to check: from the trusted host header when the peer is a trusted proxy (then the
 * authority names the internal hop and is not checked), else the authority.
 */
function hostStep(
  site: CompiledSite,
  http: HttpInput,
  client: Client,
  trace: Trace | undefined,
): Reason {
  if (client.peerTrusted) {
    const hosts = trustedHosts(site, http, client, trace)
    if (hosts === UNREADABLE) return 'invalid_host'
    if (hosts !== undefined) return hostsReason(site, hosts, trace)
  }
  if (http.authority === undefined) {
    if (trace) trace.rule = 'the request has no Host (http.host, :authority or host)'
    return 'invalid_host'
  }
  return hostReason(site, http.authority, trace)
}

/** Steps 2-4 for a known site; the client was resolved by `resolveClient`. */
export function evaluate(
  site: CompiledSite,
  input: RequestInput,
  client: Client,
  trace?: Trace,
): Reason {
  const http = input.http
  if (http === undefined) {
    // No HTTP part: no host to vouch for, only the client lists can allow.
    const reason = clientReason(site, client, trace)
    if (reason) return reason
    if (trace)
      trace.rule = site.clientAllow
        ? 'clientCidrs.allow holds the peer'
        : 'no HTTP part, and no clientCidrs.allow to vouch for the peer'
    return site.clientAllow ? 'tcp_client_allowed' : 'not_http'
  }
  if (isHealthCheck(site, http, trace)) return 'health_check'
  return clientReason(site, client, trace) ?? hostStep(site, http, client, trace)
}
