import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it, vi } from 'vitest'
import { headerHead, pathHead, peerHead } from '../../src/decision/observe.js'
import { compileHeaderNames, decode } from '../../src/grpc-authz/decode.js'
import { messageField } from '../../src/grpc-authz/protobuf.js'
import { formatIp } from '../../src/net/ip.js'
import { FORWARDING_HEADERS } from '../../src/policy/schema.js'
import { plain, specFields as specFieldsOf } from '../support/decoded.js'
import { FIXTURES, type Message, official, ours } from '../support/protos.js'

const fixtures = readdirSync(FIXTURES).filter((f) => f.endsWith('.bin'))
const read = (name: string): Buffer => readFileSync(join(FIXTURES, name))
const WANTED = [':authority', 'host', ':path', 'x-health', 'user-agent', ...FORWARDING_HEADERS]
const ALL_HEADERS = compileHeaderNames(WANTED)

const specFields = (message: Message) => specFieldsOf(message, WANTED)

describe('decode agrees with the official Envoy protos', () => {
  it.each(fixtures)('%s: every field SPEC reads', (name) => {
    const bytes = read(name)
    expect(plain(decode(bytes, ALL_HEADERS))).toEqual(specFields(official.decodeRequest(bytes)))
  })

  it.each(fixtures)('%s: proto/ decodes it as the official protos do', (name) => {
    const bytes = read(name)
    expect(specFields(ours.decodeRequest(bytes))).toEqual(specFields(official.decodeRequest(bytes)))
  })

  it('reads the fixtures it should, not empty values', () => {
    const input = decode(read('06-trusted-proxy-chain-xff.bin'), ALL_HEADERS)
    expect(input?.peer).toBe('10.1.2.3')
    expect(input?.http?.authority).toBe('web.default.svc.cluster.local:8080')
    expect(input?.http?.headers.get('x-forwarded-for')).toBe('203.0.113.7, 10.1.9.9,10.1.2.3')
    expect(decode(read('09-context-extensions-site.bin'), ALL_HEADERS)?.site).toBe('blog')
  })
})

