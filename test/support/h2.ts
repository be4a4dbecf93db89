// Hostile HTTP/2 clients for the connection limits: node:http2 for well-formed streams that never
// send their message, and raw frames for a client that ignores the server's SETTINGS.

import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  type IncomingHttpHeaders,
} from 'node:http2'
import { type Socket, connect as tcpConnect } from 'node:net'
import { CHECK_METHOD } from '../../src/server/authorization.js'

export const CHECK_HEADERS = {
  ':method': 'POST',
  ':path': CHECK_METHOD,
  'content-type': 'application/grpc',
  te: 'trailers',
}

/** A node:http2 session to 127.0.0.1:port, once the server's SETTINGS have arrived. */
export async function h2Session(port: number): Promise<ClientHttp2Session> {
  // The client's own session memory limit (10 MB) would refuse its streams before the server does.
  const session = connect(`http://127.0.0.1:${port}`, { maxSessionMemory: 1000 })
  session.on('error', () => {})
  await new Promise((resolve) => session.once('remoteSettings', resolve))
  return session
}

/** A Check stream that sends HEADERS and never its message. */
export function halfOpenCheck(session: ClientHttp2Session): ClientHttp2Stream {
  const stream = session.request(CHECK_HEADERS)
  stream.on('error', () => {})
  return stream
}

/** Resolves with the stream's RST_STREAM code once it has closed (0 when it ended normally). */
export function closed(stream: ClientHttp2Stream): Promise<number> {
  stream.resume()
  // Resolved outside the 'close' callback: on Node 20 a session destroyed from within it while
  // another stream is open never returns.
  return new Promise((resolve) =>
    stream.once('close', () => setImmediate(() => resolve(stream.rstCode ?? 0))),
  )
}

/** One gRPC message frame: the compressed flag (unset unless asked), big-endian length, the bytes. */
export function grpcFrame(message: Buffer, compressed = false): Buffer {
  const head = Buffer.alloc(5)
  head[0] = compressed ? 1 : 0
  head.writeUInt32BE(message.length, 1)
  return Buffer.concat([head, message])
}

/** What a client observes of one raw gRPC call. */
export interface RawAnswer {
  /** :status of the response HEADERS; undefined when none came. */
  readonly httpStatus: number | undefined
  readonly headers: IncomingHttpHeaders
  /** grpc-status from the trailers or a trailers-only response; undefined when none came. */
  readonly grpcStatus: number | undefined
  /** The response's DATA, still framed. */
  readonly body: Buffer
}

/** Resolves once the server ended the stream (END_STREAM or RST_STREAM) with what it answered. */
export function rawAnswer(stream: ClientHttp2Stream): Promise<RawAnswer> {
  let headers: IncomingHttpHeaders = {}
  let trailers: IncomingHttpHeaders = {}
  const chunks: Buffer[] = []
  stream.on('response', (h) => {
    headers = h
  })
  stream.on('trailers', (t) => {
    trailers = t
  })
  stream.on('data', (d: Buffer) => chunks.push(d))
  stream.on('error', () => {})
  return new Promise((resolve) => {
    const done = () => {
      const status = trailers['grpc-status'] ?? headers['grpc-status']
      resolve({
        httpStatus: headers[':status'] === undefined ? undefined : Number(headers[':status']),
        headers,
        grpcStatus: status === undefined ? undefined : Number(status),
        body: Buffer.concat(chunks),
      })
    }
    // 'end' alone for a server that answers before the client ended its request.
    stream.once('end', done)
    stream.once('close', done)
  })
}

/** The first message of a response body (grpcFrame's framing), uncompressed. */
export function firstMessage(body: Buffer): Buffer {
  return body.subarray(5, 5 + body.readUInt32BE(1))
}

