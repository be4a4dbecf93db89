// What the node:http2 transport (src/server/grpc-http2.ts) does beyond grpc-js's behaviour,
// which grpc-conformance.test.ts holds both transports to.

import type { ClientHttp2Stream } from 'node:http2'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { Running } from '../../src/serve.js'
import { DEFAULT_CONNECTION_LIMITS } from '../../src/server/grpc.js'
import {
  CHECK_HEADERS,
  closed,
  grpcFrame,
  h2Session,
  rawAnswer,
  rawOneByteFrames,
} from '../support/h2.js'
import { ROOT } from '../support/protos.js'
import { startServer } from '../support/server.js'

const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')
const REFLECTION_V1 = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'

/** ServerReflectionRequest { file_containing_symbol (4): symbol }. */
function fileContainingSymbol(symbol: string): Buffer {
  const name = Buffer.from(symbol)
  return Buffer.concat([Buffer.from([0x22, name.length]), name])
}

/** The gRPC status of a finished stream, as its text: from its trailers or trailers-only HEADERS. */
async function grpcStatus(stream: ClientHttp2Stream): Promise<string | undefined> {
  const { grpcStatus: code } = await rawAnswer(stream)
  return code === undefined ? undefined : String(code)
}

/** HealthCheckRequest { service (1): name }, the length a two-byte varint. */
function healthCheckRequest(name: string): Buffer {
  const bytes = Buffer.from(name)
  expect(bytes.length).toBeGreaterThan(127)
  expect(bytes.length).toBeLessThan(16_384)
  return Buffer.concat([
    Buffer.from([0x0a, (bytes.length & 0x7f) | 0x80, bytes.length >> 7]),
    bytes,
  ])
}

describe('the node:http2 transport', () => {
  let running: Running
  beforeAll(async () => {
    running = await startServer(EXAMPLE, {
      grpcTransport: 'node-http2',
      maxRequestBytes: 4096,
      // Far past the test's own timeout: only the unread-answer cap can reset a stream in time.
      connections: { ...DEFAULT_CONNECTION_LIMITS, requestTimeoutMs: 3_600_000 },
    })
  })
  afterAll(() => running?.stop())

  it('resets a reflection stream whose client reads none of its answers, and serves on', async () => {
    const session = await h2Session(running.grpcPort)
    try {
      const stream = session.request({ ...CHECK_HEADERS, ':path': REFLECTION_V1 })
      stream.on('error', () => {})
      // Never read: the client's flow-control window fills and the answers (3 KiB each) wait on
      // the server until they pass its 4 MiB.
      stream.pause()
      const request = grpcFrame(fileContainingSymbol('envoy.service.auth.v3.CheckRequest'))
      stream.write(Buffer.concat(Array.from({ length: 3000 }, () => request)))
      const reset = new Promise<number | undefined>((resolve) =>
        stream.once('close', () => resolve(stream.rstCode)),
      )
      expect(await reset).toBe(8) // CANCEL
      const check = session.request(CHECK_HEADERS)
      const answered = grpcStatus(check)
      check.end(grpcFrame(Buffer.alloc(0)))
      expect(await answered).toBe('0')
    } finally {
      session.close()
    }
  })

  it('answers INTERNAL for a gzip-flagged message that is not gzip, and serves on', async () => {
    const session = await h2Session(running.grpcPort)
    try {
      const bad = session.request({ ...CHECK_HEADERS, 'grpc-encoding': 'gzip' })
      const badStatus = grpcStatus(bad)
      bad.end(grpcFrame(Buffer.from('not gzip at all'), true))
      expect(await badStatus).toBe('13')
      const good = session.request({ ...CHECK_HEADERS, 'grpc-encoding': 'gzip' })
      const goodStatus = grpcStatus(good)
      good.end(grpcFrame(gzipSync(Buffer.alloc(0)), true))
      expect(await goodStatus).toBe('0')
    } finally {
      session.close()
    }
  })

  it('takes a grpc-timeout past 24.8 days as no deadline, not one that passed', async () => {
    const session = await h2Session(running.grpcPort)
    // Node turns a setTimeout past its range into 1 ms, and says so with this warning.
    const overflows: Error[] = []
    const onWarning = (warning: Error) => {
      if (warning.name === 'TimeoutOverflowWarning') overflows.push(warning)
    }
    process.on('warning', onWarning)
    try {
      const stream = session.request({ ...CHECK_HEADERS, 'grpc-timeout': '99999999H' })
      const status = grpcStatus(stream)
      stream.end(grpcFrame(Buffer.alloc(0)))
      expect(await status).toBe('0')
      await new Promise(setImmediate)
      expect(overflows).toEqual([])
    } finally {
      process.off('warning', onWarning)
      session.close()
    }
  })

  it('cuts an echoed grpc-message to 256 characters, well-formed where a pair is cut', async () => {
    const session = await h2Session(running.grpcPort)
    try {
      // "Health status unknown for service " and 222 more: the cut falls inside the emoji.
      const service = `${'s'.repeat(221)}\u{1F600}${'t'.repeat(1000)}`
      const stream = session.request({ ...CHECK_HEADERS, ':path': '/grpc.health.v1.Health/Check' })
      let message: string | undefined
      stream.on('response', (headers) => {
        message = headers['grpc-message'] as string | undefined
      })
      const status = grpcStatus(stream)
      stream.end(grpcFrame(healthCheckRequest(service)))
      expect(await status).toBe('5') // NOT_FOUND
      const details = decodeURIComponent(message ?? '')
      expect(details).toHaveLength(256)
      expect(details.endsWith(`${'s'.repeat(221)}\uFFFD`)).toBe(true)
    } finally {
      session.close()
    }
  })

  it('answers INTERNAL for a request that ends inside its message', async () => {
    const session = await h2Session(running.grpcPort)
    try {
      const stream = session.request(CHECK_HEADERS)
      const status = grpcStatus(stream)
      stream.end(grpcFrame(Buffer.from('abc')).subarray(0, 6))
      expect(await status).toBe('13')
      expect(await closed(session.request(CHECK_HEADERS).end(grpcFrame(Buffer.alloc(0))))).toBe(0)
    } finally {
      session.close()
    }
  })
})