describe('decode', () => {
  it('joins repeated header_map entries with "," as Envoy joins a header map', () => {
    const input = decode(read('11-header-map-raw-values.bin'), ALL_HEADERS)
    expect(input?.http?.headers.get('x-real-ip')).toBe('192.0.2.10,192.0.2.11')
    expect(input?.http?.headers.get('x-forwarded-for')).toBe('192.0.2.10,198.51.100.23')
  })

  it('keeps only the headers it is asked for', () => {
    const input = decode(read('01-ipv4-direct-host.bin'), compileHeaderNames(['x-forwarded-for']))
    const sent = Object.keys(
      official.decodeRequest(read('01-ipv4-direct-host.bin')).attributes.request.http.headers,
    )
    expect(sent.length).toBeGreaterThan(5)
    expect(sent.filter((name) => input?.http?.headers.has(name))).toEqual(['x-forwarded-for'])
    expect(input?.http?.headers.get('x-forwarded-for')).toBe('198.51.100.23')
  })

  it('takes the path without its query string', () => {
    expect(decode(read('01-ipv4-direct-host.bin'), ALL_HEADERS)?.http?.path).toBe('/products')
  })

  it('falls back to :authority, then host, when http.host is empty', () => {
    const message = official.decodeRequest(read('01-ipv4-direct-host.bin'))
    message.attributes.request.http.host = ''
    expect(decode(official.encodeRequest(message), ALL_HEADERS)?.http?.authority).toBe(
      'www.example.com',
    )
    delete message.attributes.request.http.headers[':authority']
    message.attributes.request.http.headers.host = 'legacy.example.com'
    expect(decode(official.encodeRequest(message), ALL_HEADERS)?.http?.authority).toBe(
      'legacy.example.com',
    )
    delete message.attributes.request.http.headers.host
    expect(decode(official.encodeRequest(message), ALL_HEADERS)?.http?.authority).toBeUndefined()
  })

  it('reads an empty message as a request with no peer and no HTTP part', () => {
    expect(plain(decode(Buffer.alloc(0), ALL_HEADERS))).toEqual({
      peer: '',
      peerIp: undefined,
      site: undefined,
      http: undefined,
    })
  })

  it('parses the peer from its bytes as strictly as from text, non-ASCII included', () => {
    const peerOf = (address: string | Buffer) => {
      // CheckRequest.attributes.source.address.socket_address.address, written by hand so that
      // the address can be any bytes (each length below 128: one byte).
      const raw = typeof address === 'string' ? Buffer.from(address) : address
      const socket = Buffer.concat([Buffer.from([0x12, raw.length]), raw])
      const message = Buffer.concat([Buffer.from([0x0a, socket.length]), socket])
      const peer = Buffer.concat([Buffer.from([0x0a, message.length]), message])
      const attributes = Buffer.concat([Buffer.from([0x0a, peer.length]), peer])
      const input = decode(
        Buffer.concat([Buffer.from([0x0a, attributes.length]), attributes]),
        ALL_HEADERS,
      )
      return [input?.peer, input?.peerIp && formatIp(input.peerIp)]
    }
    expect(peerOf('198.51.100.23')).toEqual(['198.51.100.23', '198.51.100.23'])
    expect(peerOf('2001:DB8::1')).toEqual(['2001:DB8::1', '2001:db8::1'])
    expect(peerOf('::ffff:10.0.0.1')).toEqual(['::ffff:10.0.0.1', '10.0.0.1'])
    expect(peerOf('010.0.0.1')).toEqual(['010.0.0.1', undefined])
    // Fullwidth digits, and a Latin-1 byte where a digit belongs: not addresses.
    expect(peerOf('１.２.３.４')).toEqual(['１.２.３.４', undefined])
    expect(peerOf(Buffer.from([0x31, 0x2e, 0x32, 0x2e, 0x33, 0x2e, 0xb4]))).toEqual([
      '1.2.3.\ufffd',
      undefined,
    ])
  })

  // "If the parser encounters multiple members of the same oneof on the wire, only the last member
  // seen is used" (protobuf's language guide). protobufjs keeps them all, so it is no oracle here.
  it('keeps the last member of the oneof Address, as protobuf requires', () => {
    // attributes.source.address: socket_address (field 1) and pipe (field 2) of one oneof
    const socket = messageField(1, messageField(2, Buffer.from('192.0.2.1')))
    const pipe = messageField(2, messageField(1, Buffer.from('/run/envoy.sock')))
    const request = (...address: Buffer[]) =>
      messageField(1, messageField(1, messageField(1, ...address)))
    expect(plain(decode(request(socket, pipe), ALL_HEADERS))).toMatchObject({
      peer: '',
      peerIp: undefined,
    })
    expect(plain(decode(request(pipe, socket), ALL_HEADERS))).toMatchObject({
      peer: '192.0.2.1',
      peerIp: { family: 4, value: 0xc0000201 },
    })
    // Two sources merge: the second's pipe replaces the first's socket address.
    const twice = Buffer.concat([request(socket), request(pipe)])
    expect(decode(twice, ALL_HEADERS)?.peer).toBe('')
  })

  it('merges a message field that occurs twice, as protobuf requires', () => {
    const a = official.encodeRequest({
      attributes: { source: { address: { socket_address: { address: '192.0.2.1' } } } },
    })
    const b = official.encodeRequest({ attributes: { context_extensions: { site: 'blog' } } })
    expect(plain(decode(Buffer.concat([a, b]), ALL_HEADERS))).toMatchObject({
      peer: '192.0.2.1',
      peerIp: { family: 4, value: 0xc0000201 },
      site: 'blog',
    })
  })

  it('skips unknown fields of every wire type, including groups', () => {
    // field 99 varint, field 98 fixed64, field 97 fixed32, field 96 group holding a varint
    const unknown = Buffer.from([
      0x98, 0x06, 0x01, 0x91, 0x06, 1, 2, 3, 4, 5, 6, 7, 8, 0x8d, 0x06, 1, 2, 3, 4, 0x83, 0x06,
      0x08, 0x01, 0x84, 0x06,
    ])
    const fixture = read('01-ipv4-direct-host.bin')
    expect(plain(decode(Buffer.concat([unknown, fixture]), ALL_HEADERS))).toEqual(
      plain(decode(fixture, ALL_HEADERS)),
    )
  })

  it.each([
    ['a truncated fixture', read('01-ipv4-direct-host.bin').subarray(0, 100)],
    ['a length past the end', Buffer.from([0x0a, 0x05, 0x01])],
    ['field number 0', Buffer.from([0x02, 0x00])],
    ['wire type 6', Buffer.from([0x0e])],
    ['a varint longer than ten bytes', Buffer.from([0x08, ...Array(11).fill(0xff)])],
    ['a field key past 32 bits', Buffer.from([0x80, 0x80, 0x80, 0x80, 0x10, 0x00])],
    ['an unterminated group', Buffer.from([0x0b, 0x08, 0x01])],
    ['a group closed with another field number', Buffer.from([0x0b, 0x14])],
  ])('gives undefined for %s', (_, bytes) => {
    expect(decode(bytes, ALL_HEADERS)).toBeUndefined()
  })
})

