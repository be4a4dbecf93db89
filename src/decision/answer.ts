// What every front end's answer is made of, whatever its wire: the settings of a site that shape
// its answers (policy/compile.ts hands them to each front end once per load) and the headers an
// allow removes before the backend sees the request.

import type { Reason } from './types.js'

export interface AnswerSettings {
  readonly name: string
  /** Forwarding headers removed when the peer is not trusted, and when it is. */
  readonly removeUntrusted: readonly string[]
  readonly removeTrusted: readonly string[]
  readonly clientIpHeader: string | undefined
  readonly denyStatus: number
  readonly showReason: boolean
  readonly dryRun: boolean
}

/**
 * The headers an allow removes, for a client that is unknown and for one that is known. The
 * client header is never both set and removed (Envoy applies removals after sets): removed when
 * the client is unknown, so a value the client sent never reaches the backend, set when known.
 */
export function removedHeaders(
  headers: readonly string[],
  clientIpHeader: string | undefined,
): [unknownClient: string[], knownClient: string[]] {
  const withoutClientHeader = headers.filter((h) => h !== clientIpHeader)
  return [
    clientIpHeader ? [...withoutClientHeader, clientIpHeader] : withoutClientHeader,
    withoutClientHeader,
  ]
}

/** A deny's one-line body: its status's phrase, and the reason when the policy shows it. */
export function denyBody(phrase: string | undefined, reason: Reason | undefined): string {
  const text = phrase ?? 'Denied'
  return reason ? `${text}: ${reason}\n` : `${text}\n`
}
