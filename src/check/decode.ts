// CheckRequest bytes → CheckInput. The only file that knows the request's field numbers
// (proto/envoy/service/auth/v3/*.proto, checked against the official protos in the tests).
// It reads the wire format directly, keeping only the fields SPEC reads and only the headers the
// policy names: a generic decode builds an object for every header and attribute Envoy sends.
// Malformed bytes give undefined, never a throw; unknown fields are skipped, and a message field
// that occurs twice is merged, as protobuf requires.

import { LEN, WireReader } from './protobuf.js'
import type { CheckInput, HttpInput } from './types.js'

// envoy.service.auth.v3.CheckRequest
const CHECK_REQUEST_ATTRIBUTES = 1
// envoy.service.auth.v3.AttributeContext
const ATTRIBUTES_SOURCE = 1
const ATTRIBUTES_REQUEST = 4
const ATTRIBUTES_CONTEXT_EXTENSIONS = 10
// AttributeContext.Peer → config.core.v3.Address → SocketAddress
const PEER_ADDRESS = 1
const ADDRESS_SOCKET_ADDRESS = 1
const SOCKET_ADDRESS_ADDRESS = 2
// AttributeContext.Request
const REQUEST_HTTP = 2
// AttributeContext.HttpRequest
const HTTP_METHOD = 2
const HTTP_HEADERS = 3
const HTTP_PATH = 4
const HTTP_HOST = 5
const HTTP_HEADER_MAP = 13
// config.core.v3.HeaderMap and HeaderValue
const HEADER_MAP_HEADERS = 1
const HEADER_KEY = 1
const HEADER_VALUE = 2
const HEADER_RAW_VALUE = 3
// map<string, string> entries
const MAP_KEY = 1
const MAP_VALUE = 2

const SITE_KEY = 'site'

/** Accumulates fields across the whole message, so repeated message fields merge. */
class Fields {
  peer = ''
  site: string | undefined = undefined
  hasHttp = false
  host = ''
  path = ''
  method = ''
  readonly headers = new Map<string, string>()
  /** header_map values, one entry per header line, joined at the end like Envoy's map. */
  readonly rawHeaders = new Map<string, string[]>()
  readonly wanted: ReadonlySet<string>

  constructor(wanted: ReadonlySet<string>) {
    this.wanted = wanted
  }
}

type MessageReader = (r: WireReader, f: Fields) => boolean

/**
 * Reads one length-delimited field as a nested message with `read`, leaving the reader after
 * it. The nested reader shares the buffer and stops at the field's end.
 */
function nested(r: WireReader, f: Fields, read: MessageReader): boolean {
  if (!r.length()) return false
  const inner = new WireReader(r.buf, r.pos, r.valueEnd)
  if (!read(inner, f)) return false
  r.pos = r.valueEnd
  return true
}

/** Calls `onField` for each LEN field whose number it handles; skips all else. */
function eachField(
  r: WireReader,
  f: Fields,
  onField: (fieldNumber: number, r: WireReader, f: Fields) => boolean | undefined,
): boolean {
  while (r.pos < r.end) {
    if (!r.field()) return false
    if (r.wireType === LEN) {
      const handled = onField(r.fieldNumber, r, f)
      if (handled === false) return false
      if (handled === true) continue
    }
    if (!r.skip()) return false
  }
  return true
}

function readString(r: WireReader): string | undefined {
  if (!r.length()) return undefined
  // Invalid UTF-8 becomes U+FFFD, which no host, address or secret check accepts.
  const value = r.buf.toString('utf8', r.pos, r.valueEnd)
  r.pos = r.valueEnd
  return value
}

/** A map<string, string> entry; undefined when malformed. */
function readMapEntry(r: WireReader): [string, string] | undefined {
  if (!r.length()) return undefined
  const entry = new WireReader(r.buf, r.pos, r.valueEnd)
  r.pos = r.valueEnd
  let key = ''
  let value = ''
  while (entry.pos < entry.end) {
    if (!entry.field()) return undefined
    if (
      entry.wireType === LEN &&
      (entry.fieldNumber === MAP_KEY || entry.fieldNumber === MAP_VALUE)
    ) {
      const s = readString(entry)
      if (s === undefined) return undefined
      if (entry.fieldNumber === MAP_KEY) key = s
      else value = s
    } else if (!entry.skip()) {
      return undefined
    }
  }
  return [key, value]
}

