// The requests of the case suite: each is the CheckRequest bytes (what check(), explain and the
// server read) and, when the bytes are one, the message the official protos read from them (what
// the reference evaluator reads).

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { FIXTURES, type Message, official } from '../support/protos.js'

export interface CaseRequest {
  readonly bytes: Buffer
  /** The message with proto field names; undefined when the bytes are not a CheckRequest. */
  readonly message: Message | undefined
  /** The Envoy fixture it was read from, if any. */
  readonly fixture?: string
}

/** Where the requests come from unless a case says otherwise: an Internet client. */
export const PEER = '198.51.100.1'

export interface HttpRequest {
  /** The downstream peer; '' for a request without a source address. */
  readonly peer?: string
  /** `http.host` and the `:authority` header, as Envoy sends both. */
  readonly authority?: string
  /** `http.host` alone (with `headers` to set `:authority` or `host` apart from it). */
  readonly host?: string
  readonly headers?: Readonly<Record<string, string>>
  /** The request target, query included (default `/`). */
  readonly path?: string
  /** `context_extensions.site`. */
  readonly site?: string
}

function fromMessage(message: Message): CaseRequest {
  const bytes = official.encodeRequest(message)
  // What the reference reads is what the official protos read back, as for a fixture.
  return { bytes, message: official.decodeRequest(bytes) }
}

function source(peer: string): Message {
  return peer === '' ? {} : { source: { address: { socket_address: { address: peer } } } }
}

function siteOf(site: string | undefined): Message {
  return site === undefined ? {} : { context_extensions: { site } }
}

/** An HTTP CheckRequest as Envoy builds one. */
export function http(r: HttpRequest): CaseRequest {
  const path = r.path ?? '/'
  const host = r.host ?? r.authority
  return fromMessage({
    attributes: {
      ...source(r.peer ?? PEER),
      request: {
        http: {
          method: 'GET',
          path,
          ...(host === undefined ? {} : { host }),
          headers: {
            ':method': 'GET',
            ':path': path,
            ...(r.authority === undefined ? {} : { ':authority': r.authority }),
            ...r.headers,
          },
        },
      },
      ...siteOf(r.site),
    },
  })
}

/** A CheckRequest without an HTTP part (Envoy's network ext_authz filter). */
export function tcp(r: { readonly peer?: string; readonly site?: string }): CaseRequest {
  return fromMessage({ attributes: { ...source(r.peer ?? PEER), ...siteOf(r.site) } })
}

/** One of test/fixtures/envoy-v3, byte for byte. */
export function fixture(name: string): CaseRequest {
  const bytes = readFileSync(join(FIXTURES, `${name}.bin`))
  return { bytes, message: official.decodeRequest(bytes), fixture: name }
}

/** Raw bytes: an empty message, or bytes that are no CheckRequest at all. */
export function raw(bytes: Buffer): CaseRequest {
  let message: Message | undefined
  try {
    message = official.decodeRequest(bytes)
  } catch {
    message = undefined
  }
  return { bytes, message }
}