describe('decode reads a map entry the same in any field order', () => {
  const field = (key: number, value: string) =>
    Buffer.concat([Buffer.from([key, value.length]), Buffer.from(value)])
  /** A CheckRequest whose http.headers holds one entry of these fields. */
  const headerEntry = (...fields: Buffer[]) =>
    messageField(1, messageField(4, messageField(2, messageField(3, ...fields))))
  /** A CheckRequest whose context_extensions holds one entry of these fields. */
  const extension = (...fields: Buffer[]) => messageField(1, messageField(10, ...fields))

  it('reads key then value and value then key alike', () => {
    const key = field(0x0a, 'x-real-ip')
    const value = field(0x12, '192.0.2.9')
    for (const bytes of [headerEntry(key, value), headerEntry(value, key)])
      expect(decode(bytes, ALL_HEADERS)?.http?.headers.get('x-real-ip')).toBe('192.0.2.9')
  })

  it.each([
    ['http.headers', headerEntry, 'x-real-ip'],
    ['context_extensions', extension, 'site'],
  ])(
    'rejects a %s entry with a field number 0 (key byte 0x02) in either order',
    (_, entry, key) => {
      const k = field(0x0a, key)
      const zero = field(0x02, '192.0.2.9')
      expect(decode(entry(k, zero), ALL_HEADERS)).toBeUndefined()
      expect(decode(entry(zero, k), ALL_HEADERS)).toBeUndefined()
    },
  )
})

