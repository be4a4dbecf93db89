// Decision → CheckResponse bytes. Everything that depends only on the site and the reason is
// encoded once when the policy is compiled; per request only the client address is written.

import { STATUS_CODES } from 'node:http'
import { formatIp } from '../net/ip.js'
import { denyStatusFor, isAllowReason, modeFor } from './evaluate.js'
import { messageField, stringField, varintField } from './protobuf.js'
import { type Decision, REASONS, type Reason } from './types.js'

// envoy.service.auth.v3.CheckResponse
const RESPONSE_STATUS = 1
const RESPONSE_DENIED = 2
const RESPONSE_OK = 3
const RESPONSE_DYNAMIC_METADATA = 4
// google.rpc.Status
const STATUS_CODE = 1
// DeniedHttpResponse
const DENIED_STATUS = 1
const DENIED_HEADERS = 2
const DENIED_BODY = 3
// OkHttpResponse
const OK_HEADERS = 2
const OK_HEADERS_TO_REMOVE = 5
// envoy.type.v3.HttpStatus
const HTTP_STATUS_CODE = 1
// config.core.v3.HeaderValueOption and HeaderValue
const OPTION_HEADER = 1
const OPTION_APPEND_ACTION = 3
const OVERWRITE_IF_EXISTS_OR_ADD = 2
const HEADER_KEY = 1
const HEADER_VALUE = 2
// google.protobuf.Struct, its map entry and Value
const STRUCT_FIELDS = 1
const ENTRY_KEY = 1
const ENTRY_VALUE = 2
const VALUE_STRING = 3

/** gRPC PERMISSION_DENIED: Envoy denies on any non-OK status and answers with denied_response. */
const GRPC_PERMISSION_DENIED = 7

const EMPTY = Buffer.alloc(0)
const STATUS_OK = messageField(RESPONSE_STATUS)
const STATUS_DENIED = messageField(
  RESPONSE_STATUS,
  varintField(STATUS_CODE, GRPC_PERMISSION_DENIED),
)
const OVERWRITE = varintField(OPTION_APPEND_ACTION, OVERWRITE_IF_EXISTS_OR_ADD)

function structEntry(key: string, value: string): Buffer {
  return messageField(
    STRUCT_FIELDS,
    stringField(ENTRY_KEY, key),
    messageField(ENTRY_VALUE, stringField(VALUE_STRING, value)),
  )
}

/** The parts of a site's answers that do not depend on the request. */
export interface SiteAnswers {
  /** headers_to_remove fields, indexed [peer trusted ? 1 : 0][client known ? 1 : 0]. */
  readonly remove: readonly [readonly [Buffer, Buffer], readonly [Buffer, Buffer]]
  /** The header key field of clientIpHeader, when configured. */
  readonly clientHeaderKey: Buffer | undefined
  /** Struct entries decision, reason, site and mode, by reason. */
  readonly metadata: ReadonlyMap<Reason, Buffer>
  /** The complete denied_response field, by deny reason. */
  readonly denied: ReadonlyMap<Reason, Buffer>
}

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

function removals(
  headers: readonly string[],
  clientIpHeader: string | undefined,
): [Buffer, Buffer] {
  const encode = (names: readonly string[]): Buffer =>
    Buffer.concat(names.map((name) => stringField(OK_HEADERS_TO_REMOVE, name)))
  // Envoy applies removals after sets, so the client header is never in both: removed when the
  // client is unknown (a value the client sent must not reach the backend), set when known.
  const withoutClientHeader = headers.filter((h) => h !== clientIpHeader)
  const unknownClient = clientIpHeader
    ? [...withoutClientHeader, clientIpHeader]
    : withoutClientHeader
  return [encode(unknownClient), encode(withoutClientHeader)]
}

export function prepareAnswers(settings: AnswerSettings): SiteAnswers {
  const metadata = new Map<Reason, Buffer>()
  const denied = new Map<Reason, Buffer>()
  for (const reason of REASONS) {
    const allowed = isAllowReason(reason)
    metadata.set(
      reason,
      Buffer.concat([
        structEntry('decision', allowed ? 'allow' : 'deny'),
        structEntry('reason', reason),
        structEntry('site', settings.name),
        structEntry('mode', modeFor(settings.dryRun, reason)),
      ]),
    )
    if (allowed) continue
    const status = denyStatusFor(reason, settings.denyStatus)
    const phrase = STATUS_CODES[status] ?? 'Denied'
    const body = settings.showReason ? `${phrase}: ${reason}\n` : `${phrase}\n`
    denied.set(
      reason,
      messageField(
        RESPONSE_DENIED,
        messageField(DENIED_STATUS, varintField(HTTP_STATUS_CODE, status)),
        messageField(
          DENIED_HEADERS,
          messageField(
            OPTION_HEADER,
            stringField(HEADER_KEY, 'content-type'),
            stringField(HEADER_VALUE, 'text/plain; charset=utf-8'),
          ),
          OVERWRITE,
        ),
        stringField(DENIED_BODY, body),
      ),
    )
  }
  return {
    remove: [
      removals(settings.removeUntrusted, settings.clientIpHeader),
      removals(settings.removeTrusted, settings.clientIpHeader),
    ],
    clientHeaderKey: settings.clientIpHeader
      ? stringField(HEADER_KEY, settings.clientIpHeader)
      : undefined,
    metadata,
    denied,
  }
}

export function encode(decision: Decision): Buffer {
  const answers = decision.site.answers
  const client = decision.client.ip ? formatIp(decision.client.ip) : undefined
  const metadata = messageField(
    RESPONSE_DYNAMIC_METADATA,
    answers.metadata.get(decision.reason) ?? EMPTY,
    client === undefined ? EMPTY : structEntry('client', client),
  )
  if (decision.allowed || decision.mode === 'dry_run') {
    const remove = answers.remove[decision.client.peerTrusted ? 1 : 0][client === undefined ? 0 : 1]
    const setClient =
      client !== undefined && answers.clientHeaderKey
        ? messageField(
            OK_HEADERS,
            messageField(OPTION_HEADER, answers.clientHeaderKey, stringField(HEADER_VALUE, client)),
            OVERWRITE,
          )
        : EMPTY
    return Buffer.concat([STATUS_OK, messageField(RESPONSE_OK, setClient, remove), metadata])
  }
  return Buffer.concat([STATUS_DENIED, answers.denied.get(decision.reason) ?? EMPTY, metadata])
}