const readSocketAddress: MessageReader = (r, f) =>
  eachField(r, f, (n, r, f) => {
    if (n !== SOCKET_ADDRESS_ADDRESS) return undefined
    const s = readString(r)
    if (s === undefined) return false
    f.peer = s
    return true
  })

const readAddress: MessageReader = (r, f) =>
  eachField(r, f, (n, r, f) =>
    n === ADDRESS_SOCKET_ADDRESS ? nested(r, f, readSocketAddress) : undefined,
  )

const readPeer: MessageReader = (r, f) =>
  eachField(r, f, (n, r, f) => (n === PEER_ADDRESS ? nested(r, f, readAddress) : undefined))

const readHeaderValue: MessageReader = (r, f) => {
  let key = ''
  let value = ''
  let raw: string | undefined
  const ok = eachField(r, f, (n, r) => {
    if (n !== HEADER_KEY && n !== HEADER_VALUE && n !== HEADER_RAW_VALUE) return undefined
    const s = readString(r)
    if (s === undefined) return false
    if (n === HEADER_KEY) key = s
    else if (n === HEADER_VALUE) value = s
    else raw = s
    return true
  })
  if (!ok) return false
  if (f.wanted.has(key)) {
    // Envoy sets raw_value alone with encode_raw_headers; value otherwise.
    const line = raw ?? value
    const lines = f.rawHeaders.get(key)
    if (lines) lines.push(line)
    else f.rawHeaders.set(key, [line])
  }
  return true
}

const readHeaderMap: MessageReader = (r, f) =>
  eachField(r, f, (n, r, f) =>
    n === HEADER_MAP_HEADERS ? nested(r, f, readHeaderValue) : undefined,
  )

const readHttp: MessageReader = (r, f) => {
  f.hasHttp = true
  return eachField(r, f, (n, r, f) => {
    switch (n) {
      case HTTP_HEADERS: {
        const entry = readMapEntry(r)
        if (!entry) return false
        if (f.wanted.has(entry[0])) f.headers.set(entry[0], entry[1])
        return true
      }
      case HTTP_HEADER_MAP:
        return nested(r, f, readHeaderMap)
      case HTTP_METHOD:
      case HTTP_PATH:
      case HTTP_HOST: {
        const s = readString(r)
        if (s === undefined) return false
        if (n === HTTP_METHOD) f.method = s
        else if (n === HTTP_PATH) f.path = s
        else f.host = s
        return true
      }
      default:
        return undefined
    }
  })
}

const readRequest: MessageReader = (r, f) =>
  eachField(r, f, (n, r, f) => (n === REQUEST_HTTP ? nested(r, f, readHttp) : undefined))

const readAttributes: MessageReader = (r, f) =>
  eachField(r, f, (n, r, f) => {
    switch (n) {
      case ATTRIBUTES_SOURCE:
        return nested(r, f, readPeer)
      case ATTRIBUTES_REQUEST:
        return nested(r, f, readRequest)
      case ATTRIBUTES_CONTEXT_EXTENSIONS: {
        const entry = readMapEntry(r)
        if (!entry) return false
        if (entry[0] === SITE_KEY) f.site = entry[1]
        return true
      }
      default:
        return undefined
    }
  })

const readCheckRequest: MessageReader = (r, f) =>
  eachField(r, f, (n, r, f) =>
    n === CHECK_REQUEST_ATTRIBUTES ? nested(r, f, readAttributes) : undefined,
  )

function httpInput(f: Fields): HttpInput {
  // Envoy sends either `headers` or `header_map`; a request with both keeps `headers` values.
  for (const [key, lines] of f.rawHeaders) {
    if (!f.headers.has(key)) f.headers.set(key, lines.join(','))
  }
  const query = f.path.indexOf('?')
  const authority = f.host || f.headers.get(':authority') || f.headers.get('host') || undefined
  return {
    authority,
    path: query < 0 ? f.path : f.path.slice(0, query),
    method: f.method,
    headers: f.headers,
  }
}

/**
 * Decodes a CheckRequest, keeping the headers named in `wanted` (lower case). Undefined when the
 * bytes are not a CheckRequest (truncated, bad lengths, malformed keys).
 */
export function decode(bytes: Buffer, wanted: ReadonlySet<string>): CheckInput | undefined {
  const fields = new Fields(wanted)
  if (!readCheckRequest(new WireReader(bytes, 0, bytes.length), fields)) return undefined
  return {
    peer: fields.peer,
    site: fields.site,
    http: fields.hasHttp ? httpInput(fields) : undefined,
  }
}
