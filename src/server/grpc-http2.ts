// The gRPC port served straight on node:http2 (the default transport; issue 18). grpc-js cost more
// CPU per Check than the whole decision (bench/TRANSPORTS.md), so this module speaks the little of
// gRPC the port needs: unary Check on raw bytes with little allocated per call beyond the stream,
// and health and reflection by the libraries' own handlers (grpc-health-check, @grpc/reflection),
// registered as with grpc-js (addService) and called with the part of grpc-js's call objects they
// use. What it implements of the gRPC protocol: docs/operations.md, "gRPC transport".

import { EventEmitter } from 'node:events'
import {
  constants,
  createServer,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2'
import type { AddressInfo } from 'node:net'
import { gunzip, inflate, type ZlibOptions } from 'node:zlib'
import { type MethodDefinition, type ServiceDefinition, status } from '@grpc/grpc-js'
import { CHECK_METHOD } from './authorization.js'
import {
  addHealthAndReflection,
  checkCall,
  type GrpcPortOptions,
  type GrpcServer,
  KEEPALIVE_TIME_MS,
  KEEPALIVE_TIMEOUT_MS,
  limitConnections,
} from './grpc.js'

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_PATH, NGHTTP2_CANCEL } =
  constants

/** Request encodings read (the `grpc-accept-encoding` announced); answers are never compressed. */
const ACCEPT_ENCODING = 'identity,deflate,gzip'
const ANSWER_HEADERS: OutgoingHttpHeaders = {
  [HTTP2_HEADER_STATUS]: 200,
  [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
  'grpc-accept-encoding': ACCEPT_ENCODING,
  'grpc-encoding': 'identity',
}
const OK_TRAILERS: OutgoingHttpHeaders = { 'grpc-status': '0' }
/** A health Watch or reflection stream whose client reads none of its answers is cut past this. */
const MAX_UNREAD_ANSWER_BYTES = 4 * 1024 * 1024
/** grpc-timeout: up to 8 digits and a unit (the gRPC over HTTP/2 specification). */
const TIMEOUT = /^(\d{1,8})([HMSmun])$/
const MAX_TIMER_MS = 2 ** 31 - 1
/** grpc-message echoes what the client sent (a path, a grpc-timeout): this much of it at most. */
const MAX_DETAILS = 256
/** With the u flag a pair is one code point, so this matches only half of one. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/gu
const TIMEOUT_UNIT_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000_001,
}

export function startGrpcHttp2(options: GrpcPortOptions): Promise<GrpcServer> {
  const { connections, maxRequestBytes } = options
  const server = createServer({
    settings: { maxConcurrentStreams: connections.maxConcurrentStreams },
  })
  limitConnections(server, connections)
  const methods = new MethodTable()
  const setServing = addHealthAndReflection(methods)
  let lastCallAt = 0
  const runCheck = checkCall(options, (at) => {
    lastCallAt = at
  })
  const sessions = new Set<ServerHttp2Session>()
  server.on('session', (session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
    // A peer's protocol error closes its session; nothing else is affected.
    session.on('error', ignore)
    keepAlive(session)
  })
  server.on('stream', (stream, headers) => {
    // A client that resets its stream must not take the process down.
    stream.on('error', ignore)
    if (!isGrpc(text(headers[HTTP2_HEADER_CONTENT_TYPE]))) {
      // As grpc-js and the gRPC specification: not gRPC, so an HTTP answer.
      stream.respond({ [HTTP2_HEADER_STATUS]: 415 }, { endStream: true })
      return
    }
    if (!startDeadline(stream, headers)) return
    const path = text(headers[HTTP2_HEADER_PATH])
    if (path === CHECK_METHOD) {
      readUnary(stream, headers, maxRequestBytes, (request) =>
        runCheck(
          request,
          (response) => answer(stream, response),
          (code, details) => fail(stream, code, details),
        ),
      )
      return
    }
    const method = path === undefined ? undefined : methods.get(path)
    if (method === undefined) {
      fail(stream, status.UNIMPLEMENTED, `unknown method ${path}`)
      return
    }
    callLibrary(method, stream, headers, maxRequestBytes)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      // An accept that fails (out of file descriptors) must not take the process down.
      server.on('error', (err) => options.log.error({ err }, 'gRPC port error'))
      resolve({
        port: (server.address() as AddressInfo).port,
        lastCallAt: () => lastCallAt,
        setServing,
        stop: (forceAfterMs) =>
          new Promise((stopped) => {
            const force = setTimeout(() => {
              for (const session of sessions) session.destroy()
            }, forceAfterMs)
            server.close(() => {
              clearTimeout(force)
              stopped()
            })
            // GOAWAY: no new stream on any connection; the ones open finish.
            for (const session of sessions) session.close()
          }),
      })
    })
  })
}

function ignore(): void {}

/** A header's value; one given twice is both values comma-joined, as HTTP reads it. */
function text(value: string | string[] | undefined): string | undefined {
  return typeof value === 'object' ? value.join(',') : value
}

/** `application/grpc`, alone or with a suffix (`+proto`) or parameters. */
function isGrpc(contentType: string | undefined): boolean {
  if (contentType === undefined || !contentType.startsWith('application/grpc')) return false
  const next = contentType.charCodeAt(16)
  return Number.isNaN(next) || next === 0x2b /* + */ || next === 0x3b /* ; */
}

/**
 * The call's `grpc-timeout`: DEADLINE_EXCEEDED when it passes before the call is answered, as
 * grpc-js does. An invalid one is answered INTERNAL at once: false.
 */
function startDeadline(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): boolean {
  const timeout = text(headers['grpc-timeout'])
  if (timeout === undefined) return true
  const parsed = TIMEOUT.exec(timeout)
  if (parsed === null) {
    fail(stream, status.INTERNAL, `invalid grpc-timeout ${JSON.stringify(timeout)}`)
    return false
  }
  const ms = Number(parsed[1]) * (TIMEOUT_UNIT_MS[parsed[2] as string] as number)
  // Past setTimeout's range (24.8 days) Node would fire at once: no deadline a call can reach.
  if (ms > MAX_TIMER_MS) return true
  const timer = setTimeout(() => {
    // Answered DEADLINE_EXCEEDED unless answering began (a health Watch); reset either way.
    fail(stream, status.DEADLINE_EXCEEDED, 'deadline exceeded')
    stream.close(NGHTTP2_CANCEL)
  }, ms)
  stream.once('close', () => clearTimeout(timer))
  return true
}

/** One message, then the end of the request: what a unary (or server-streaming) call reads. */
function readUnary(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  maxBytes: number,
  onRequest: (message: Buffer) => void,
): void {
  let request: Buffer | undefined
  readMessages(stream, headers, maxBytes, {
    message(message) {
      if (request !== undefined) {
        fail(stream, status.UNIMPLEMENTED, 'a second request message for a unary method')
        return false
      }
      // A copy: held until END_STREAM, a view would hold the whole socket read it lies in.
      request = Buffer.from(message)
      return true
    },
    end() {
      if (request === undefined) fail(stream, status.UNIMPLEMENTED, 'no request message')
      else onRequest(request)
    },
    fail: (code, details) => fail(stream, code, details),
  })
}

interface MessageSink {
  /** A whole, decompressed message; false stops reading (the call was answered). */
  message(message: Buffer): boolean
  /** The request ended after its last whole message. */
  end(): void
  /** Bytes that are no message, or one too large: the call ends with this status. */
  fail(code: status, details: string): void
}

/**
 * Splits the request's DATA into gRPC messages (a flag byte, a big-endian length, the message),
 * decompressing flagged ones. A message longer than `maxBytes`, compressed or not, is refused with
 * RESOURCE_EXHAUSTED as soon as its length is read; bytes that are no message get INTERNAL.
 *
 * A message that DATA frames bring in pieces is copied into one buffer of its length as they
 * come, so what a request holds is bounded by that length: Node hands each frame over as a
 * slice of the whole socket read, and keeping the slices would hold every read they came in.
 */
function readMessages(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  maxBytes: number,
  sink: MessageSink,
): void {
  const encoding = text(headers['grpc-encoding'])
  /** Bytes received and not yet taken: a prefix still short of 5 bytes, or what a read left. */
  let pending: Buffer[] = []
  let pendingBytes = 0
  /** The message being filled from several frames, its flag and how much of it has come. */
  let partial: Buffer | undefined
  let partialFlag = 0
  let filled = 0
  let inflating = false
  let ended = false
  let stopped = false
  const stop = (code?: status, details?: string): void => {
    stopped = true
    // Unread, its flow-control window fills and the request time limit resets the stream.
    stream.removeAllListeners('data')
    stream.pause()
    pending = []
    partial = undefined
    if (code !== undefined) sink.fail(code, details ?? '')
  }
  /** The status to answer for a message with this prefix, if it is refused. */
  const refusal = (flag: number, length: number): [status, string] | undefined => {
    if (flag > 1) return [status.INTERNAL, `invalid message flag ${flag}`]
    if (length > maxBytes)
      return [
        status.RESOURCE_EXHAUSTED,
        `a message of ${length} bytes is larger than the limit, ${maxBytes}`,
      ]
    return undefined
  }
  /** Drops `n` bytes from the front of `pending`. */
  const consume = (n: number): void => {
    pendingBytes -= n
    while (n > 0) {
      const head = pending[0] as Buffer
      if (head.length > n) {
        pending[0] = head.subarray(n)
        return
      }
      n -= head.length
      pending.shift()
    }
  }
  const pull = (): void => {
    while (!stopped && !inflating) {
      if (partial !== undefined) {
        while (filled < partial.length && pending.length > 0) {
          const head = pending[0] as Buffer
          const n = head.copy(partial, filled)
          filled += n
          consume(n)
        }
        if (filled < partial.length) break
        const message = partial
        partial = undefined
        take(partialFlag, message)
        continue
      }
      if (pendingBytes < 5) break
      if ((pending[0] as Buffer).length < 5) pending = [Buffer.concat(pending, pendingBytes)]
      const head = pending[0] as Buffer
      const flag = head[0] as number
      const length = head.readUInt32BE(1)
      const refused = refusal(flag, length)
      if (refused !== undefined) {
        stop(...refused)
        return
      }
      consume(5)
      const first = pending[0]
      if (first !== undefined && first.length >= length) {
        // The whole message in one frame, as Envoy sends it: passed on where it lies (readUnary
        // copies what it must hold until END_STREAM).
        consume(length)
        take(flag, first.subarray(0, length))
      } else {
        partial = Buffer.allocUnsafe(length)
        partialFlag = flag
        filled = 0
      }
    }
    if (ended && !stopped && !inflating) {
      stopped = true
      if (pendingBytes > 0 || partial !== undefined)
        sink.fail(status.INTERNAL, 'the request ends inside a message')
      else sink.end()
    }
  }
  /** Takes a whole message to the sink, decompressing it first. */
  const take = (flag: number, message: Buffer): void => {
    if (flag === 0) {
      if (!sink.message(message)) stop()
      return
    }
    const decompress = decompressor(encoding)
    if (typeof decompress === 'object') {
      stop(decompress.code, decompress.details)
      return
    }
    inflating = true
    stream.pause()
    decompress(message, { maxOutputLength: maxBytes }, (err, inflated) => {
      inflating = false
      if (stopped || gone(stream)) return
      if (err === null) {
        if (!sink.message(inflated)) stop()
        else {
          stream.resume()
          pull()
        }
      } else if (err.code === 'ERR_BUFFER_TOO_LARGE')
        stop(
          status.RESOURCE_EXHAUSTED,
          `a message decompresses to more than the limit, ${maxBytes} bytes`,
        )
      else stop(status.INTERNAL, `the message does not decompress as ${encoding}`)
    })
  }
  stream.on('data', (chunk: Buffer) => {
    pending.push(chunk)
    pendingBytes += chunk.length
    pull()
  })
  stream.once('end', () => {
    ended = true
    pull()
  })
}

type Decompress = (
  message: Buffer,
  options: ZlibOptions,
  done: (err: (Error & { code?: string }) | null, result: Buffer) => void,
) => void

/** The decompressor of `grpc-encoding` (gRPC's deflate is zlib's format), or the status to answer. */
function decompressor(
  encoding: string | undefined,
): Decompress | { code: status; details: string } {
  if (encoding === 'gzip') return gunzip
  if (encoding === 'deflate') return inflate
  if (encoding === undefined || encoding === 'identity')
    return { code: status.INTERNAL, details: 'a compressed message without grpc-encoding' }
  return { code: status.UNIMPLEMENTED, details: `grpc-encoding ${encoding} is not supported` }
}

/** The 5-byte prefix (uncompressed, big-endian length), then the message. */
export function framed(message: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.length)
  frame[0] = 0
  frame.writeUInt32BE(message.length, 1)
  message.copy(frame, 5)
  return frame
}

