// An HTTP authorization request → the core's RequestInput (SPEC "HTTP authorization"). The URL
// names the dialect and the site; each dialect reads the peer, the authority and the path from
// headers its proxy sets or overwrites itself, never from one a client could pass through.

import type { HeaderLookup, HeaderNames, RequestInput } from '../decision/types.js'
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
  const dialect = DIALECTS.find((d) => d.length === dialectEnd - 1 && url.startsWith(d, 1))
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
  readonly values = new Map<string, string>()

  get(name: string): string | undefined {
    return this.values.get(name)
  }

  has(name: string): boolean {
    return this.values.has(name)
  }

  /** Node reads header bytes as latin1, so latin1 gives the bytes back as the proxy sent them. */
  bytes(name: string): Uint8Array | undefined {
    const value = this.values.get(name)
    return value === undefined ? undefined : Buffer.from(value, 'latin1')
  }
}

function withoutQuery(target: string): string {
  const q = target.indexOf('?')
  return q < 0 ? target : target.slice(0, q)
}

/** Whether `name` (lower case) is one of `wanted`'s. */
function isWanted(wanted: HeaderNames, name: string): boolean {
  const group = wanted.byLength[name.length]
  if (group === undefined) return false
  for (const n of group) if (n.name === name) return true
  return false
}

/**
 * The core's input for a request to `target`, from Node's `rawHeaders` (name, value, name, …,
 * names as sent, values trimmed): a dialect's own input headers must come exactly once, and are
 * not among the headers evaluated. Of the others only `wanted` are kept (the policy's
 * headerNames, what the decision reads, as the gRPC decoder keeps them), and x-forwarded-for
 * where the dialect reads it itself.
 */
export function readRequest(
  target: AuthzTarget,
  rawHeaders: readonly string[],
  wanted: HeaderNames,
): RequestInput | Misconfigured {
  const inputs = INPUTS[target.dialect]
  const readsXff = inputs.peer === undefined || target.dialect === 'envoy'
  const headers = new HeaderValues()
  let peer: string | undefined
  let authority: string | undefined
  let path: string | undefined
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const raw = rawHeaders[i] as string
    // A name of no wanted length is skipped without making its lower case: most of a browser's
    // headers. (Lower-casing keeps an ASCII name's length; no other can equal a wanted one.)
    const length = raw.length
    if (
      (wanted.byLength[length]?.length ?? 0) === 0 &&
      length !== inputs.peer?.length &&
      length !== inputs.authority.length &&
      length !== inputs.path?.length &&
      !(readsXff && length === XFF.length)
    )
      continue
    const name = raw.toLowerCase()
    const value = rawHeaders[i + 1] as string
    if (name === inputs.peer || name === inputs.authority || name === inputs.path) {
      const given = name === inputs.peer ? peer : name === inputs.authority ? authority : path
      if (given !== undefined) return { header: name, problem: 'repeated' }
      if (name === inputs.peer) peer = value
      else if (name === inputs.authority) authority = value
      else path = value
      continue
    }
    if (!isWanted(wanted, name) && !(readsXff && name === XFF)) continue
    const before = headers.values.get(name)
    headers.values.set(name, before === undefined ? value : `${before},${value}`)
  }
  if (inputs.peer === undefined) {
    // Traefik appends its peer to x-forwarded-for: the last element is the peer, the ones
    // before it are the chain a trusted peer vouches for.
    const chain = headers.values.get(XFF)
    if (chain === undefined) return { header: XFF, problem: 'missing' }
    const comma = chain.lastIndexOf(',')
    peer = chain.slice(comma + 1).trim()
    if (comma < 0) headers.values.delete(XFF)
    else headers.values.set(XFF, chain.slice(0, comma))
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
  const chain = headers.values.get(XFF)
  if (chain === undefined) return
  const comma = chain.lastIndexOf(',')
  if (chain.slice(comma + 1).trim() !== peer) return
  if (comma < 0) headers.values.delete(XFF)
  else headers.values.set(XFF, chain.slice(0, comma))
}

export function isMisconfigured(read: RequestInput | Misconfigured): read is Misconfigured {
  return 'problem' in read
}
