// PolicySpec → CompiledPolicy: lookup structures and precomputed answer parts, built once per
// load and deep-frozen, so a request only reads them.

import type { AnswerSettings } from '../decision/answer.js'
import {
  CLIENT_ADDRESS_HEADERS,
  type CompiledPolicy,
  type CompiledSite,
  DEFAULT_LIMITS,
  HOST_HEADERS,
  type Limits,
} from '../decision/types.js'
import { compileHeaderNames } from '../grpc-authz/decode.js'
import { prepareAnswers } from '../grpc-authz/encode.js'
import { prepareHttpAnswers } from '../http-authz/answer.js'
import { compileHttpHeaderNames } from '../http-authz/request.js'
import { type CidrMatcher, type CidrRange, compileCidrs } from '../net/cidr.js'
import { compileHosts, type HostMatcher } from '../net/host.js'
import {
  type AddressList,
  DEFAULT_DENY_STATUS,
  DEFAULT_TRUSTED_HEADERS,
  FORWARDING_HEADERS,
  type PolicySpec,
  type SiteSpec,
  TOP_LEVEL_SITE,
} from './schema.js'

/**
 * The current addresses of each dynamic source, by source name (AddressSource.name); a source
 * with no addresses yet is absent.
 */
export type DynamicAddresses = ReadonlyMap<string, readonly CidrRange[]>

const NO_DYNAMIC_ADDRESSES: DynamicAddresses = new Map()

// A list is compiled once per policy load and per change of one of its sources: a site that
// inherits a list shares its matcher, and a change of one source recompiles only the lists that
// hold it. Keyed by the spec's objects, so the entries go with the spec.
const compiledLists = new WeakMap<
  AddressList,
  { sources: readonly (readonly CidrRange[] | undefined)[]; matcher: CidrMatcher }
>()
const compiledHosts = new WeakMap<readonly string[], HostMatcher>()

function compileList(list: AddressList, dynamic: DynamicAddresses): CidrMatcher {
  const sources = list.sources.map((source) => dynamic.get(source.name))
  const cached = compiledLists.get(list)
  if (cached?.sources.every((ranges, i) => ranges === sources[i])) return cached.matcher
  const ranges =
    sources.length === 0 ? list.ranges : [...list.ranges, ...sources.flatMap((r) => r ?? [])]
  const matcher = compileCidrs(ranges)
  compiledLists.set(list, { sources, matcher })
  return matcher
}

function compileHostList(patterns: readonly string[]): HostMatcher {
  let matcher = compiledHosts.get(patterns)
  if (!matcher) {
    matcher = compileHosts(patterns)
    compiledHosts.set(patterns, matcher)
  }
  return matcher
}

const EMPTY_LIST: AddressList = { ranges: [], sources: [] }
const NO_HOSTS: readonly string[] = []

function compileSite(
  name: string,
  own: SiteSpec,
  top: SiteSpec,
  dynamic: DynamicAddresses,
  limits: Limits,
): CompiledSite {
  const pick = <K extends keyof SiteSpec>(key: K): SiteSpec[K] =>
    own[key] !== undefined ? own[key] : top[key]
  const trustedHeaders = pick('trustedHeaders') ?? DEFAULT_TRUSTED_HEADERS
  const clientCidrs = pick('clientCidrs') ?? undefined
  const healthCheck = pick('healthCheck') ?? undefined
  const clientIpHeader = pick('clientIpHeader') ?? undefined
  const deny = pick('deny')
  const denyStatus = deny?.status ?? DEFAULT_DENY_STATUS
  const dryRun = pick('dryRun') ?? false
  const trusted = new Set<string>(trustedHeaders)
  const answers: AnswerSettings = {
    name,
    removeUntrusted: FORWARDING_HEADERS,
    removeTrusted: FORWARDING_HEADERS.filter((h) => !trusted.has(h)),
    clientIpHeader,
    denyStatus,
    showReason: deny?.showReason ?? false,
    dryRun,
  }
  return {
    name,
    limits,
    trustedProxies: compileList(pick('trustedProxies') ?? EMPTY_LIST, dynamic),
    clientHeader: CLIENT_ADDRESS_HEADERS.find((h) => trusted.has(h)),
    hostHeader: HOST_HEADERS.find((h) => trusted.has(h)),
    allowedHosts: compileHostList(pick('allowedHosts') ?? NO_HOSTS),
    allowedCidrNets: compileList(pick('allowedCidrNets') ?? EMPTY_LIST, dynamic),
    clientAllow: clientCidrs?.allow ? compileList(clientCidrs.allow, dynamic) : undefined,
    clientDeny: clientCidrs?.deny ? compileList(clientCidrs.deny, dynamic) : undefined,
    healthCheck: healthCheck && {
      header: healthCheck.header,
      secret: healthCheck.secret,
      paths: healthCheck.paths ? new Set(healthCheck.paths) : undefined,
    },
    clientIpHeader,
    denyStatus,
    dryRun,
    grpc: prepareAnswers(answers),
    http: prepareHttpAnswers(answers),
  }
}

/** Freezes what is not frozen yet; matchers come frozen (net/cidr.ts, net/host.ts). */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value
  // Typed arrays and Buffers cannot be frozen; nothing writes to them after compile.
  if (ArrayBuffer.isView(value)) return value
  if (value instanceof Map || value instanceof Set) {
    for (const item of value instanceof Map ? [...value.keys(), ...value.values()] : value)
      deepFreeze(item)
  } else {
    for (const item of Object.values(value)) deepFreeze(item)
  }
  return Object.freeze(value)
}

/** Compiles `spec` with the current addresses of its dynamic sources. */
export function compilePolicy(
  spec: PolicySpec,
  limits: Limits = DEFAULT_LIMITS,
  dynamic: DynamicAddresses = NO_DYNAMIC_ADDRESSES,
): CompiledPolicy {
  const top = compileSite(TOP_LEVEL_SITE, spec.top, spec.top, dynamic, limits)
  const sites = new Map<string, CompiledSite>()
  for (const [name, site] of spec.sites)
    sites.set(name, compileSite(name, site, spec.top, dynamic, limits))
  // x-request-id is read for the decision log only.
  // Only what some site reads: the forwarding headers are removed by name, without reading them.
  const headerNames = new Set<string>([':authority', 'host', 'x-request-id'])
  for (const site of [top, ...sites.values()]) {
    if (site.healthCheck) headerNames.add(site.healthCheck.header)
    if (site.clientHeader) headerNames.add(site.clientHeader)
    if (site.hostHeader) headerNames.add(site.hostHeader)
  }
  const compiled = compileHeaderNames(headerNames)
  return deepFreeze({
    top,
    sites,
    headerNames: compiled,
    httpHeaderNames: compileHttpHeaderNames(compiled),
  })
}