/**
 * grpc-message: percent-encoded, as the specification asks, and cut to MAX_DETAILS (well-formed:
 * encodeURIComponent throws on half a surrogate pair).
 */
function grpcMessage(details: string): string {
  return encodeURIComponent(details.slice(0, MAX_DETAILS).replace(LONE_SURROGATE, '\uFFFD'))
}

/** A unary answer: HEADERS, one message, OK trailers. */
function answer(stream: ServerHttp2Stream, message: Buffer): void {
  if (stream.headersSent || gone(stream)) return
  stream.respond(ANSWER_HEADERS, { waitForTrailers: true })
  stream.once('wantTrailers', sendOkTrailers)
  stream.end(framed(message))
}

/**
 * Whether the stream can take no more frames. A stream reset by the server (request time limit,
 * deadline) is closed at once but destroyed only later, and responding to it in between throws.
 */
function gone(stream: ServerHttp2Stream): boolean {
  return stream.closed || stream.destroyed
}

/** A 'wantTrailers' listener shared by every stream (one closure fewer per call). */
function sendOkTrailers(this: ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS)
}

/** A status without a message: trailers-only (the one HEADERS frame ends the stream). */
function fail(stream: ServerHttp2Stream, code: status, details: string): void {
  if (stream.headersSent || gone(stream)) return
  stream.respond(
    {
      ...ANSWER_HEADERS,
      'grpc-status': String(code),
      'grpc-message': grpcMessage(details),
    },
    { endStream: true },
  )
}

