import type { Ip } from '../net/ip.js'
import type { CompiledSite } from '../policy/compile.js'

/** SPEC's closed set of reasons: used verbatim in answers, logs and metric labels. */
export const REASONS = [
  'unknown_site',
  'health_check',
  'client_denied',
  'client_not_allowed',
  'invalid_host',
  'host_allowed',
  'host_cidr',
  'host_not_allowed',
  'tcp_client_allowed',
  'not_http',
  'invalid_request',
] as const
export type Reason = (typeof REASONS)[number]

export const MODES = ['enforce', 'dry_run'] as const
export type Mode = (typeof MODES)[number]

/** Header values by lower-case name (decode's HeaderValues; a Map in tests). */
export interface HeaderLookup {
  get(name: string): string | undefined
  has(name: string): boolean
  /** The value's bytes as the request carried them (a secret is compared byte for byte). */
  bytes(name: string): Uint8Array | undefined
}

/** The HTTP part of a CheckRequest, as far as hostguard reads it. */
export interface HttpInput {
  /** `http.host`, else the `:authority` header, else `host`; undefined when none is set. */
  readonly authority: string | undefined
  /** `http.path` without its query string. */
  readonly path: string
  /** Only the headers the policy reads, lower-case keys; repeated headers joined with `,`. */
  readonly headers: HeaderLookup
}

/** What `decode` takes from a CheckRequest: plain values, no proto objects. */
export interface CheckInput {
  /** `attributes.source.address.socket_address.address`; empty when absent. */
  readonly peer: string
  /** The peer as an address (SPEC "Addresses"); undefined when it is not one. */
  readonly peerIp: Ip | undefined
  /** `attributes.context_extensions["site"]`; undefined when absent. */
  readonly site: string | undefined
  /** Undefined for requests without an HTTP part (network filter, TCP, empty message). */
  readonly http: HttpInput | undefined
}

/** The client a request is decided for. */
export interface Client {
  /** The resolved address; undefined when unknown (a non-address in the chain, no peer). */
  readonly ip: Ip | undefined
  /** The peer, Envoy's downstream address, is a trusted proxy. */
  readonly peerTrusted: boolean
  /**
   * Where, in the client-address header, the entries the walk read begin (the one naming the
   * client, or where the walk stopped); 0 when no header was walked. A trusted `forwarded` is
   * read for `host=` from here on only: what lies further left is the client's own writing.
   */
  readonly walkedFrom: number
}

/** The outcome of one request; built by `decide` with every field set (one object shape). */
export interface Decision {
  readonly site: CompiledSite
  readonly client: Client
  readonly reason: Reason
  /** What was decided; in dry run the answer may allow when this is false. */
  readonly allowed: boolean
  /** The HTTP status of a deny; 0 when allowed. */
  readonly status: number
  readonly mode: Mode
}

/**
 * How a decision was reached, for `explain`: the same code fills it in when one is passed; the
 * server passes none.
 */
export interface Trace {
  /** The client-address header that was walked, if any. */
  header: string | undefined
  /** The addresses examined, from the peer leftwards, as written. */
  readonly chain: string[]
  /** The rule that decided, in words: `allowedHosts ".example.org"`, `clientCidrs.deny 10.0.0.0/8`. */
  rule: string | undefined
}
