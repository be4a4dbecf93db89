// The plain types between the request steps, and the compiled policy they read: policy/compile.ts
// builds a CompiledPolicy once per load; the request path only reads it.

import type { CidrMatcher } from '../net/cidr.js'
import type { HostMatcher } from '../net/host.js'
import type { Ip } from '../net/ip.js'

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

const MODES = ['enforce', 'dry_run'] as const
export type Mode = (typeof MODES)[number]

/** Header values by lower-case name, filled by a front end (a Map in tests). */
export interface HeaderLookup {
  get(name: string): string | undefined
  has(name: string): boolean
  /** The value's bytes as the request carried them (a secret is compared byte for byte). */
  bytes(name: string): Uint8Array | undefined
  /** At most `max` characters of a value, for a front end that makes values from bytes lazily. */
  head?(name: string, max: number): string | undefined
}

/** The HTTP part of a request, as far as the decision reads it. */
export interface HttpInput {
  /** The request's Host (its authority); undefined when it has none. */
  readonly authority: string | undefined
  /** The request's path without its query string. */
  readonly path: string
  /** At most `max` characters of `path`, for a front end that makes it from bytes lazily. */
  pathHead?(max: number): string
  /** Only the headers the policy reads, lower-case keys; repeated headers joined with `,`. */
  readonly headers: HeaderLookup
}

/**
 * What the decision reads of a request: plain values that each front end fills from its wire
 * input (grpc-authz/decode.ts from a CheckRequest).
 */
export interface RequestInput {
  /** The address of the proxy's downstream peer, as written; empty when absent. */
  readonly peer: string
  /** The peer as an address (SPEC "Addresses"); undefined when it is not one. */
  readonly peerIp: Ip | undefined
  /** At most `max` characters of `peer`, for a front end that makes it from bytes lazily. */
  peerHead?(max: number): string
  /** The site the proxy names; undefined when it names none (the top level applies). */
  readonly site: string | undefined
  /** Undefined for requests without an HTTP part (network filter, TCP, empty message). */
  readonly http: HttpInput | undefined
}

/** A decision and what it was made from, as a front end hands them to the observer. */
export interface Decided {
  readonly decision: Decision
  /** What was read from the request; undefined when the front end could not read it. */
  readonly input: RequestInput | undefined
}

