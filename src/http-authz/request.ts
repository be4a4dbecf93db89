// An HTTP authorization request → the core's RequestInput (SPEC "HTTP authorization"). The URL
// names the dialect and the site; each dialect reads the peer, the authority and the path from
// headers its proxy sets or overwrites itself, never from one a client could pass through.

import type {
  HeaderLookup,
  HeaderNames,
  HttpHeaderName,
  HttpHeaderTable,
  RequestInput,
} from '../decision/types.js'
import { equalsLowerCase } from '../net/header-name.js'
import { parseIp } from '../net/ip.js'

export const DIALECTS = ['nginx', 'caddy', 'traefik', 'envoy'] as const
export type Dialect = (typeof DIALECTS)[number]

/** The URL's site segment that names the top level (SPEC: no site may be named `default`). */
export const TOP_LEVEL_SEGMENT = 'default'

export const PEER_HEADER = 'x-hostguard-peer'
export const AUTHORITY_HEADER = 'x-hostguard-authority'
export const PATH_HEADER = 'x-hostguard-path'

/** Where a dialect reads each input; `undefined` path: the URL after `/<dialect>/<site>`. */
interface DialectInputs {
  /** Undefined for traefik: the last `x-forwarded-for` element (Traefik appends its peer). */
  readonly peer: string | undefined
  readonly authority: string
  readonly path: string | undefined
}

const INPUTS: Record<Dialect, DialectInputs> = {
  nginx: { peer: PEER_HEADER, authority: AUTHORITY_HEADER, path: PATH_HEADER },
  caddy: { peer: PEER_HEADER, authority: AUTHORITY_HEADER, path: PATH_HEADER },
  // Envoy's http_service keeps the original Host and appends the original path to the URL.
  envoy: { peer: PEER_HEADER, authority: 'host', path: undefined },
  // forward.go: X-Forwarded-Host is the request's Host, X-Forwarded-Uri its request-target.
  traefik: { peer: undefined, authority: 'x-forwarded-host', path: 'x-forwarded-uri' },
}

const XFF = 'x-forwarded-for'

/** What the URL names: undefined when it names no dialect (answered 404). */
export interface AuthzTarget {
  readonly dialect: Dialect
  /** The site segment as written; `default` is the top level. */
  readonly site: string
  /** What follows `/<dialect>/<site>`: for Envoy, the original path and query. */
  readonly rest: string
}

/** `/<dialect>/<site>` followed by anything; a missing site segment is the site "". */
export function parseTarget(url: string): AuthzTarget | undefined {
  if (url.charCodeAt(0) !== 0x2f) return undefined
  const dialectEnd = segmentEnd(url, 1)
  let dialect: Dialect | undefined
  for (const d of DIALECTS)
    if (d.length === dialectEnd - 1 && url.startsWith(d, 1)) {
      dialect = d
      break
    }
  if (dialect === undefined) return undefined
  if (url.charCodeAt(dialectEnd) !== 0x2f) return { dialect, site: '', rest: url.slice(dialectEnd) }
  const siteEnd = segmentEnd(url, dialectEnd + 1)
  return { dialect, site: url.slice(dialectEnd + 1, siteEnd), rest: url.slice(siteEnd) }
}

/** The index of the `/`, `?` or end that ends the URL segment beginning at `start`. */
function segmentEnd(url: string, start: number): number {
  for (let i = start; i < url.length; i++) {
    const c = url.charCodeAt(i)
    if (c === 0x2f || c === 0x3f) return i
  }
  return url.length
}

/** A request its proxy did not set up as the dialect says: it is never decided. */
export interface Misconfigured {
  /** The header at fault, and what is wrong with it. */
  readonly header: string
  readonly problem: 'missing' | 'repeated'
}

/** A request's kept headers by lower-case name, repeats joined with a bare `,` (as Envoy does). */
class HeaderValues implements HeaderLookup {
  // A few names at most (the policy's headerNames): a scan is cheaper than a Map per request.
  readonly #names: string[] = []
  readonly #values: string[] = []

  get(name: string): string | undefined {
    const i = this.#names.indexOf(name)
    return i < 0 ? undefined : this.#values[i]
  }

  has(name: string): boolean {
    return this.#names.includes(name)
  }

  /** Node reads header bytes as latin1, so latin1 gives the bytes back as the proxy sent them. */
  bytes(name: string): Uint8Array | undefined {
    const value = this.get(name)
    return value === undefined ? undefined : Buffer.from(value, 'latin1')
  }

  add(name: string, value: string): void {
    const i = this.#names.indexOf(name)
    if (i < 0) {
      this.#names.push(name)
      this.#values.push(value)
    } else this.#values[i] = `${this.#values[i]},${value}`
  }

  /** Drops the last element of a comma-separated value, and the header when none is left. */
  dropLastElement(name: string): void {
    const i = this.#names.indexOf(name)
    if (i < 0) return
    const value = this.#values[i] as string
    const comma = value.lastIndexOf(',')
    if (comma >= 0) this.#values[i] = value.slice(0, comma)
    else {
      this.#names.splice(i, 1)
      this.#values.splice(i, 1)
    }
  }
}

