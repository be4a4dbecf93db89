import type { CidrRange } from '../net/cidr.js'
import type { PolicyError } from './errors.js'

/** What `trustedHeaders` may list. */
export const TRUSTABLE_HEADERS = [
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-scheme',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
] as const
export type TrustableHeader = (typeof TRUSTABLE_HEADERS)[number]

/** The forwarding headers hostguard knows; every one the policy does not trust is removed. */
export const FORWARDING_HEADERS = [
  ...TRUSTABLE_HEADERS,
  'true-client-ip',
  'cf-connecting-ip',
] as const

/** Used when neither the site nor the top level sets `trustedHeaders` (see docs/policy.md). */
export const DEFAULT_TRUSTED_HEADERS: readonly TrustableHeader[] = [
  'x-forwarded-for',
  'x-forwarded-proto',
]

export const DEFAULT_DENY_STATUS = 403

/** The 4xx and 5xx codes of envoy.type.v3.StatusCode: Envoy rejects any other. */
export const DENY_STATUSES: ReadonlySet<number> = new Set([
  400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
  422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
])

/** The name the top level reports as its site; no site may take it. */
export const TOP_LEVEL_SITE = 'default'

export interface HealthCheckSpec {
  readonly header: string
  /** The secret's bytes; never logged or printed. */
  readonly secret: Buffer
  readonly paths: readonly string[] | undefined
}

/** The Node address types that hold IP addresses (the DNS and Hostname types do not). */
export const NODE_ADDRESS_TYPES = ['InternalIP', 'ExternalIP'] as const
export type NodeAddressType = (typeof NODE_ADDRESS_TYPES)[number]

/**
 * A set of addresses that changes while hostguard runs. `name` identifies it in metrics, logs and
 * the cache: derived from the policy text only, so equal entries anywhere share one source.
 */
export type AddressSource =
  | {
      readonly kind: 'k8s-nodes'
      readonly name: string
      readonly labelSelector: string
      readonly addressTypes: readonly NodeAddressType[]
    }
  | { readonly kind: 'file'; readonly name: string; readonly path: string }

/** An IP/CIDR list of the policy: literal ranges and dynamic sources side by side. */
export interface AddressList {
  readonly ranges: readonly CidrRange[]
  readonly sources: readonly AddressSource[]
}

export interface ClientCidrsSpec {
  readonly allow: AddressList | undefined
  readonly deny: AddressList | undefined
}

export interface DenySpec {
  readonly status: number
  readonly showReason: boolean
}

/**
 * One site's fields as validated, before compiling. Absent (undefined) means inherited from the
 * top level; null, allowed for the optional blocks, switches an inherited one off in a site.
 */
export interface SiteSpec {
  readonly trustedProxies?: AddressList
  readonly trustedHeaders?: readonly TrustableHeader[]
  readonly allowedHosts?: readonly string[]
  readonly allowedCidrNets?: AddressList
  readonly clientCidrs?: ClientCidrsSpec | null
  readonly healthCheck?: HealthCheckSpec | null
  readonly clientIpHeader?: string | null
  readonly deny?: DenySpec
  readonly dryRun?: boolean
}

export interface PolicySpec {
  readonly top: SiteSpec
  readonly sites: ReadonlyMap<string, SiteSpec>
  /** Valid but risky settings, with their positions (POLICY_WARN_* codes). */
  readonly warnings: readonly PolicyError[]
}
