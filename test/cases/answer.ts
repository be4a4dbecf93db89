// The answer every implementation is held to: what SPEC says a CheckResponse carries, as plain
// data. Each implementation's own output is turned into this one shape before it is compared.

import type { Mode, Reason } from '../../src/decision/types.js'
import { officialRoot } from '../support/proto-json.js'
import { type Message, official } from '../support/protos.js'

export interface Answer {
  /** What was decided (also in dry run, where a deny is answered as an allow). */
  readonly decision: 'allow' | 'deny'
  readonly reason: Reason
  readonly site: string
  readonly mode: Mode
  /** The resolved client address; undefined when it is unknown. */
  readonly client: string | undefined
  /** The HTTP status of a denied answer; undefined when the answer is an allow (`ok_response`). */
  readonly status: number | undefined
  /** Headers set on an allowed answer, as `name: value`. */
  readonly set: readonly string[]
  /** `headers_to_remove` of an allowed answer, sorted (Envoy reads it as a set). */
  readonly remove: readonly string[]
}

// envoy.type.v3.StatusCode by name, from the official protos: proto-loader gives enum names.
const STATUS_CODES = new Map(
  Object.entries(
    officialRoot(['envoy/type/v3/http_status.proto']).lookupEnum('envoy.type.v3.StatusCode').values,
  ),
)

/** A CheckResponse, as Envoy reads it, in the common shape; throws where it is inconsistent. */
export function answerOf(response: Buffer): Answer {
  const r: Message = official.decodeResponse(response)
  const meta: Record<string, string> = {}
  for (const [k, v] of Object.entries(r.dynamic_metadata?.fields ?? {}))
    meta[k] = (v as Message).stringValue
  const grpcCode = r.status?.code ?? 0
  const ok = r.ok_response !== undefined || r.denied_response === undefined
  // Envoy allows on status 0 whatever else is set: the status and the answer must agree.
  if (ok !== (grpcCode === 0)) throw new Error(`gRPC status ${grpcCode} on a ${r.http_response}`)
  for (const h of r.ok_response?.headers ?? [])
    if (h.append_action !== 'OVERWRITE_IF_EXISTS_OR_ADD')
      throw new Error(`header ${h.header?.key} is not overwritten: a client's value would stay`)
  const statusName: string | undefined = r.denied_response?.status?.code
  return {
    decision: meta['decision'] as Answer['decision'],
    reason: meta['reason'] as Reason,
    site: meta['site'] as string,
    mode: meta['mode'] as Mode,
    client: meta['client'],
    // A denied_response without a status is answered 403 by Envoy.
    status: ok ? undefined : statusName === undefined ? 403 : STATUS_CODES.get(statusName),
    set: (r.ok_response?.headers ?? []).map((h: Message) => `${h.header.key}: ${h.header.value}`),
    remove: [...(r.ok_response?.headers_to_remove ?? [])].sort(),
  }
}