/** A call on `session` that sends `body` (nothing when undefined) and ends its request. */
export function rawCall(
  session: ClientHttp2Session,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<RawAnswer> {
  const stream = session.request(headers)
  const answer = rawAnswer(stream)
  if (body === undefined) stream.end()
  else stream.end(body)
  return answer
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
const FRAME_DATA = 0x0
const FRAME_HEADERS = 0x1
const FRAME_PING = 0x6
const FLAG_ACK = 0x1
const FRAME_RST_STREAM = 0x3
const FRAME_SETTINGS = 0x4
const FLAG_END_HEADERS = 0x4
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(streamId, 5)
  return Buffer.concat([head, payload])
}

/** HPACK literals without indexing or Huffman coding; every name and value under 127 bytes. */
function hpack(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = []
  for (const [name, value] of Object.entries(headers)) {
    parts.push(Buffer.from([0, name.length]), Buffer.from(name), Buffer.from([value.length]))
    parts.push(Buffer.from(value))
  }
  return Buffer.concat(parts)
}

export interface RawClient {
  readonly socket: Socket
  /** The server's SETTINGS_MAX_CONCURRENT_STREAMS, once its SETTINGS frame arrived. */
  maxConcurrentStreams(): number | undefined
  /** Resolves with the RST_STREAM code the server sends for each of `streamIds`. */
  resets(streamIds: readonly number[]): Promise<Map<number, number>>
}

/**
 * Sends the preface, an empty SETTINGS frame and HEADERS for `streams` Check streams at once,
 * never acknowledging the server's SETTINGS nor sending any message: a client that ignores
 * SETTINGS_MAX_CONCURRENT_STREAMS. Stream ids are 1, 3, 5, …
 */
export function rawHalfOpenStreams(port: number, streams: number): Promise<RawClient> {
  const socket = tcpConnect(port, '127.0.0.1')
  const rstCodes = new Map<number, number>()
  const waiters = new Set<() => void>()
  let settingsCap: number | undefined
  let buffered = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3)
      if (buffered.length < 9 + length) break
      const type = buffered[3]
      const streamId = buffered.readUInt32BE(5) & 0x7fffffff
      const payload = buffered.subarray(9, 9 + length)
      if (type === FRAME_RST_STREAM) rstCodes.set(streamId, payload.readUInt32BE(0))
      if (type === FRAME_SETTINGS)
        for (let at = 0; at + 6 <= payload.length; at += 6)
          if (payload.readUInt16BE(at) === SETTINGS_MAX_CONCURRENT_STREAMS)
            settingsCap = payload.readUInt32BE(at + 2)
      buffered = buffered.subarray(9 + length)
    }
    for (const wake of waiters) wake()
  })
  socket.on('error', () => {})
  // Pseudo-headers first, as RFC 9113 requires.
  const block = hpack({ ':scheme': 'http', ':authority': `127.0.0.1:${port}`, ...CHECK_HEADERS })
  const frames = [PREFACE, frame(FRAME_SETTINGS, 0, 0, Buffer.alloc(0))]
  for (let i = 0; i < streams; i++)
    frames.push(frame(FRAME_HEADERS, FLAG_END_HEADERS, 2 * i + 1, block))
  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.once('connect', () => {
      socket.write(Buffer.concat(frames))
      resolve({
        socket,
        maxConcurrentStreams: () => settingsCap,
        resets: (streamIds) =>
          new Promise((done, fail) => {
            const check = () => {
              if (streamIds.every((id) => rstCodes.has(id))) {
                waiters.delete(check)
                done(new Map(streamIds.map((id) => [id, rstCodes.get(id) ?? -1])))
              }
            }
            waiters.add(check)
            socket.once('close', () => {
              if (waiters.has(check)) fail(new Error('connection closed before every reset came'))
            })
            check()
          }),
      })
    })
  })
}

/**
 * Opens one Check stream on a raw connection and sends `body` in DATA frames of one byte each,
 * without ending the request; resolves once the server has answered a PING sent after them, so
 * it has read every frame. The caller destroys the socket. `body` must fit the server's initial
 * flow-control window (64 KiB less one byte): the client waits for no WINDOW_UPDATE.
 */
export function rawOneByteFrames(port: number, body: Buffer): Promise<Socket> {
  const wire = oneByteFrames(port, body)
  const socket = tcpConnect(port, '127.0.0.1')
  socket.on('error', () => {})
  let buffered = Buffer.alloc(0)
  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      while (buffered.length >= 9) {
        const length = buffered.readUIntBE(0, 3)
        if (buffered.length < 9 + length) break
        if (buffered[3] === FRAME_PING && ((buffered[4] as number) & FLAG_ACK) !== 0)
          resolve(socket)
        buffered = buffered.subarray(9 + length)
      }
    })
    socket.once('close', () => reject(new Error('the server closed the connection')))
    socket.once('connect', () => socket.write(wire))
  })
}

/** rawOneByteFrames' bytes as one buffer: the frames themselves are garbage once it returns. */
function oneByteFrames(port: number, body: Buffer): Buffer {
  const block = hpack({ ':scheme': 'http', ':authority': `127.0.0.1:${port}`, ...CHECK_HEADERS })
  const frames = [PREFACE, frame(FRAME_SETTINGS, 0, 0, Buffer.alloc(0))]
  frames.push(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, block))
  for (let at = 0; at < body.length; at++)
    frames.push(frame(FRAME_DATA, 0, 1, body.subarray(at, at + 1)))
  frames.push(frame(FRAME_PING, 0, 0, Buffer.from('onebyte!')))
  return Buffer.concat(frames)
}