function withoutQuery(target: string): string {
  const q = target.indexOf('?')
  return q < 0 ? target : target.slice(0, q)
}

/** `x-forwarded-for` → `X-Forwarded-For` (Go's CanonicalMIMEHeaderKey for a token). */
function canonicalName(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, dash: string, c: string) => dash + c.toUpperCase())
}

/**
 * The names each dialect reads, for a policy's headerNames: built once when the policy is
 * compiled (policy/compile.ts), so a request matches a name by its length and then as written.
 */
export function compileHttpHeaderNames(wanted: HeaderNames): Map<string, HttpHeaderTable> {
  return new Map(DIALECTS.map((dialect) => [dialect, headerTable(dialect, wanted)]))
}

function headerTable(dialect: Dialect, wanted: HeaderNames): HttpHeaderTable {
  const inputs = INPUTS[dialect]
  const names: HttpHeaderName[] = []
  const read = (name: string, role: HttpHeaderName['role']) => {
    if (!names.some((n) => n.name === name))
      names.push({ name, canonical: canonicalName(name), role })
  }
  // The dialect's own inputs first: they are never also kept as headers the decision reads.
  if (inputs.peer !== undefined) read(inputs.peer, 'peer')
  read(inputs.authority, 'authority')
  if (inputs.path !== undefined) read(inputs.path, 'path')
  for (const group of wanted.byLength) for (const n of group) read(n.name, 'kept')
  if (inputs.peer === undefined || dialect === 'envoy') read(XFF, 'kept')
  const longest = Math.max(...names.map((n) => n.name.length))
  const table: HttpHeaderName[][] = Array.from({ length: longest + 1 }, () => [])
  for (const n of names) table[n.name.length]?.push(n)
  return table
}

/**
 * The core's input for a request to `target`, from Node's `rawHeaders` (name, value, name, …,
 * names as sent, values trimmed): a dialect's own input headers must come exactly once, and are
 * not among the headers evaluated. Of the others only the policy's headerNames are kept (what
 * the decision reads, as the gRPC decoder keeps them), and x-forwarded-for where the dialect
 * reads it itself; `names` is the policy's httpHeaderNames, which lists them all.
 */
export function readRequest(
  target: AuthzTarget,
  rawHeaders: readonly string[],
  names: ReadonlyMap<string, HttpHeaderTable>,
): RequestInput | Misconfigured {
  const table = names.get(target.dialect) ?? []
  const headers = new HeaderValues()
  let peer: string | undefined
  let authority: string | undefined
  let path: string | undefined
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const raw = rawHeaders[i] as string
    // Most of a browser's headers have a length no name read has, and cost one comparison.
    if (raw.length >= table.length) continue
    const group = table[raw.length] as readonly HttpHeaderName[]
    for (let g = 0; g < group.length; g++) {
      const { name, canonical, role } = group[g] as HttpHeaderName
      // Equal strings compare in native code: try the two spellings proxies send first.
      if (raw !== name && raw !== canonical && !equalsLowerCase(raw, name)) continue
      const value = rawHeaders[i + 1] as string
      if (role === 'kept') headers.add(name, value)
      else {
        const given = role === 'peer' ? peer : role === 'authority' ? authority : path
        if (given !== undefined) return { header: name, problem: 'repeated' }
        if (role === 'peer') peer = value
        else if (role === 'authority') authority = value
        else path = value
      }
      break
    }
  }
  const inputs = INPUTS[target.dialect]
  if (inputs.peer === undefined) {
    // Traefik appends its peer to x-forwarded-for: the last element is the peer, the ones
    // before it are the chain a trusted peer vouches for.
    const chain = headers.get(XFF)
    if (chain === undefined) return { header: XFF, problem: 'missing' }
    peer = chain.slice(chain.lastIndexOf(',') + 1).trim()
    headers.dropLastElement(XFF)
  }
  if (peer === undefined) return { header: inputs.peer ?? XFF, problem: 'missing' }
  if (target.dialect === 'envoy') dropOwnHop(headers, peer)
  if (authority === undefined) return { header: inputs.authority, problem: 'missing' }
  const site = target.site === TOP_LEVEL_SEGMENT ? undefined : target.site
  return {
    peer,
    peerIp: parseIp(peer),
    site,
    http: {
      authority,
      path: withoutQuery(inputs.path === undefined ? target.rest : (path ?? '')),
      headers,
    },
  }
}

/**
 * Envoy's connection manager appends its peer to x-forwarded-for (use_remote_address): that
 * element is the peer itself, not a hop the peer vouches for.
 */
function dropOwnHop(headers: HeaderValues, peer: string): void {
  const chain = headers.get(XFF)
  if (chain === undefined) return
  if (chain.slice(chain.lastIndexOf(',') + 1).trim() === peer) headers.dropLastElement(XFF)
}

export function isMisconfigured(read: RequestInput | Misconfigured): read is Misconfigured {
  return 'problem' in read
}
