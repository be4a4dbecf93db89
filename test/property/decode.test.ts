import fc from 'fast-check'
import { describe, expect } from 'vitest'
import { compileHeaderNames, decode } from '../../src/grpc-authz/decode.js'
import { FORWARDING_HEADERS } from '../../src/policy/schema.js'
import { plain, specFields } from '../support/decoded.js'
import { prop } from '../support/prop.js'
import { official } from '../support/protos.js'
import { key, lenField, varint } from '../support/wire.js'

// Map entries (http.headers, context_extensions) and HeaderValues (header_map lines) written as
// arbitrary field lists: any order, repeated fields, unknown fields of every wire type, field 0,
// values of 128 bytes and more, non-minimal varints. decode must read each as a simple model of
// protobuf does, whatever the encoding; and as protobufjs does wherever protobufjs follows
// protobuf. It departs from protobuf in three places: it skips field number 0, which protobuf
// (C++, Go, upb) rejects; it reads a known field whatever its wire type, where protobuf treats a
// field of the wrong wire type as unknown; and it skips 5 bytes blindly after the fifth byte of a
// varint (reader.js `uint32`), misreading a non-minimal varint of 6 to 9 bytes.

const WANTED = [':authority', 'host', 'x-health', ...FORWARDING_HEADERS]
const NAMES = compileHeaderNames(WANTED)
const MAP_KEY = 1
const MAP_VALUE = 2
const RAW_VALUE = 3

interface WireField {
  readonly field: number
  /** 0-5 as in protobuf (3: an empty group with its end), 4 alone a stray end, 6-7 invalid. */
  readonly wireType: number
  /** The value of a LEN field. */
  readonly body: Uint8Array
  readonly keyPad: number
  readonly lengthPad: number
}

const pad = fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.integer({ min: 1, max: 3 }))
const text = (s: string) => Buffer.from(s, 'utf8')
const body = fc.oneof(
  fc.constantFrom(...WANTED, 'site', 'x-other', '').map(text),
  fc.string({ maxLength: 20 }).map(text),
  fc.string({ minLength: 120, maxLength: 300 }).map(text),
  fc.uint8Array({ maxLength: 200 }),
)
const wireField: fc.Arbitrary<WireField> = fc.record({
  field: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(0, MAP_KEY, MAP_VALUE, RAW_VALUE) },
    fc.integer({ min: 4, max: 2 ** 29 - 1 }),
  ),
  wireType: fc.oneof({ weight: 12, arbitrary: fc.constant(2) }, fc.nat(7)),
  body,
  keyPad: pad,
  lengthPad: pad,
})
/**
 * What Envoy writes (the key, then the value, minimal varints: the shape a fast path takes), and
 * its near misses: the two fields the other way round, the value as another field number.
 */
const envoyEntry = fc
  .tuple(
    fc.constantFrom(...WANTED, 'site', 'x-other'),
    fc.string({ maxLength: 140 }),
    fc.constantFrom(MAP_VALUE, MAP_VALUE, RAW_VALUE, 0),
    fc.boolean(),
  )
  .map(([k, v, valueField, swapped]): WireField[] => {
    const fields: WireField[] = [
      { field: MAP_KEY, wireType: 2, body: text(k), keyPad: 0, lengthPad: 0 },
      { field: valueField, wireType: 2, body: text(v), keyPad: 0, lengthPad: 0 },
    ]
    return swapped ? fields.reverse() : fields
  })
const entry = fc.oneof(envoyEntry, fc.array(wireField, { maxLength: 5 }))
const entries = fc.array(entry, { maxLength: 4 })

/** One field's bytes; `extraPad` more redundant bytes in every varint (0 writes it as given). */
function writeField(f: WireField, extraPad: number): Buffer {
  const keyPad = f.keyPad + extraPad
  switch (f.wireType) {
    case 0:
      return Buffer.from([...key(f.field, 0, keyPad), ...varint(300, extraPad)])
    case 1:
      return Buffer.from([...key(f.field, 1, keyPad), 1, 2, 3, 4, 5, 6, 7, 8])
    case 2:
      return lenField(f.field, f.body, keyPad, f.lengthPad + extraPad)
    case 3:
      return Buffer.from([...key(f.field, 3, keyPad), ...key(f.field, 4)])
    case 5:
      return Buffer.from([...key(f.field, 5, keyPad), 1, 2, 3, 4])
    default:
      return Buffer.from(key(f.field, f.wireType, keyPad))
  }
}