/** Pings the client every KEEPALIVE_TIME_MS; no PING ACK within KEEPALIVE_TIMEOUT_MS closes it. */
function keepAlive(session: ServerHttp2Session): void {
  let unanswered: NodeJS.Timeout | undefined
  const every = setInterval(() => {
    if (unanswered !== undefined || session.destroyed) return
    unanswered = setTimeout(() => session.destroy(), KEEPALIVE_TIMEOUT_MS)
    const sent = session.ping(() => {
      clearTimeout(unanswered)
      unanswered = undefined
    })
    if (!sent) {
      clearTimeout(unanswered)
      unanswered = undefined
    }
  }, KEEPALIVE_TIME_MS)
  every.unref()
  session.once('close', () => {
    clearInterval(every)
    clearTimeout(unanswered)
  })
}

/** A library's method (health, reflection) with its handler. */
interface LibraryMethod {
  readonly definition: MethodDefinition<unknown, unknown>
  readonly handler: (...args: never[]) => void
}

/** What the libraries register with, in place of grpc-js's Server: their methods by path. */
class MethodTable {
  readonly #methods = new Map<string, LibraryMethod>()

  get(path: string): LibraryMethod | undefined {
    return this.#methods.get(path)
  }

  addService(service: ServiceDefinition, implementation: object): void {
    const handlers = implementation as Record<string, LibraryMethod['handler'] | undefined>
    for (const [name, definition] of Object.entries(service)) {
      const handler = handlers[name] ?? handlers[definition.originalName ?? '']
      if (handler === undefined) continue
      if (definition.requestStream && !definition.responseStream)
        throw new Error(`${definition.path}: client-streaming methods are not served`)
      this.#methods.set(definition.path, { definition, handler })
    }
  }
}