describe('decode makes strings only of what is read', () => {
  const text = (s: string) => Buffer.from(s)
  const pair = (k: string, valueField: number, v: string) =>
    Buffer.concat([messageField(1, text(k)), messageField(valueField, text(v))])
  /** Counts the strings made from request bytes (utf8Text is Buffer's utf8Slice). */
  const stringsMade = () =>
    vi.spyOn(
      Buffer.prototype as unknown as { utf8Slice(s: number, e: number): string },
      'utf8Slice',
    )

  it('keeps header_map lines as offsets until read, and never reads those headers shadows', () => {
    const lines = messageField(
      13,
      messageField(1, pair('x-forwarded-for', 3, '192.0.2.1')),
      messageField(1, pair('x-forwarded-for', 3, '192.0.2.2')),
      messageField(1, pair('x-real-ip', 3, '192.0.2.3')),
    )
    const http = Buffer.concat([messageField(3, pair('x-real-ip', 2, '192.0.2.9')), lines])
    const made = stringsMade()
    try {
      const input = decode(messageField(1, messageField(4, messageField(2, http))), ALL_HEADERS)
      expect(made).toHaveBeenCalledTimes(0)
      expect(input?.http?.headers.get('x-forwarded-for')).toBe('192.0.2.1,192.0.2.2')
      expect(made).toHaveBeenCalledTimes(2)
      expect(input?.http?.headers.get('x-real-ip')).toBe('192.0.2.9')
      expect(made).toHaveBeenCalledTimes(3)
    } finally {
      made.mockRestore()
    }
  })

  it('makes one string of http.host and of the site however often they come', () => {
    const http = Buffer.concat([
      messageField(5, text('a.example')),
      messageField(5, text('b.example')),
    ])
    const site = (name: string) => messageField(10, pair('site', 2, name))
    const bytes = messageField(1, messageField(4, messageField(2, http)), site('a'), site('b'))
    const made = stringsMade()
    try {
      const input = decode(bytes, ALL_HEADERS)
      expect(made).toHaveBeenCalledTimes(2)
      expect([input?.http?.authority, input?.site]).toEqual(['b.example', 'b'])
    } finally {
      made.mockRestore()
    }
  })
})

describe('the heads the decision log reads', () => {
  const text = (s: string) => Buffer.from(s)
  const pair = (k: string, valueField: number, v: string) =>
    Buffer.concat([messageField(1, text(k)), messageField(valueField, text(v))])
  /** A request from `peer` for `path`, x-request-id set by a headers entry or header_map lines. */
  function bytesOf(peer: string, path: string, requestIds: readonly string[]): Buffer {
    const headers =
      requestIds.length === 1
        ? messageField(3, pair('x-request-id', 2, requestIds[0] as string))
        : messageField(13, ...requestIds.map((v) => messageField(1, pair('x-request-id', 3, v))))
    const http = Buffer.concat([messageField(4, text(path)), headers])
    const address = messageField(1, messageField(1, messageField(2, text(peer))))
    return messageField(1, messageField(1, address), messageField(4, messageField(2, http)))
  }
  const NAMES = compileHeaderNames(['x-request-id'])

  it('are the first characters of the whole values, whatever the characters', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 60 }),
        fc.string({ unit: 'binary', maxLength: 60 }),
        fc.array(fc.string({ unit: 'binary', maxLength: 30 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 70 }),
        (peer, path, requestIds, max) => {
          const input = decode(bytesOf(peer, path, requestIds), NAMES)
          const http = input?.http
          if (!input || !http) throw new Error('not decoded')
          expect(peerHead(input, max)).toBe(input.peer.slice(0, max))
          expect(pathHead(http, max)).toBe(http.path.slice(0, max))
          expect(headerHead(http, 'x-request-id', max)).toBe(
            http.headers.get('x-request-id')?.slice(0, max),
          )
          expect(headerHead(http, 'x-other', max)).toBeUndefined()
        },
      ),
    )
  })

  it('make strings of a bounded part of a long value only', () => {
    const long = 'é'.repeat(300_000)
    const input = decode(bytesOf(long, `/${long}?q`, [long, long]), NAMES)
    const http = input?.http
    if (!input || !http) throw new Error('not decoded')
    const made = vi.spyOn(
      Buffer.prototype as unknown as { utf8Slice(s: number, e: number): string },
      'utf8Slice',
    )
    try {
      expect(peerHead(input, 257)).toBe('é'.repeat(257))
      expect(pathHead(http, 257)).toBe(`/${'é'.repeat(256)}`)
      expect(headerHead(http, 'x-request-id', 257)).toBe('é'.repeat(257))
      expect(made).toHaveBeenCalled()
      for (const [start, end] of made.mock.calls) expect(end - start).toBeLessThanOrEqual(4 * 257)
    } finally {
      made.mockRestore()
    }
  })
})