describe('the node:http2 transport under a hostile client', () => {
  const REQUEST_TIMEOUT_MS = 200
  const MAX_REQUEST_BYTES = 1024 * 1024
  let running: Running
  beforeAll(async () => {
    running = await startServer(EXAMPLE, {
      grpcTransport: 'node-http2',
      maxRequestBytes: MAX_REQUEST_BYTES,
      connections: { ...DEFAULT_CONNECTION_LIMITS, requestTimeoutMs: REQUEST_TIMEOUT_MS },
    })
  })
  afterAll(() => running?.stop())

  it('survives a deadline that falls due just as the request time limit resets its stream', async () => {
    const session = await h2Session(running.grpcPort)
    try {
      // Both timers fire in one turn of the timer list: the reset first, then the deadline finds
      // a stream that is closed but not yet destroyed (a crash before the fix).
      const streams = Array.from({ length: 16 }, () => {
        const stream = session.request(
          { ...CHECK_HEADERS, 'grpc-timeout': `${REQUEST_TIMEOUT_MS}m` },
          { endStream: false },
        )
        stream.on('error', () => {})
        return closed(stream)
      })
      for (const code of await Promise.all(streams)) expect(code).toBe(8) // CANCEL
      expect(await closed(session.request(CHECK_HEADERS).end(grpcFrame(Buffer.alloc(0))))).toBe(0)
    } finally {
      session.close()
    }
  })

  it('copies a message that arrives in small DATA frames once, not once per frame', async () => {
    const size = MAX_REQUEST_BYTES - 5
    const message = grpcFrame(Buffer.alloc(size))
    const concat = vi.spyOn(Buffer, 'concat')
    const session = await h2Session(running.grpcPort)
    try {
      const stream = session.request(CHECK_HEADERS)
      const answered = closed(stream)
      // A first frame shorter than the 5-byte prefix, then 1 KiB frames.
      stream.write(message.subarray(0, 1))
      await new Promise((resolve) => setImmediate(resolve))
      for (let at = 1; at < message.length; at += 1024)
        stream.write(message.subarray(at, at + 1024))
      stream.end()
      expect(await answered).toBe(0)
      const copied = concat.mock.calls.reduce(
        (sum, [list]) => sum + list.reduce((n, b) => n + b.length, 0),
        0,
      )
      expect(copied).toBeLessThan(3 * message.length)
    } finally {
      concat.mockRestore()
      session.close()
    }
  })
})

describe('the node:http2 transport holding a request', () => {
  let running: Running
  beforeAll(async () => {
    running = await startServer(EXAMPLE, { grpcTransport: 'node-http2' })
  })
  afterAll(() => running?.stop())

  it('holds a message that comes in 1-byte DATA frames in one buffer, not as the frames', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    // 60,000 bytes: within the initial flow-control window, so the client needs no WINDOW_UPDATE.
    const body = grpcFrame(Buffer.alloc(60_000 - 5))
    gc()
    const before = process.memoryUsage().heapUsed
    // All but the last byte: the message is incomplete, so the server still holds what came.
    const socket = await rawOneByteFrames(running.grpcPort, body.subarray(0, body.length - 1))
    try {
      gc()
      const held = process.memoryUsage().heapUsed - before
      // The frames kept as they came are 60,000 Buffer objects, about 6 MB of heap (before the fix).
      expect(held).toBeLessThan(2 * 1024 * 1024)
    } finally {
      socket.destroy()
    }
  })

  it('answers a bad message on a reflection stream that already answered with a status', async () => {
    const session = await h2Session(running.grpcPort)
    try {
      const stream = session.request({ ...CHECK_HEADERS, ':path': REFLECTION_V1 })
      const status = grpcStatus(stream)
      const answered = new Promise((resolve) => stream.once('data', resolve))
      stream.write(grpcFrame(Buffer.from([0x3a, 0x00]))) // list_services: ""
      await answered
      const bad = grpcFrame(Buffer.alloc(1))
      bad[0] = 2 // a flag byte other than 0 or 1
      stream.end(bad)
      expect(await status).toBe('13')
    } finally {
      session.close()
    }
  })
})
