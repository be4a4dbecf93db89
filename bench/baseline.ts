// The benchmark's baseline: SPEC's decision as a careful engineer would write it with the usual
// libraries, for what examples/policy.yaml uses (sites, health check with paths, trusted proxies
// with x-forwarded-for and x-forwarded-host, allowedCidrNets, clientCidrs, clientIpHeader, deny
// status, dry run). Compiled once: ranges parsed, host patterns split into a Set and a suffix
// list, each site's header changes and deny bodies made up front. Per request: proto-loader
// objects, proxy-addr's walk with a strict trust function, ipaddr.js for every address, an answer
// object serialized by proto-loader. test/cases/baseline.test.ts holds it to check()'s answers.

import { timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { STATUS_CODES } from 'node:http'
import ipaddr from 'ipaddr.js'
import proxyAddr from 'proxy-addr'
import { parse as parseYaml } from 'yaml'
import { type Message, ours } from '../test/support/protos.js'

type Address = ipaddr.IPv4 | ipaddr.IPv6
type Range = [Address, number]
// biome-ignore lint/suspicious/noExplicitAny: a policy as the YAML parser gives it
type Plain = any

const FORWARDING = [
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-scheme',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
]
const ALLOWING = new Set(['health_check', 'host_allowed', 'host_cidr', 'tcp_client_allowed'])
// The outcome of one Host, worst first: the worst element of x-forwarded-host decides.
const HOST_REASONS = ['invalid_host', 'host_not_allowed', 'host_cidr', 'host_allowed']
// Django's host_validation_re.
const HOST_SYNTAX = /^([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(:\d+)?$/i

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

/**
 * SPEC "Addresses": ipaddr.js accepts 010.0.0.1, 0x0a.0.0.1 and zone ids, SPEC does not; and its
 * isValid throws and catches an Error for every string that is not an IPv4 address (a Host name,
 * an IPv6 peer), which cost more than the rest of a call: a regex first, one parse after.
 */
function strictIp(text: string): Address | undefined {
  if (V4.test(text)) return ipaddr.IPv4.parse(text)
  if (!text.includes(':') || text.includes('%')) return undefined
  let v6: ipaddr.IPv6
  try {
    v6 = ipaddr.IPv6.parse(text)
  } catch {
    return undefined
  }
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6
}

function format(ip: Address): string {
  return ip.kind() === 'ipv4' ? ip.toString() : (ip as ipaddr.IPv6).toRFC5952String()
}

function ranges(list: readonly string[] | undefined): Range[] | undefined {
  return list?.map((r) => (r.includes('/') ? ipaddr.parseCIDR(r) : strictRange(r)))
}

function strictRange(text: string): Range {
  const ip = ipaddr.parse(text)
  return [ip, ip.kind() === 'ipv4' ? 32 : 128]
}

/** IPv4 and IPv6 are separate spaces. */
function inRanges(ip: Address, list: readonly Range[]): boolean {
  for (const [net, bits] of list) if (ip.kind() === net.kind() && ip.match(net, bits)) return true
  return false
}

interface Site {
  readonly name: string
  readonly trust: (addr: string) => boolean
  readonly proxies: readonly Range[]
  readonly walksXff: boolean
  readonly readsXfh: boolean
  readonly exactHosts: ReadonlySet<string>
  readonly suffixes: readonly string[]
  readonly anyHost: boolean
  readonly hostCidrs: readonly Range[]
  readonly clientAllow: readonly Range[] | undefined
  readonly clientDeny: readonly Range[] | undefined
  readonly healthCheck: { header: string; secret: Buffer; paths?: ReadonlySet<string> } | undefined
  readonly clientIpHeader: string | undefined
  readonly dryRun: boolean
  readonly denyStatus: number
  /** headers_to_remove for a trusted and an untrusted peer; the clientIpHeader never in them. */
  readonly removeTrusted: readonly string[]
  readonly removeUntrusted: readonly string[]
}

function secretOf(value: Plain, env: NodeJS.ProcessEnv): Buffer {
  if (typeof value === 'string') return Buffer.from(value)
  if (value.file !== undefined) return readFileSync(value.file)
  const text = env[value.env] ?? value.default
  if (text === undefined) throw new Error(`the baseline: ${value.env} is not set`)
  return Buffer.from(text)
}

function compileSite(name: string, s: Plain, env: NodeJS.ProcessEnv): Site {
  const trustedHeaders: string[] = s.trustedHeaders ?? ['x-forwarded-for', 'x-forwarded-proto']
  for (const h of trustedHeaders)
    if (['forwarded', 'x-real-ip', 'x-client-ip'].includes(h))
      throw new Error(`the baseline reads x-forwarded-for and x-forwarded-host only, not ${h}`)
  const proxies = ranges(s.trustedProxies) ?? []
  const hosts: string[] = (s.allowedHosts ?? []).map((h: string) => h.toLowerCase())
  const clientIpHeader: string | undefined = s.clientIpHeader ?? undefined
  const remove = (trusted: boolean) =>
    FORWARDING.filter((h) => (!trusted || !trustedHeaders.includes(h)) && h !== clientIpHeader)
  const hc = s.healthCheck
  return {
    name,
    // proxy-addr's own compiled matcher reads each address with ipaddr.js 1.9's isValid again.
    trust: (addr) => {
      const ip = strictIp(addr)
      return ip !== undefined && inRanges(ip, proxies)
    },
    proxies,
    walksXff: trustedHeaders.includes('x-forwarded-for'),
    readsXfh: trustedHeaders.includes('x-forwarded-host'),
    exactHosts: new Set(hosts.filter((h) => !h.startsWith('.'))),
    suffixes: hosts.filter((h) => h.startsWith('.')),
    anyHost: hosts.includes('*'),
    hostCidrs: ranges(s.allowedCidrNets) ?? [],
    clientAllow: ranges(s.clientCidrs?.allow),
    clientDeny: ranges(s.clientCidrs?.deny),
    healthCheck: hc && {
      header: hc.header.toLowerCase(),
      secret: secretOf(hc.value, env),
      ...(hc.paths === undefined ? {} : { paths: new Set<string>(hc.paths) }),
    },
    clientIpHeader,
    dryRun: s.dryRun === true,
    denyStatus: s.deny?.status ?? 403,
    removeTrusted: remove(true),
    removeUntrusted: remove(false),
  }
}

interface Headers {
  get(name: string): string | undefined
}

/** Header values by lower-case name: `headers`, or `header_map` when Envoy sends raw headers. */
function headersOf(http: Message): Headers {
  const object = http.headers
  if (object !== undefined)
    // Own keys only: a client's header named "__proto__" is no way into the prototype.
    return { get: (name) => (Object.hasOwn(object, name) ? object[name] : undefined) }
  const out = new Map<string, string>()
  for (const line of http.header_map?.headers ?? []) {
    const value = Buffer.from(line.raw_value ?? line.value ?? '').toString('utf8')
    const before = out.get(line.key)
    out.set(line.key, before === undefined ? value : `${before},${value}`)
  }
  return out
}

/** One Host: Django's split_domain_port and validate_host, then the patterns, then the ranges. */
function hostReason(site: Site, raw: string): string {
  if (!HOST_SYNTAX.test(raw)) return 'invalid_host'
  const lower = raw.toLowerCase()
  let domain = lower
  if (!lower.endsWith(']')) {
    const colon = lower.lastIndexOf(':')
    if (colon >= 0) domain = lower.slice(0, colon)
    if (domain.endsWith('.')) domain = domain.slice(0, -1)
    if (domain === '') return 'invalid_host'
  }
  if (site.anyHost || site.exactHosts.has(domain)) return 'host_allowed'
  for (const s of site.suffixes)
    if (domain.endsWith(s) || domain === s.slice(1)) return 'host_allowed'
  const ip = strictIp(domain.startsWith('[') ? domain.slice(1, -1) : domain)
  return ip !== undefined && inRanges(ip, site.hostCidrs) ? 'host_cidr' : 'host_not_allowed'
}

/** SPEC: list elements are trimmed of spaces and tabs (String.trim takes newlines too). */
function trimOws(text: string): string {
  return text.replace(/^[ \t]+|[ \t]+$/g, '')
}

function clientReason(site: Site, client: Address | undefined): string | undefined {
  // A client that cannot be named cannot be shown to be outside the deny list.
  if (site.clientDeny && (!client || inRanges(client, site.clientDeny))) return 'client_denied'
  if (site.clientAllow && (!client || !inRanges(client, site.clientAllow)))
    return 'client_not_allowed'
  return undefined
}

function healthCheckPasses(site: Site, headers: Headers, path: string): boolean {
  const hc = site.healthCheck
  const given = hc && headers.get(hc.header)
  if (!hc || given === undefined || (hc.paths && !hc.paths.has(path))) return false
  const bytes = Buffer.from(given)
  return bytes.length === hc.secret.length && timingSafeEqual(bytes, hc.secret)
}

/** Reads the policy text once; the function it returns answers CheckRequest bytes. */
export function baselinePipeline(
  policyText: string,
  env: NodeJS.ProcessEnv = {},
): (bytes: Buffer) => Buffer {
  const policy = parseYaml(policyText)
  const { sites: siteSpecs = {}, ...topSpec } = policy
  const top = compileSite('default', topSpec, env)
  // A site inherits every field it does not set; looked up in a Map, never on a plain object.
  const sites = new Map<string, Site>(
    Object.entries(siteSpecs).map(([name, s]) => [
      name,
      compileSite(name, { ...topSpec, ...(s as Plain) }, env),
    ]),
  )
  // Deny bodies made once per status a site may answer.
  const bodies = new Map<number, string>()
  for (const site of [top, ...sites.values()])
    for (const status of [400, site.denyStatus]) bodies.set(status, `${STATUS_CODES[status]}\n`)

  const answer = (site: Site, reason: string, client: Address | undefined, trusted: boolean) => {
    const allowed = ALLOWING.has(reason)
    const mode = site.dryRun && reason !== 'invalid_request' ? 'dry_run' : 'enforce'
    const clientText = client && format(client)
    const fields: Record<string, { stringValue: string }> = {
      decision: { stringValue: allowed ? 'allow' : 'deny' },
      reason: { stringValue: reason },
      site: { stringValue: site.name },
      mode: { stringValue: mode },
    }
    if (clientText !== undefined) fields['client'] = { stringValue: clientText }
    if (!allowed && mode === 'enforce') {
      const status =
        reason === 'invalid_host' || reason === 'invalid_request' ? 400 : site.denyStatus
      return ours.encodeResponse({
        status: { code: 7 },
        denied_response: { status: { code: status }, body: bodies.get(status) },
        dynamic_metadata: { fields },
      })
    }
    const removed = trusted ? site.removeTrusted : site.removeUntrusted
    const header = site.clientIpHeader
    return ours.encodeResponse({
      status: { code: 0 },
      ok_response: {
        headers:
          header && clientText
            ? [
                {
                  header: { key: header, value: clientText },
                  append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
                },
              ]
            : [],
        headers_to_remove: header && !clientText ? [...removed, header] : removed,
      },
      dynamic_metadata: { fields },
    })
  }

  return (bytes) => {
    let request: Message
    try {
      request = ours.decodeRequest(bytes)
    } catch {
      return answer(top, 'invalid_request', undefined, false)
    }
    const attributes = request.attributes ?? {}
    const siteName: string | undefined = attributes.context_extensions?.site
    const named = siteName === undefined ? top : sites.get(siteName)
    const site = named ?? top
    const http = attributes.request?.http
    const headers: Headers = http ? headersOf(http) : new Map<string, string>()
    const peer: string = attributes.source?.address?.socket_address?.address ?? ''
    let client = strictIp(peer)
    const trusted = client !== undefined && inRanges(client, site.proxies)
    // 3. The client: proxy-addr walks x-forwarded-for from the peer leftwards, stopping at the
    // first address the trust function refuses, which is then read strictly.
    const xff = headers.get('x-forwarded-for')
    if (client && trusted && site.walksXff && xff !== undefined) {
      const walked = proxyAddr(
        { connection: { remoteAddress: peer }, headers: { 'x-forwarded-for': xff } } as never,
        site.trust,
      )
      client = strictIp(walked)
    }
    if (named === undefined) return answer(top, 'unknown_site', client, trusted)
    if (!http) {
      const reason =
        clientReason(site, client) ?? (site.clientAllow ? 'tcp_client_allowed' : 'not_http')
      return answer(site, reason, client, trusted)
    }
    // 2. Health check, before every other rule.
    const path = String(http.path ?? '').split('?')[0] ?? ''
    if (healthCheckPasses(site, headers, path)) return answer(site, 'health_check', client, trusted)
    const denied = clientReason(site, client)
    if (denied) return answer(site, denied, client, trusted)
    // 4. The host: every element of a trusted x-forwarded-host, else the authority.
    const xfh = trusted && site.readsXfh ? headers.get('x-forwarded-host') : undefined
    const authority: string | undefined =
      http.host || headers.get(':authority') || headers.get('host') || undefined
    if (xfh === undefined && authority === undefined)
      return answer(site, 'invalid_host', client, trusted)
    let worst = HOST_REASONS.length - 1
    for (const host of xfh === undefined ? [authority as string] : xfh.split(','))
      worst = Math.min(worst, HOST_REASONS.indexOf(hostReason(site, trimOws(host))))
    return answer(site, HOST_REASONS[worst] as string, client, trusted)
  }
}