/** The client a request is decided for. */
export interface Client {
  /** The resolved address; undefined when unknown (a non-address in the chain, no peer). */
  readonly ip: Ip | undefined
  /** The peer, the proxy's downstream address, is a trusted proxy. */
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

/** Headers that name the client; at most one may be trusted. */
export const CLIENT_ADDRESS_HEADERS = [
  'x-forwarded-for',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
] as const
export type ClientAddressHeader = (typeof CLIENT_ADDRESS_HEADERS)[number]

/** Headers that name the host; at most one may be trusted. */
export const HOST_HEADERS = ['x-forwarded-host', 'forwarded'] as const
type HostHeader = (typeof HOST_HEADERS)[number]

/** Bounds on what a request may make hostguard parse (flags of `serve`; docs/policy.md). */
export interface Limits {
  /** Forwarding-chain entries walked at most; a longer chain makes the client unknown. */
  readonly maxForwardedHops: number
  /** Longest Host or forwarding header value parsed; a longer one is invalid (fail closed). */
  readonly maxHeaderBytes: number
}

export const DEFAULT_LIMITS: Limits = Object.freeze({ maxForwardedHops: 32, maxHeaderBytes: 8192 })

/** Header names to keep, as bytes grouped by length, so a key is matched without a string. */
export interface HeaderNames {
  /** Dense, indexed by length (an empty group where no name has that length). */
  readonly byLength: readonly (readonly HeaderName[])[]
}

export interface HeaderName {
  readonly bytes: Uint8Array
  readonly name: string
}

/**
 * The gRPC front end's answers for a site, pre-encoded CheckResponse parts that do not depend on
 * the request: built once at compile by grpc-authz/encode.ts, read only by it (the decision never
 * looks at them).
 */
export interface GrpcAnswers {
  /** headers_to_remove fields, indexed [peer trusted ? 1 : 0][client known ? 1 : 0]. */
  readonly remove: readonly [readonly [Buffer, Buffer], readonly [Buffer, Buffer]]
  /** The header key field of clientIpHeader, when configured. */
  readonly clientHeaderKey: Buffer | undefined
  /** Struct entries decision, reason, site and mode, by reason. */
  readonly metadata: ReadonlyMap<Reason, Buffer>
  /** The complete denied_response field, by deny reason. */
  readonly denied: ReadonlyMap<Reason, Buffer>
  /**
   * The whole answer when deciding failed unexpectedly: a deny with the site's status (fail
   * closed), without dynamic metadata, since no reason of SPEC's closed set applies.
   */
  readonly internalError: Buffer
  /**
   * Whole answers with the client address left blank, made on first use: by reason, peer
   * trusted and the address's length, which is all an answer varies by. A memo, not policy: the
   * only thing written after compile (bounded by REASONS × 2 × 40 address lengths).
   */
  readonly templates: Map<number, AnswerTemplate>
}

/**
 * The HTTP front end's answers for a site (http-authz/answer.ts): the parts that do not depend on
 * the request, built once at compile.
 */
export interface HttpAnswers {
  /** `x-hostguard-decision`, `-reason`, `-site`, `-mode` name/value pairs, by reason (flat). */
  readonly headers: ReadonlyMap<Reason, readonly string[]>
  /** The deny's one-line body, by deny reason. */
  readonly body: ReadonlyMap<Reason, string>
  /** `x-envoy-auth-headers-to-remove`, indexed [peer trusted ? 1 : 0][client known ? 1 : 0]. */
  readonly envoyRemove: readonly [readonly [string, string], readonly [string, string]]
}

/** An answer with the client address left blank at `clientAt` (once for the header, once in the metadata). */
export interface AnswerTemplate {
  readonly bytes: Buffer
  readonly clientAt: readonly number[]
}

interface CompiledHealthCheck {
  readonly header: string
  readonly secret: Buffer
  readonly paths: ReadonlySet<string> | undefined
}

export interface CompiledSite {
  readonly name: string
  readonly limits: Limits
  readonly trustedProxies: CidrMatcher
  /** The trusted client-address header, if any. */
  readonly clientHeader: ClientAddressHeader | undefined
  /** The trusted host header, if any. */
  readonly hostHeader: HostHeader | undefined
  readonly allowedHosts: HostMatcher
  readonly allowedCidrNets: CidrMatcher
  readonly clientAllow: CidrMatcher | undefined
  readonly clientDeny: CidrMatcher | undefined
  readonly healthCheck: CompiledHealthCheck | undefined
  readonly clientIpHeader: string | undefined
  readonly denyStatus: number
  readonly dryRun: boolean
  /** The gRPC front end's part of the compiled site. */
  readonly grpc: GrpcAnswers
  /** The HTTP front end's part of the compiled site. */
  readonly http: HttpAnswers
}

/** A header name the HTTP front end reads and its part in the dialect (http-authz/request.ts). */
export interface HttpHeaderName {
  /** Lower case. */
  readonly name: string
  /** The name as nginx's documentation, Go's net/http (Caddy, Traefik) and browsers write it. */
  readonly canonical: string
  /** The dialect's own inputs, or `kept`: a header the decision reads. */
  readonly role: 'peer' | 'authority' | 'path' | 'kept'
}

/** The names a dialect reads, dense by length as HeaderNames (an empty group where none has it). */
export type HttpHeaderTable = readonly (readonly HttpHeaderName[])[]

export interface CompiledPolicy {
  readonly top: CompiledSite
  readonly sites: ReadonlyMap<string, CompiledSite>
  /** Every header any site reads: the gRPC decoder keeps only these (grpc-authz/decode.ts). */
  readonly headerNames: HeaderNames
  /** The HTTP front end's part: its header names by dialect, built from headerNames. */
  readonly httpHeaderNames: ReadonlyMap<string, HttpHeaderTable>
}
