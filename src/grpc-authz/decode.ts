// CheckRequest bytes → RequestInput. The only file that knows the request's field numbers
// (proto/envoy/service/auth/v3/*.proto, checked against the official protos in the tests).
// It reads the wire format directly and makes strings only of what SPEC reads: header keys are
// compared as bytes against the names the policy uses, since turning a short buffer slice into a
// string costs about 90 ns and Envoy sends 10-20 headers (bench/decode.bench.ts); the peer is
// parsed as an address where it lies, and the peer, the path and header values become strings
// only when read.
// Malformed bytes (field number 0 among them) give undefined, never a throw. As protobuf requires,
// unknown fields and fields of an unexpected wire type are skipped, a message field that occurs
// twice is merged, of other fields and of a oneof's members the last one wins. The fast paths
// for Envoy's usual header entries read exactly what the general path reads
// (test/property/decode.test.ts).
// What fills RequestInput: peer = attributes.source.address.socket_address.address; site =
// attributes.context_extensions["site"]; authority = http.host, else the `:authority` header, else
// `host`; path = http.path without its query string; http undefined without request.http.

import type { HeaderName, HeaderNames, HttpInput, RequestInput } from '../decision/types.js'
import { type Ip, parseIpRange } from '../net/ip.js'
import { LEN, utf8Text, WireReader } from './protobuf.js'

// envoy.service.auth.v3.CheckRequest
const CHECK_REQUEST_ATTRIBUTES = 1
// envoy.service.auth.v3.AttributeContext
const ATTRIBUTES_SOURCE = 1
const ATTRIBUTES_REQUEST = 4
const ATTRIBUTES_CONTEXT_EXTENSIONS = 10
// AttributeContext.Peer → config.core.v3.Address → SocketAddress
const PEER_ADDRESS = 1
const ADDRESS_SOCKET_ADDRESS = 1
// Address's other members of its oneof `address` (not in proto/, which has only socket_address)
const ADDRESS_PIPE = 2
const ADDRESS_ENVOY_INTERNAL_ADDRESS = 3
const SOCKET_ADDRESS_ADDRESS = 2
// AttributeContext.Request
const REQUEST_HTTP = 2
// AttributeContext.HttpRequest
const HTTP_HEADERS = 3
const HTTP_PATH = 4
const HTTP_HOST = 5
const HTTP_HEADER_MAP = 13
// config.core.v3.HeaderMap and HeaderValue
const HEADER_MAP_HEADERS = 1
const HEADER_VALUE = 2
const HEADER_RAW_VALUE = 3
// map<string, string> entries; HeaderValue's key is field 1 too
const MAP_KEY = 1
const MAP_VALUE = 2
const KEY_TAG = MAP_KEY * 8 + LEN
/**
 * `rawField` of a map entry, which has none. Not 0: the fast path would then take key byte 0x02
 * (field number 0, wire type LEN) as a value, where the field reader rejects it.
 */
const NO_FIELD = -1
const HEADERS_TAG = HTTP_HEADERS * 8 + LEN

export function compileHeaderNames(names: Iterable<string>): HeaderNames {
  const all = [...names].map((name) => ({ bytes: Buffer.from(name, 'latin1'), name }))
  const longest = Math.max(0, ...all.map((n) => n.bytes.length))
  // Dense, so that a lookup never reads a hole or past the end (both slow paths in V8).
  const byLength: HeaderName[][] = Array.from({ length: longest + 1 }, () => [])
  for (const n of all) byLength[n.bytes.length]?.push(n)
  return { byLength }
}

const SITE = compileHeaderNames(['site'])

const COMMA_BYTE = Buffer.from(',')

/**
 * Bytes that always hold a value's first `max` UTF-16 units whole: a unit takes at most 3 bytes,
 * a surrogate pair 4 for two, so the characters of the first `max` take at most 3·max + 1.
 */
function headBytes(max: number): number {
  return 4 * max
}

/**
 * The wanted headers of one request, kept as offsets into its bytes: a value becomes a string only
 * when something reads it (most requests never read x-request-id, nor :authority and host when
 * `http.host` is set). A handful of names, so a scan beats a Map; the names are the policy's
 * own strings.
 */
export class HeaderValues {
  readonly #buf: Buffer
  readonly #names: string[] = []
  /** [start0, end0, start1, end1, …]: where each value is in #buf. */
  readonly #spans: number[] = []
  /** For a name set from header_map lines: where each of its lines is, as in #spans. */
  #lines: (readonly number[] | undefined)[] | undefined
  /** The values made so far, created when the first one is. */
  #values: (string | undefined)[] | undefined