/**
 * The part of grpc-js's ServerUnaryCall, ServerWritableStream and ServerDuplexStream that
 * grpc-health-check and @grpc/reflection use: `request`, `write`, `end`, and the 'data', 'end'
 * and 'cancelled' events.
 */
class LibraryCall extends EventEmitter {
  request: unknown
  cancelled = false
  #ended = false

  readonly stream: ServerHttp2Stream
  readonly definition: MethodDefinition<unknown, unknown>

  constructor(stream: ServerHttp2Stream, definition: MethodDefinition<unknown, unknown>) {
    super()
    this.stream = stream
    this.definition = definition
    stream.once('close', () => {
      if (this.#ended) return
      this.#ended = true
      this.cancelled = true
      this.emit('cancelled', 'cancelled')
    })
  }

  write(value: unknown): boolean {
    if (this.#ended || gone(this.stream)) return false
    if (!this.stream.headersSent) {
      this.stream.respond(ANSWER_HEADERS, { waitForTrailers: true })
      this.stream.once('wantTrailers', sendOkTrailers)
    }
    this.stream.write(framed(this.definition.responseSerialize(value)))
    if (this.stream.writableLength > MAX_UNREAD_ANSWER_BYTES) this.stream.close(NGHTTP2_CANCEL)
    return true
  }

  end(): void {
    if (this.#ended) return
    this.#ended = true
    if (gone(this.stream)) return
    if (!this.stream.headersSent) {
      this.stream.respond(ANSWER_HEADERS, { waitForTrailers: true })
      this.stream.once('wantTrailers', sendOkTrailers)
    }
    this.stream.end()
  }

  /** A status other than OK: trailers-only, or trailers after the answers already written. */
  fail(code: status, details: string): void {
    if (this.#ended) return
    this.#ended = true
    if (gone(this.stream)) return
    if (!this.stream.headersSent) {
      fail(this.stream, code, details)
      return
    }
    this.stream.removeAllListeners('wantTrailers')
    this.stream.once('wantTrailers', () =>
      this.stream.sendTrailers({
        'grpc-status': String(code),
        'grpc-message': grpcMessage(details),
      }),
    )
    this.stream.end()
  }
}

/** Calls a library's handler as grpc-js would: unary, server-streaming or bidirectional. */
function callLibrary(
  { definition, handler }: LibraryMethod,
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  maxBytes: number,
): void {
  const call = new LibraryCall(stream, definition)
  const deserialize = (message: Buffer): boolean => {
    try {
      call.request = definition.requestDeserialize(message)
      return true
    } catch {
      call.fail(status.INTERNAL, 'the request message does not parse')
      return false
    }
  }
  const run = (...args: unknown[]): void => {
    try {
      ;(handler as (...a: unknown[]) => void)(...args)
    } catch {
      call.fail(status.UNKNOWN, 'the handler failed')
    }
  }
  if (definition.requestStream) {
    run(call)
    readMessages(stream, headers, maxBytes, {
      message(message) {
        if (!deserialize(message)) return false
        call.emit('data', call.request)
        return true
      },
      end: () => call.emit('end'),
      // After answers were written, the status goes in the trailers.
      fail: (code, details) => call.fail(code, details),
    })
    return
  }
  readUnary(stream, headers, maxBytes, (message) => {
    if (!deserialize(message)) return
    if (definition.responseStream) {
      run(call)
      return
    }
    run(call, (err: { code?: status; details?: string } | null, value: unknown) => {
      if (err) call.fail(err.code ?? status.UNKNOWN, err.details ?? '')
      else {
        call.write(value)
        call.end()
      }
    })
  })
}
