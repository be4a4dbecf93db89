// decode's answer and the official protos' reading of the same bytes, both as plain data, so that
// tests compare them by value.

import { expect } from 'vitest'
import type { RequestInput } from '../../src/decision/types.js'
import { HeaderValues } from '../../src/grpc-authz/decode.js'
import { parseIp } from '../../src/net/ip.js'
import type { Message } from './protos.js'

/**
 * decode's answer as plain data: its peer and path are getters, and its headers a HeaderValues
 * (which keeps them private), here a Map.
 */
export function plain(input: RequestInput | undefined) {
  if (!input) return input
  const http = input.http
  if (http) expect(http.headers).toBeInstanceOf(HeaderValues)
  return {
    peer: input.peer,
    peerIp: input.peerIp,
    site: input.site,
    http: http && {
      authority: http.authority,
      path: http.path,
      headers: new Map((http.headers as HeaderValues).entries()),
    },
  }
}

/** What SPEC reads, the headers named in `wanted`, from a message the official protos decoded. */
export function specFields(message: Message, wanted: readonly string[]) {
  const attributes = message.attributes ?? {}
  const http = attributes.request?.http
  const headers = new Map<string, string>()
  for (const [k, v] of Object.entries(http?.headers ?? {})) headers.set(k, String(v))
  const lines = new Map<string, string[]>()
  for (const h of http?.header_map?.headers ?? []) {
    // Envoy sets raw_value alone; where both come, decode lets raw_value win.
    const value = h.raw_value ? Buffer.from(h.raw_value).toString('utf8') : (h.value ?? '')
    lines.set(h.key ?? '', [...(lines.get(h.key ?? '') ?? []), value])
  }
  for (const [k, v] of lines) if (!headers.has(k)) headers.set(k, v.join(','))
  const path: string = http?.path ?? ''
  const peer: string = attributes.source?.address?.socket_address?.address ?? ''
  return {
    peer,
    // The address parser reads the string here and the bytes in decode: the same answer.
    peerIp: parseIp(peer),
    site: attributes.context_extensions?.site,
    http: http && {
      authority: http.host || headers.get(':authority') || headers.get('host') || undefined,
      path: path.split('?')[0],
      headers: new Map([...headers].filter(([k]) => wanted.includes(k))),
    },
  }
}