  constructor(buf: Buffer) {
    this.#buf = buf
  }

  /** The value of `name` (lower case), repeated headers joined with `,`. */
  get(name: string): string | undefined {
    const i = this.#names.indexOf(name)
    if (i < 0) return undefined
    this.#values ??= []
    let value = this.#values[i]
    if (value === undefined) {
      // Invalid UTF-8 becomes U+FFFD, which no host, address or secret check accepts.
      const lines = this.#lines?.[i]
      value = lines
        ? joinLines(this.#buf, lines)
        : utf8Text(this.#buf, this.#spans[i * 2] as number, this.#spans[i * 2 + 1] as number)
      this.#values[i] = value
    }
    return value
  }

  has(name: string): boolean {
    return this.#names.includes(name)
  }

  /** At most `max` characters of the value, made from at most HEAD_BYTES(max) of its bytes. */
  head(name: string, max: number): string | undefined {
    const i = this.#names.indexOf(name)
    if (i < 0) return undefined
    const made = this.#values?.[i]
    if (made !== undefined) return made.slice(0, max)
    const lines = this.#lines?.[i] ?? [
      this.#spans[i * 2] as number,
      this.#spans[i * 2 + 1] as number,
    ]
    let value = ''
    let budget = headBytes(max)
    for (let k = 0; k < lines.length && budget > 0; k += 2) {
      if (k > 0) {
        value += ','
        budget--
      }
      const start = lines[k] as number
      const end = Math.min(lines[k + 1] as number, start + budget)
      value += utf8Text(this.#buf, start, end)
      budget -= end - start
    }
    return value.slice(0, max)
  }

  bytes(name: string): Uint8Array | undefined {
    const i = this.#names.indexOf(name)
    if (i < 0) return undefined
    const lines = this.#lines?.[i]
    if (lines === undefined)
      return this.#buf.subarray(this.#spans[i * 2] as number, this.#spans[i * 2 + 1] as number)
    // header_map lines, joined with `,` as get() joins them, byte for byte.
    const parts: Uint8Array[] = []
    for (let k = 0; k < lines.length; k += 2) {
      if (k > 0) parts.push(COMMA_BYTE)
      parts.push(this.#buf.subarray(lines[k] as number, lines[k + 1] as number))
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts)
  }

  /** Every kept header and its value (for comparisons in tests and the fuzzer). */
  entries(): [string, string][] {
    return this.#names.map((name) => [name, this.get(name) as string])
  }

  /** A later entry of the same name replaces an earlier one, as in a protobuf map. */
  setSpan(name: string, start: number, end: number): void {
    let i = this.#names.indexOf(name)
    if (i < 0) i = this.#names.push(name) - 1
    this.#spans[i * 2] = start
    this.#spans[i * 2 + 1] = end
    if (this.#values) this.#values[i] = undefined
    if (this.#lines) this.#lines[i] = undefined
  }

  /** The header lines at `spans` ([start0, end0, …]), joined with `,` when read. */
  setLines(name: string, spans: readonly number[]): void {
    this.setSpan(name, 0, 0)
    this.#lines ??= []
    this.#lines[this.#names.indexOf(name)] = spans
  }
}

/** The lines at `spans`, joined with `,` as Envoy joins a header map. */
function joinLines(buf: Buffer, spans: readonly number[]): string {
  let value = utf8Text(buf, spans[0] as number, spans[1] as number)
  for (let s = 2; s < spans.length; s += 2)
    value += `,${utf8Text(buf, spans[s] as number, spans[s + 1] as number)}`
  return value
}

/** The name in `names` that buf[start, end) spells, if any. */
function matchName(
  names: HeaderNames,
  buf: Buffer,
  start: number,
  end: number,
): string | undefined {
  const length = end - start
  if (length >= names.byLength.length) return undefined
  const group = names.byLength[length] as readonly HeaderName[]
  for (let g = 0; g < group.length; g++) {
    const { bytes, name } = group[g] as HeaderName
    // From the end: names of one length share prefixes (x-forwarded-…), rarely suffixes.
    let i = length - 1
    while (i >= 0 && bytes[i] === buf[start + i]) i--
    if (i < 0) return name
  }
  return undefined
}

// The nested messages, named for a switch rather than passed as functions: one call site per
// reader keeps V8's calls monomorphic (measured: passing methods to a shared helper cost ~10 %).
const ATTRIBUTES = 0
const PEER = 1
const ADDRESS = 2
const SOCKET_ADDRESS = 3
const REQUEST = 4
const HTTP = 5
const HEADER_ENTRY = 6
const HEADER_MAP = 7
const HEADER_LINE = 8
const CONTEXT_EXTENSION = 9

/**
 * One decode. Fields accumulate across the whole message, so repeated message fields merge;
 * `lines` keeps where each wanted header_map line is, joined like Envoy's map when read.
 */
class Decoder extends WireReader {
  /** Where the peer address is: parsed there, and made a string only if read. */
  peerStart = 0
  peerEnd = 0
  /** Where the last context_extensions["site"] value is, if one came. */
  hasSite = false
  siteStart = 0
  siteEnd = 0
  hasHttp = false
  /** Where `http.host` is. */
  hostStart = 0
  hostEnd = 0
  /** Where `http.path` is; made a string only if read (only health-check paths read it). */
  pathStart = 0
  pathEnd = 0
  readonly headers: HeaderValues
  /** header_map lines of each wanted name, where they are: [start0, end0, start1, end1, …]. */
  lines: Map<string, number[]> | undefined = undefined
  /** Set by `entry()`: the wanted name and where its value is. */
  entryName = ''
  entryStart = 0
  entryEnd = 0
  readonly names: HeaderNames

  // The reader itself, not a reader it holds: one object a request fewer.
  constructor(bytes: Buffer, names: HeaderNames) {
    super(bytes, 0, bytes.length)
    this.names = names
    this.headers = new HeaderValues(bytes)
  }

  /**
   * Reads the next field before `end`: 1 for a LEN field (its value is r.pos to r.valueEnd),
   * 0 for another wire type (already skipped), -1 when malformed or running past `end`.
   */
  next(end: number): number {
    if (!this.field() || this.pos > end) return -1
    if (this.wireType !== LEN) return this.skip() && this.pos <= end ? 0 : -1
    return this.length() && this.valueEnd <= end ? 1 : -1
  }

  /** Reads the LEN value just read as the nested message `message`. */
  nested(message: number): boolean {
    const end = this.valueEnd
    let ok: boolean
    switch (message) {
      case ATTRIBUTES:
        ok = this.attributes(end)
        break
      case PEER:
        ok = this.only(end, PEER_ADDRESS, ADDRESS)
        break
      case ADDRESS:
        ok = this.address(end)
        break
      case SOCKET_ADDRESS:
        ok = this.socketAddress(end)
        break
      case REQUEST:
        ok = this.only(end, REQUEST_HTTP, HTTP)
        break
      case HTTP:
        ok = this.http(end)
        break
      case HEADER_ENTRY:
        ok = this.headerEntry(end)
        break
      case HEADER_MAP:
        ok = this.only(end, HEADER_MAP_HEADERS, HEADER_LINE)
        break
      case HEADER_LINE:
        ok = this.headerLine(end)
        break
      default:
        ok = this.contextExtension(end)
    }
    return ok && this.pos === end
  }

  skipLen(): boolean {
    this.pos = this.valueEnd
    return true
  }

  checkRequest(end: number): boolean {
    return this.only(end, CHECK_REQUEST_ATTRIBUTES, ATTRIBUTES)
  }

  attributes(end: number): boolean {
    while (this.pos < end) {
      const kind = this.next(end)
      if (kind < 0) return false
      if (kind === 0) continue
      let ok: boolean
      switch (this.fieldNumber) {
        case ATTRIBUTES_SOURCE:
          ok = this.nested(PEER)
          break
        case ATTRIBUTES_REQUEST:
          ok = this.nested(REQUEST)
          break
        case ATTRIBUTES_CONTEXT_EXTENSIONS:
          ok = this.nested(CONTEXT_EXTENSION)
          break
        default:
          ok = this.skipLen()
      }
      if (!ok) return false
    }
    return this.pos === end
  }

  /**
   * Address: socket_address is one member of a oneof, and protobuf keeps the last member seen, so
   * a pipe or envoy_internal_address after it leaves no peer address.
   */
  address(end: number): boolean {
    while (this.pos < end) {
      const kind = this.next(end)
      if (kind < 0) return false
      if (kind === 0) continue
      const n = this.fieldNumber
      if (n === ADDRESS_SOCKET_ADDRESS) {
        if (!this.nested(SOCKET_ADDRESS)) return false
        continue
      }
      if (n === ADDRESS_PIPE || n === ADDRESS_ENVOY_INTERNAL_ADDRESS) {
        this.peerStart = 0
        this.peerEnd = 0
      }
      this.skipLen()
    }
    return this.pos === end
  }

  /** SocketAddress: only the address string. */
  socketAddress(end: number): boolean {
    while (this.pos < end) {
      const kind = this.next(end)
      if (kind < 0) return false
      if (kind === 0) continue
      if (this.fieldNumber === SOCKET_ADDRESS_ADDRESS) {
        this.peerStart = this.pos
        this.peerEnd = this.valueEnd
      }
      this.skipLen()
    }
    return this.pos === end
  }

  /** A message of which one LEN field, the nested message `message`, matters. */
  only(end: number, fieldNumber: number, message: number): boolean {
    while (this.pos < end) {
      const kind = this.next(end)
      if (kind < 0) return false
      if (kind === 0) continue
      if (!(this.fieldNumber === fieldNumber ? this.nested(message) : this.skipLen())) return false
    }
    return this.pos === end
  }

  http(end: number): boolean {
    this.hasHttp = true
    const buf = this.buf
    while (this.pos < end) {
      // Fast path for the 10-20 header entries, each under 128 bytes: no generic field read. It
      // and entry()'s read each entry as the general path does (test/property/decode.test.ts);
      // without them check() takes ~20 % longer (bench:ab, issue 14).
      const at = this.pos
      const length = buf[at + 1] ?? 0x80
      if (buf[at] === HEADERS_TAG && length < 0x80 && at + 2 + length <= end) {
        const entryEnd = at + 2 + length
        this.pos = at + 2
        if (!this.headerEntry(entryEnd) || this.pos !== entryEnd) return false
        continue
      }
      const kind = this.next(end)
      if (kind < 0) return false
      if (kind === 0) continue
      let ok = true
      switch (this.fieldNumber) {
        case HTTP_HEADERS:
          ok = this.nested(HEADER_ENTRY)
          break
        case HTTP_HEADER_MAP:
          ok = this.nested(HEADER_MAP)
          break
        case HTTP_PATH:
          this.pathStart = this.pos
          this.pathEnd = this.valueEnd
          ok = this.skipLen()
          break
        case HTTP_HOST:
          this.hostStart = this.pos
          this.hostEnd = this.valueEnd
          ok = this.skipLen()
          break
        default:
          ok = this.skipLen()
      }
      if (!ok) return false
    }
    return this.pos === end
  }

  /**
   * A map<string, string> entry or a HeaderValue: reads the key and the value (raw_value when
   * `rawField` occurs) without making a string of an unwanted key. 1 with `entryName`,
   * `entryStart` and `entryEnd` set when the key is wanted, 0 when it is not, -1 when malformed.
   */
  entry(end: number, names: HeaderNames, valueField: number, rawField: number): number {
    const buf = this.buf
    let keyStart = 0
    let keyEnd = 0
    let valueStart = 0
    let valueEnd = 0
    let haveRaw = false
    // Fast path for what Envoy writes: the key, then one value, each shorter than 128 bytes. It
    // sets what the loop below would set from the same two fields, and nothing when it is not sure.
    const start = this.pos
    const keyLength = buf[start + 1] ?? 0x80
    if (buf[start] === KEY_TAG && keyLength < 0x80 && start + 2 + keyLength < end) {
      const at = start + 2 + keyLength
      const tag = buf[at]
      const valueLength = buf[at + 1] ?? 0x80
      if (
        (tag === valueField * 8 + LEN || tag === rawField * 8 + LEN) &&
        valueLength < 0x80 &&
        at + 2 + valueLength === end
      ) {
        keyStart = start + 2
        keyEnd = at
        valueStart = at + 2
        valueEnd = end
        this.pos = end
      }
    }
    while (this.pos < end) {
      const kind = this.next(end)
      if (kind < 0) return -1
      if (kind === 0) continue
      const n = this.fieldNumber
      if (n === MAP_KEY) {
        keyStart = this.pos
        keyEnd = this.valueEnd
      } else if ((n === valueField && !haveRaw) || n === rawField) {
        // Envoy sets raw_value alone with encode_raw_headers; if both come, raw_value wins.
        haveRaw = n === rawField
        valueStart = this.pos
        valueEnd = this.valueEnd
      }
      this.pos = this.valueEnd
    }
    if (this.pos !== end) return -1
    const name = matchName(names, this.buf, keyStart, keyEnd)
    if (name === undefined) return 0
    this.entryName = name
    this.entryStart = valueStart
    this.entryEnd = valueEnd
    return 1
  }

  headerEntry(end: number): boolean {
    const found = this.entry(end, this.names, MAP_VALUE, NO_FIELD)
    if (found > 0) this.headers.setSpan(this.entryName, this.entryStart, this.entryEnd)
    return found >= 0
  }

  headerLine(end: number): boolean {
    const found = this.entry(end, this.names, HEADER_VALUE, HEADER_RAW_VALUE)
    if (found > 0) {
      this.lines ??= new Map()
      const spans = this.lines.get(this.entryName)
      if (spans) spans.push(this.entryStart, this.entryEnd)
      else this.lines.set(this.entryName, [this.entryStart, this.entryEnd])
    }
    return found >= 0
  }

  contextExtension(end: number): boolean {
    const found = this.entry(end, SITE, MAP_VALUE, NO_FIELD)
    if (found > 0) {
      this.hasSite = true
      this.siteStart = this.entryStart
      this.siteEnd = this.entryEnd
    }
    return found >= 0
  }

  httpInput(): HttpInput {
    // Envoy sends either `headers` or `header_map`; a request with both keeps `headers` values.
    for (const [key, spans] of this.lines ?? []) {
      if (!this.headers.has(key)) this.headers.setLines(key, spans)
    }
    const host =
      this.hostEnd > this.hostStart ? utf8Text(this.buf, this.hostStart, this.hostEnd) : ''
    return new DecodedHttp(
      host || this.headers.get(':authority') || this.headers.get('host') || undefined,
      this.headers,
      this.buf,
      this.pathStart,
      this.pathEnd,
    )
  }
}

const QUESTION_MARK = 0x3f

/** HttpInput whose path is made from the request's bytes when first read. */
class DecodedHttp implements HttpInput {
  readonly authority: string | undefined
  readonly headers: HeaderValues
  readonly #buf: Buffer
  readonly #pathStart: number
  readonly #pathEnd: number
  #path: string | undefined = undefined

  constructor(
    authority: string | undefined,
    headers: HeaderValues,
    buf: Buffer,
    pathStart: number,
    pathEnd: number,
  ) {
    this.authority = authority
    this.headers = headers
    this.#buf = buf
    this.#pathStart = pathStart
    this.#pathEnd = pathEnd
  }

  get path(): string {
    if (this.#path === undefined) {
      // Without the query string: up to the first '?' byte (never part of a UTF-8 sequence).
      let end = this.#pathStart
      while (end < this.#pathEnd && this.#buf[end] !== QUESTION_MARK) end++
      this.#path = utf8Text(this.#buf, this.#pathStart, end)
    }
    return this.#path
  }

  /** At most `max` characters of `path`, made from at most headBytes(max) of its bytes. */
  pathHead(max: number): string {
    if (this.#path !== undefined) return this.#path.slice(0, max)
    const last = Math.min(this.#pathEnd, this.#pathStart + headBytes(max))
    let end = this.#pathStart
    while (end < last && this.#buf[end] !== QUESTION_MARK) end++
    return utf8Text(this.#buf, this.#pathStart, end).slice(0, max)
  }
}

/**
 * Decodes a CheckRequest, keeping the headers named in `names`. Undefined when the bytes are not
 * a CheckRequest (truncated, bad lengths, malformed keys).
 */
export function decode(bytes: Buffer, names: HeaderNames): RequestInput | undefined {
  const d = new Decoder(bytes, names)
  if (!d.checkRequest(bytes.length)) return undefined
  return new DecodedRequest(
    bytes,
    d.peerStart,
    d.peerEnd,
    d.hasSite ? utf8Text(bytes, d.siteStart, d.siteEnd) : undefined,
    d.hasHttp ? d.httpInput() : undefined,
  )
}

/** RequestInput whose peer is parsed from the request's bytes and made a string only if read. */
class DecodedRequest implements RequestInput {
  readonly peerIp: Ip | undefined
  readonly site: string | undefined
  readonly http: HttpInput | undefined
  readonly #buf: Buffer
  readonly #peerStart: number
  readonly #peerEnd: number

  constructor(
    buf: Buffer,
    peerStart: number,
    peerEnd: number,
    site: string | undefined,
    http: HttpInput | undefined,
  ) {
    this.peerIp = parseIpRange(buf, peerStart, peerEnd)
    this.site = site
    this.http = http
    this.#buf = buf
    this.#peerStart = peerStart
    this.#peerEnd = peerEnd
  }

  get peer(): string {
    return utf8Text(this.#buf, this.#peerStart, this.#peerEnd)
  }

  /** At most `max` characters of `peer`, made from at most headBytes(max) of its bytes. */
  peerHead(max: number): string {
    const end = Math.min(this.#peerEnd, this.#peerStart + headBytes(max))
    return utf8Text(this.#buf, this.#peerStart, end).slice(0, max)
  }
}
