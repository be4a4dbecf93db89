// Check served straight on node:http2, without a gRPC library: the floor under any Node.js
// transport. node build/tools/bench/http2-server.js PORT check|canned
//   check:  reads the one length-prefixed message, runs check() and frames its answer;
//   canned: reads the request to its end and sends fixture 01's answer, framed once at start.
// Only unary Check: no health service, no reflection, no compression, no deadlines.

import { readFileSync } from 'node:fs'
import { constants, createServer, type ServerHttp2Stream } from 'node:http2'
import { check } from '../src/grpc-authz/check.js'
import { CHECK_METHOD } from '../src/server/authorization.js'
import { framed } from '../src/server/grpc-http2.js'
import { announce, examplePolicy, FIXTURE_01 } from './example-policy.js'

const mode = process.argv[3] === 'canned' ? 'canned' : 'check'
const policy = examplePolicy()
/** Like grpc-js's default limit (grpc.max_receive_message_length). */
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024
const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_PATH } = constants
const STATUS = { OK: 0, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13 } as const

const CANNED = framed(check(policy, readFileSync(FIXTURE_01)).response)

/** A trailers-only answer: the status goes in the one HEADERS frame that ends the stream. */
function fail(stream: ServerHttp2Stream, code: number, message: string): void {
  if (stream.headersSent || stream.destroyed) return
  stream.respond(
    {
      [HTTP2_HEADER_STATUS]: 200,
      [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      'grpc-status': String(code),
      'grpc-message': encodeURIComponent(message),
    },
    { endStream: true },
  )
}

function answer(stream: ServerHttp2Stream, body: Buffer): void {
  stream.respond(
    { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc' },
    { waitForTrailers: true },
  )
  stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(STATUS.OK) }))
  stream.end(body)
}

/** One uncompressed message, exactly as long as its prefix says; else the status to answer. */
function message(body: Buffer): Buffer | { code: number; why: string } {
  if (body.length < 5) return { code: STATUS.INTERNAL, why: 'no message in the request' }
  // Nothing is announced in grpc-accept-encoding, so a compressed message is the client's error.
  if (body[0] !== 0)
    return { code: STATUS.UNIMPLEMENTED, why: 'compressed messages are not supported' }
  if (body.readUInt32BE(1) !== body.length - 5)
    return { code: STATUS.INTERNAL, why: 'the message length does not match the body' }
  return body.subarray(5)
}

const server = createServer()
server.on('stream', (stream, headers) => {
  // A client that resets its stream must not take the process down.
  stream.on('error', () => {})
  if (headers[HTTP2_HEADER_PATH] !== CHECK_METHOD) {
    stream.resume()
    fail(stream, STATUS.UNIMPLEMENTED, `unknown method ${headers[HTTP2_HEADER_PATH]}`)
    return
  }
  const chunks: Buffer[] = []
  let bytes = 0
  stream.on('data', (chunk: Buffer) => {
    bytes += chunk.length
    if (bytes > MAX_MESSAGE_BYTES + 5) {
      fail(stream, STATUS.RESOURCE_EXHAUSTED, 'the message is too large')
      stream.close(constants.NGHTTP2_CANCEL)
      return
    }
    chunks.push(chunk)
  })
  stream.on('end', () => {
    if (stream.headersSent || stream.destroyed) return
    if (mode === 'canned') {
      answer(stream, CANNED)
      return
    }
    const got = message(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks))
    if (Buffer.isBuffer(got)) answer(stream, framed(check(policy, got).response))
    else fail(stream, got.code, got.why)
  })
})
const port = Number(process.argv[2] ?? '0')
server.listen(port, '127.0.0.1', () =>
  announce(mode === 'canned' ? 'noop-http2' : 'http2-raw', port),
)
