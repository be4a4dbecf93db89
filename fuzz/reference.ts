// A slow, plain evaluator written from SPEC.md, for differential fuzzing against check(): plain
// objects from the `yaml` parser, arrays, regular expressions and ipaddr.js; none of hostguard's
// compiled structures, parsers or matchers. It answers what SPEC says the CheckResponse carries.

import ipaddr from 'ipaddr.js'
import { parse as parseYaml } from 'yaml'

export interface ReferenceAnswer {
  readonly decision: 'allow' | 'deny'
  readonly reason: string
  readonly site: string
  readonly mode: 'enforce' | 'dry_run'
  readonly client: string | undefined
  /** 'ok' or 'denied': what Envoy is told. */
  readonly kind: 'ok' | 'denied'
  readonly status: number | undefined
  readonly set: readonly string[]
  readonly remove: readonly string[]
}

/** What SPEC takes from a CheckRequest ("Inputs taken from the CheckRequest"). */
export interface ReferenceInput {
  readonly peer: string
  readonly site: string | undefined
  readonly http:
    | {
        readonly authority: string | undefined
        readonly path: string
        readonly headers: { get(name: string): string | undefined; has(name: string): boolean }
      }
    | undefined
}

// biome-ignore lint/suspicious/noExplicitAny: a CheckRequest as proto-loader decodes it
type Message = any

/**
 * SPEC's inputs read from a CheckRequest message with proto field names (as the official protos
 * decode it): `headers`, else `header_map` lines (raw bytes as UTF-8) joined with `,`; the host
 * from `http.host`, `:authority`, then `host`; the path without its query. `wanted`, when given,
 * keeps only those headers.
 */
export function specInput(m: Message, wanted?: readonly string[]): ReferenceInput {
  const http = m.attributes?.request?.http
  const keep = (name: string) => wanted === undefined || wanted.includes(name)
  const headers = new Map<string, string>()
  for (const [k, v] of Object.entries(http?.headers ?? {})) if (keep(k)) headers.set(k, String(v))
  for (const line of http?.header_map?.headers ?? []) {
    if (!keep(line.key) || http?.headers?.[line.key] !== undefined) continue
    const v = Buffer.from(line.raw_value ?? line.value ?? '').toString('utf8')
    headers.set(line.key, headers.has(line.key) ? `${headers.get(line.key)},${v}` : v)
  }
  const path = String(http?.path ?? '')
  return {
    peer: m.attributes?.source?.address?.socket_address?.address ?? '',
    site: m.attributes?.context_extensions?.site,
    http: http && {
      authority: http.host || headers.get(':authority') || headers.get('host') || undefined,
      path: path.split('?')[0] ?? '',
      headers,
    },
  }
}

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
const CLIENT_HEADERS = ['x-forwarded-for', 'forwarded', 'x-real-ip', 'x-client-ip']
const ALLOWING = ['health_check', 'host_allowed', 'host_cidr', 'tcp_client_allowed']

type Address = ipaddr.IPv4 | ipaddr.IPv6
// biome-ignore lint/suspicious/noExplicitAny: a policy as the YAML parser gives it
type Plain = any

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