interface Request {
  readonly headers: WireField[][]
  readonly lines: WireField[][]
  readonly extensions: WireField[][]
}
const request: fc.Arbitrary<Request> = fc.record({
  headers: entries,
  lines: entries,
  extensions: entries,
})

/** CheckRequest{attributes{request{http{headers, header_map{headers}}}, context_extensions}}. */
function writeRequest(r: Request, extraPad: number): Buffer {
  const message = (field: number, ...parts: Buffer[]) =>
    lenField(field, Buffer.concat(parts), extraPad, extraPad)
  const fields = (fs: WireField[]) => Buffer.concat(fs.map((f) => writeField(f, extraPad)))
  const http = Buffer.concat([
    ...r.headers.map((e) => message(3, fields(e))),
    ...(r.lines.length > 0 ? [message(13, ...r.lines.map((e) => message(1, fields(e))))] : []),
  ])
  return message(
    1,
    message(4, message(2, http)),
    ...r.extensions.map((e) => message(10, fields(e))),
  )
}

const malformed = (fs: WireField[]) =>
  fs.some((f) => f.field === 0 || f.wireType === 4 || f.wireType > 5)
/** The last LEN field numbered `field`: the last one wins; one of another wire type is unknown. */
const last = (fs: WireField[], field: number) =>
  fs.findLast((f) => f.field === field && f.wireType === 2)?.body
const utf8 = (b: Uint8Array | undefined) => Buffer.from(b ?? []).toString('utf8')

/** The model: what decode must answer for `r`, written as plainly as possible. */
function expected(r: Request) {
  if ([...r.headers, ...r.lines, ...r.extensions].some(malformed)) return undefined
  const headers = new Map<string, string>()
  for (const e of r.headers) headers.set(utf8(last(e, MAP_KEY)), utf8(last(e, MAP_VALUE)))
  const lines = new Map<string, string[]>()
  for (const e of r.lines) {
    const name = utf8(last(e, MAP_KEY))
    // Envoy sets raw_value alone; where both come, raw_value wins.
    const value = utf8(last(e, RAW_VALUE) ?? last(e, MAP_VALUE))
    lines.set(name, [...(lines.get(name) ?? []), value])
  }
  for (const [name, values] of lines) if (!headers.has(name)) headers.set(name, values.join(','))
  const site = r.extensions.findLast((e) => utf8(last(e, MAP_KEY)) === 'site')
  return {
    peer: '',
    peerIp: undefined,
    site: site && utf8(last(site, MAP_VALUE)),
    http: {
      authority: headers.get(':authority') || headers.get('host') || undefined,
      path: '',
      headers: new Map([...headers].filter(([name]) => WANTED.includes(name))),
    },
  }
}

/**
 * Where protobufjs reads as protobuf does: no field 0, known fields with their wire type, no
 * varint longer than 5 bytes (written without extra padding).
 */
function protobufjsFollowsProtobuf(r: Request): boolean {
  const short = (f: WireField) =>
    key(f.field, f.wireType, f.keyPad).length <= 5 && varint(f.body.length, f.lengthPad).length <= 5
  const typed = (known: number[]) => (fs: WireField[]) =>
    !malformed(fs) && fs.every((f) => short(f) && (!known.includes(f.field) || f.wireType === 2))
  return (
    r.headers.every(typed([MAP_KEY, MAP_VALUE])) &&
    r.extensions.every(typed([MAP_KEY, MAP_VALUE])) &&
    r.lines.every(typed([MAP_KEY, MAP_VALUE, RAW_VALUE]))
  )
}

describe('decoding map entries and header lines', () => {
  prop(
    'reads them as protobuf means, in any field order and encoding',
    [request],
    (r) => {
      expect(plain(decode(writeRequest(r, 0), NAMES))).toEqual(expected(r))
    },
    2000,
  )

  prop(
    'reads them as it reads the same fields written with non-minimal varints (no fast path)',
    // Up to 2 more bytes: a key of 5 bytes with 3 of padding stays within protobuf's 10.
    [request, fc.integer({ min: 1, max: 2 })],
    (r, extraPad) => {
      expect(plain(decode(writeRequest(r, extraPad), NAMES))).toEqual(
        plain(decode(writeRequest(r, 0), NAMES)),
      )
    },
    1000,
  )

  prop(
    'reads them as protobufjs and the official protos do, where protobufjs follows protobuf',
    [request.filter(protobufjsFollowsProtobuf)],
    (r) => {
      const bytes = writeRequest(r, 0)
      expect(plain(decode(bytes, NAMES))).toEqual(specFields(official.decodeRequest(bytes), WANTED))
    },
    1000,
  )
})