/** SPEC "Addresses": strict IPv4, or RFC 4291 IPv6 without a zone; mapped IPv6 is its IPv4. */
function strictAddress(text: string): Address | undefined {
  if (V4.test(text)) return ipaddr.IPv4.parse(text)
  if (!text.includes(':') || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined
  let hex = text
  const lastColon = text.lastIndexOf(':')
  const tail = text.slice(lastColon + 1)
  if (tail.includes('.')) {
    if (!V4.test(tail)) return undefined
    const b = tail.split('.').map(Number)
    // Spelled out in hex so that ipaddr.js does not read "::a.b.c.d" as ::ffff:a.b.c.d.
    hex = `${text.slice(0, lastColon + 1)}${(((b[0] ?? 0) << 8) | (b[1] ?? 0)).toString(16)}:${(((b[2] ?? 0) << 8) | (b[3] ?? 0)).toString(16)}`
  }
  const doubleColons = hex.split('::').length - 1
  if (doubleColons > 1) return undefined
  const groups = hex
    .split(':')
    .filter((g, i, all) => !(g === '' && (doubleColons === 1 || i === 0 || i === all.length - 1)))
  if (!groups.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return undefined
  if (doubleColons === 0 && groups.length !== 8) return undefined
  if (doubleColons === 1 && groups.length > 7) return undefined
  if (/^:[^:]/.test(hex) || /[^:]:$/.test(hex)) return undefined
  if (!ipaddr.IPv6.isValid(hex)) return undefined
  const v6 = ipaddr.IPv6.parse(hex)
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6
}

function text(a: Address): string {
  return a.kind() === 'ipv4' ? a.toString() : (a as ipaddr.IPv6).toRFC5952String()
}

/** SPEC "Addresses": separate spaces; a mapped range of prefix 96 or more is its IPv4 range. */
function inRanges(a: Address, ranges: readonly string[] | undefined): boolean {
  return (ranges ?? []).some((r) => {
    const [net = '', bits] = r.split('/')
    let range: Address = ipaddr.parse(net)
    let prefix = bits === undefined ? (range.kind() === 'ipv4' ? 32 : 128) : Number(bits)
    if (range.kind() === 'ipv6' && (range as ipaddr.IPv6).isIPv4MappedAddress()) {
      range = (range as ipaddr.IPv6).toIPv4Address()
      prefix -= 96
    }
    if (a.kind() !== range.kind()) return false
    return a.kind() === 'ipv4'
      ? (a as ipaddr.IPv4).match(range as ipaddr.IPv4, prefix)
      : (a as ipaddr.IPv6).match(range as ipaddr.IPv6, prefix)
  })
}

/** A node as x-forwarded-for writes it: address, IPv4:port, [IPv6], [IPv6]:port, bare IPv6. */
function node(entry: string, bareV6: boolean, obfuscatedPort: boolean): Address | undefined {
  const port = obfuscatedPort ? '(\\d{1,5}|_[A-Za-z0-9._-]+)' : '(\\d{1,5})'
  const portOk = (p: string | undefined) =>
    p === undefined || p.startsWith('_') || Number(p) <= 65535
  let m = new RegExp(`^\\[([^\\]]*)\\](?::${port})?$`).exec(entry)
  if (m) return portOk(m[2]) && m[1]?.includes(':') ? strictAddress(m[1]) : undefined
  m = new RegExp(`^([0-9.]+):${port}$`).exec(entry)
  if (m) {
    const a = portOk(m[2]) ? strictAddress(m[1] ?? '') : undefined
    return a?.kind() === 'ipv4' ? a : undefined
  }
  if (entry.includes(':')) return bareV6 ? strictAddress(entry) : undefined
  return strictAddress(entry)
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/

interface Element {
  malformed: boolean
  for?: string
  host?: string
}

/** x-forwarded-for elements with where each begins. */
function commaSplit(value: string): { start: number; text: string }[] {
  const out: { start: number; text: string }[] = []
  let start = 0
  for (const text of value.split(',')) {
    out.push({ start, text })
    start += text.length + 1
  }
  return out
}

/**
 * Forwarded elements as a proxy that appended one sees them: a comma separates two elements when
 * the text to its right holds an even number of quotes not escaped by a backslash.
 */
function forwardedSplit(value: string): { start: number; text: string }[] {
  const unescapedQuotes = (text: string) =>
    [...text.matchAll(/(\\*)"/g)].filter((m) => (m[1] ?? '').length % 2 === 0).length
  const cuts = [-1]
  for (let i = 0; i < value.length; i++)
    if (value[i] === ',' && unescapedQuotes(value.slice(i + 1)) % 2 === 0) cuts.push(i)
  cuts.push(value.length)
  const out: { start: number; text: string }[] = []
  for (let k = 0; k + 1 < cuts.length; k++) {
    const start = (cuts[k] as number) + 1
    out.push({ start, text: value.slice(start, cuts[k + 1]) })
  }
  return out
}

/** RFC 7239, element by element; a syntax error spoils its element and parsing resumes after the next comma. */
function forwardedElements(value: string): Element[] {
  const out: Element[] = []
  let rest = value
  let current: Element = { malformed: false }
  let names = new Set<string>()
  const close = () => {
    if (names.size > 0) out.push(current)
    current = { malformed: false }
    names = new Set()
  }
  const spoil = (from: string) => {
    out.push({ malformed: true })
    const comma = from.indexOf(',')
    rest = comma < 0 ? '' : from.slice(comma + 1)
    current = { malformed: false }
    names = new Set()
  }
  for (;;) {
    rest = rest.replace(/^[ \t]+/, '')
    if (rest === '') break
    if (rest[0] === ',') {
      close()
      rest = rest.slice(1)
      continue
    }
    if (rest[0] === ';') {
      rest = rest.slice(1)
      continue
    }
    const name = TOKEN.exec(rest)?.[0]
    if (!name || rest[name.length] !== '=') {
      spoil(rest)
      continue
    }
    let after = rest.slice(name.length + 1)
    let v: string
    if (after[0] === '"') {
      let i = 1
      v = ''
      while (i < after.length && after[i] !== '"') {
        if (after[i] === '\\') i++
        if (i < after.length) v += after[i]
        i++
      }
      if (i >= after.length) {
        spoil(after)
        continue
      }
      after = after.slice(i + 1)
    } else {
      const t = TOKEN.exec(after)?.[0]
      if (!t) {
        spoil(after)
        continue
      }
      v = t
      after = after.slice(t.length)
    }
    const lower = name.toLowerCase()
    if (names.has(lower)) {
      spoil(after)
      continue
    }
    names.add(lower)
    // docs/policy.md: more than 16 parameters make an element malformed.
    if (names.size > 16) {
      spoil(after)
      continue
    }
    if (lower === 'for') current.for = v
    if (lower === 'host') current.host = v
    rest = after.replace(/^[ \t]+/, '')
    if (rest !== '' && rest[0] !== ';' && rest[0] !== ',') spoil(rest)
  }
  close()
  return out
}

const trim = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, '')

/** Django's split_domain_port on the whole value, without the trailing-newline quirk. */
function domainOf(host: string): string | undefined {
  if (!/^([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(:[0-9]+)?$/i.test(host)) return undefined
  const lower = host.toLowerCase()
  if (lower.endsWith(']')) return lower
  const colon = lower.lastIndexOf(':')
  let domain = colon < 0 ? lower : lower.slice(0, colon)
  if (domain.endsWith('.')) domain = domain.slice(0, -1)
  return domain === '' ? undefined : domain
}

function isSameDomain(host: string, pattern: string): boolean {
  return (
    (pattern.startsWith('.') && (host.endsWith(pattern) || host === pattern.slice(1))) ||
    pattern === host
  )
}

export class ReferenceEvaluator {
  readonly policy: Plain
  readonly secret: string
  readonly maxHops: number
  readonly maxHeaderBytes: number
  /** Where the last walk's entries begin in its header (SPEC step 3; read by the host step). */
  private walkedFrom = 0

  constructor(policyText: string, secret: string, maxHops = 32, maxHeaderBytes = 8192) {
    this.policy = parseYaml(policyText)
    this.secret = secret
    this.maxHops = maxHops
    this.maxHeaderBytes = maxHeaderBytes
  }

  /** A site's settings: the top level's, each overridden as a whole by the site's own. */
  private settings(site: string | undefined): Plain {
    const top = { ...this.policy }
    delete top.sites
    if (site === undefined) return top
    // A site name comes from the request: look it up as an own key only ("constructor" is none).
    const sites = this.policy.sites ?? {}
    return Object.hasOwn(sites, site) ? { ...top, ...sites[site] } : undefined
  }

  evaluate(input: ReferenceInput | undefined): ReferenceAnswer {
    const top = this.settings(undefined)
    if (input === undefined) return this.answer(top, 'default', 'invalid_request', undefined, false)
    const named = input.site === undefined ? top : this.settings(input.site)
    const known = named !== undefined && input.site !== 'default'
    const s = known ? named : top
    const siteName = known && input.site !== undefined ? input.site : 'default'
    const trusted: string[] = s.trustedHeaders ?? ['x-forwarded-for', 'x-forwarded-proto']
    const peer = strictAddress(input.peer)
    const peerTrusted = peer !== undefined && inRanges(peer, s.trustedProxies)
    const headers = input.http?.headers ?? new Map<string, string>()

    // 3, first half: the client.
    let client: Address | undefined = peer
    const clientHeader = CLIENT_HEADERS.find((h) => trusted.includes(h))
    const value = clientHeader && input.http ? headers.get(clientHeader) : undefined
    if (peer && peerTrusted && clientHeader && value !== undefined) {
      client = this.walk(clientHeader, value, peer, s)
    }
    if (!known) return this.answer(s, 'default', 'unknown_site', client, peerTrusted)

    const http = input.http
    if (http === undefined) {
      const r =
        this.clientReason(s, client) ?? (s.clientCidrs?.allow ? 'tcp_client_allowed' : 'not_http')
      return this.answer(s, siteName, r, client, peerTrusted)
    }
    // 2. health check
    const hc = s.healthCheck
    if (hc) {
      const got = headers.get(hc.header.toLowerCase())
      if (
        got !== undefined &&
        got === this.secret &&
        (hc.paths === undefined || hc.paths.includes(http.path))
      ) {
        return this.answer(s, siteName, 'health_check', client, peerTrusted)
      }
    }
    const cr = this.clientReason(s, client)
    if (cr) return this.answer(s, siteName, cr, client, peerTrusted)
    // 4. host
    let hosts: string[] | undefined
    if (peerTrusted && trusted.includes('x-forwarded-host') && headers.has('x-forwarded-host')) {
      const v = headers.get('x-forwarded-host') ?? ''
      if (v.length > this.maxHeaderBytes)
        return this.answer(s, siteName, 'invalid_host', client, peerTrusted)
      hosts = v.split(',').map(trim)
      // One element a hop: a longer list than --max-forwarded-hops is stuffing.
      if (hosts.length > this.maxHops)
        return this.answer(s, siteName, 'invalid_host', client, peerTrusted)
    } else if (peerTrusted && trusted.includes('forwarded') && headers.has('forwarded')) {
      const v = headers.get('forwarded') ?? ''
      if (v.length > this.maxHeaderBytes)
        return this.answer(s, siteName, 'invalid_host', client, peerTrusted)
      // Only the elements the client walk read: a host= left of them is the client's writing.
      const read = forwardedSplit(v).filter((e) => e.start >= this.walkedFrom)
      const elements = forwardedElements(v.slice(this.walkedFrom))
      if (
        read.length > this.maxHops ||
        elements.some((e) => e.malformed) ||
        read.some((e) => e.text.length > 1024)
      )
        return this.answer(s, siteName, 'invalid_host', client, peerTrusted)
      const fromHeader = elements.flatMap((e) => (e.host === undefined ? [] : [e.host]))
      if (fromHeader.length > 0) hosts = fromHeader
    }
    if (hosts === undefined) {
      if (http.authority === undefined)
        return this.answer(s, siteName, 'invalid_host', client, peerTrusted)
      hosts = [http.authority]
    }
    const reasons = hosts.map((h) => this.hostReason(s, h))
    const reason = reasons.includes('invalid_host')
      ? 'invalid_host'
      : reasons.includes('host_not_allowed')
        ? 'host_not_allowed'
        : reasons.includes('host_cidr')
          ? 'host_cidr'
          : 'host_allowed'
    return this.answer(s, siteName, reason, client, peerTrusted)
  }

  private hostReason(s: Plain, raw: string): string {
    // docs/policy.md: a Host longer than a DNS name (253), its dot and a port is invalid.
    const domain = raw.length > 260 ? undefined : domainOf(raw)
    if (domain === undefined) return 'invalid_host'
    const patterns: string[] = (s.allowedHosts ?? []).map((p: string) => p.toLowerCase())
    if (patterns.some((p) => p === '*' || isSameDomain(domain, p))) return 'host_allowed'
    const literal = domain.startsWith('[') ? domain.slice(1, -1) : domain
    const ip = literal.includes(':') || V4.test(literal) ? strictAddress(literal) : undefined
    if (ip && inRanges(ip, s.allowedCidrNets)) return 'host_cidr'
    return 'host_not_allowed'
  }

  private clientReason(s: Plain, client: Address | undefined): string | undefined {
    // SPEC step 3: an unknown client cannot be shown to be outside a deny list.
    if (s.clientCidrs?.deny && (!client || inRanges(client, s.clientCidrs.deny)))
      return 'client_denied'
    if (s.clientCidrs?.allow && (!client || !inRanges(client, s.clientCidrs.allow)))
      return 'client_not_allowed'
    return undefined
  }

  /**
   * SPEC step 3: entries from the peer leftwards; only the entries walked count against the
   * limits. Each entry is [start, text]: where it begins in the header, and its text.
   */
  private walk(header: string, value: string, peer: Address, s: Plain): Address | undefined {
    const floor = value.length - this.maxHeaderBytes
    const single = header === 'x-real-ip' || header === 'x-client-ip'
    const entries = single
      ? [{ start: 0, text: value }]
      : header === 'forwarded'
        ? forwardedSplit(value)
        : commaSplit(value)
    let leftmost = peer
    let walked = 0
    this.walkedFrom = 0
    for (let i = entries.length - 1; i >= 0; i--) {
      const entry = entries[i] as { start: number; text: string }
      // Where the entries read begin; an entry that cannot be read leaves it at 0.
      const readable = entry.start >= floor && entry.text.length <= 1024
      this.walkedFrom = readable || header !== 'forwarded' ? Math.max(0, entry.start) : 0
      if (entry.start < floor) {
        this.walkedFrom = 0
        return undefined
      }
      // docs/policy.md: an entry or element longer than 1,024 characters is not read.
      if (entry.text.length > 1024) return undefined
      // docs/operations.md: every entry walked counts against the hops, empty ones included.
      if (++walked > this.maxHops) return undefined
      let a: Address | undefined
      if (header === 'forwarded') {
        const parsed = forwardedElements(entry.text)
        if (parsed.length === 0) continue
        const e = parsed.length === 1 ? parsed[0] : undefined
        if (!e || e.malformed || e.for === undefined) return undefined
        a = node(e.for, false, true)
      } else {
        const t = trim(entry.text)
        if (t === '') continue
        a = node(t, true, false)
      }
      if (!a) return undefined
      if (!inRanges(a, s.trustedProxies)) return a
      leftmost = a
    }
    return leftmost
  }

  private answer(
    s: Plain,
    site: string,
    reason: string,
    client: Address | undefined,
    peerTrusted: boolean,
  ): ReferenceAnswer {
    const allowed = ALLOWING.includes(reason)
    const mode = s.dryRun === true && reason !== 'invalid_request' ? 'dry_run' : 'enforce'
    const status =
      reason === 'invalid_host' || reason === 'invalid_request' ? 400 : (s.deny?.status ?? 403)
    const kind = allowed || mode === 'dry_run' ? 'ok' : 'denied'
    const clientText = client && text(client)
    const trusted: string[] = s.trustedHeaders ?? ['x-forwarded-for', 'x-forwarded-proto']
    const clientIpHeader: string | undefined = s.clientIpHeader ?? undefined
    let remove = FORWARDING.filter((h) => !peerTrusted || !trusted.includes(h))
    let set: string[] = []
    if (clientIpHeader) {
      remove = remove.filter((h) => h !== clientIpHeader)
      if (clientText === undefined) remove.push(clientIpHeader)
      else set = [`${clientIpHeader}: ${clientText}`]
    }
    return {
      decision: allowed ? 'allow' : 'deny',
      reason,
      site,
      mode,
      client: clientText,
      kind,
      status: kind === 'denied' ? status : undefined,
      set: kind === 'ok' ? set : [],
      remove: kind === 'ok' ? [...remove].sort() : [],
    }
  }
}
