// The conformance gate's written case list (issue 18): what a client observes of the Check port,
// run once per gRPC transport. grpc-js is the reference: every case passes against it; where its
// behaviour is odd the case says so and accepts only what a client may rely on.

import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { type ClientHttp2Session, connect, constants as h2 } from 'node:http2'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib'
import {
  type Client,
  credentials,
  loadPackageDefinition,
  makeClientConstructor,
  type ServiceClientConstructor,
} from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { service as healthService } from 'grpc-health-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { check } from '../../src/grpc-authz/check.js'
import type { Running } from '../../src/serve.js'
import { DEFAULT_CONNECTION_LIMITS } from '../../src/server/grpc.js'
import { callCheck, checkClient } from '../support/grpc.js'
import {
  CHECK_HEADERS,
  closed,
  firstMessage,
  grpcFrame,
  h2Session,
  rawAnswer,
  rawCall,
} from '../support/h2.js'
import { policyFile } from '../support/policy.js'
import { FIXTURES, type Message, official, ROOT, TOOLS } from '../support/protos.js'
import { type ServeProcess, spawnServe, startServer } from '../support/server.js'
import { haveGrpcio, PYTHON, skipLoudly } from '../support/system.js'
import { GRPC_TRANSPORTS } from '../support/transports.js'

const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')
const POLICY = policyFile(EXAMPLE)
const FIXTURE_FILES = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.bin'))
  .sort()
const FIXTURE = readFileSync(join(FIXTURES, '01-ipv4-direct-host.bin'))
/** check()'s answer to FIXTURE: what every well-formed call below must get. */
const FIXTURE_ANSWER = check(POLICY, FIXTURE).response
/** Far above every fixture (1.4 KiB at most), small enough that a test's padding passes it. */
const MAX_REQUEST_BYTES = 4096
/** Small, so that the cancellation case goes round the cap many times quickly. */
const MAX_STREAMS = 4

const Status = {
  OK: 0,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNIMPLEMENTED: 12,
} as const

const Health = makeClientConstructor(
  healthService,
  'grpc.health.v1.Health',
) as ServiceClientConstructor

function healthCheck(port: number, service: string): Promise<{ status?: string; code?: number }> {
  const health = new Health(`127.0.0.1:${port}`, credentials.createInsecure())
  return new Promise((resolve) =>
    health['check']?.(
      { service },
      (err: { code: number } | null, res: { status: string } | undefined) => {
        health.close()
        resolve(err ? { code: err.code } : { status: res?.status ?? '' })
      },
    ),
  )
}

const require = createRequire(import.meta.url)
const REFLECTION_PROTOS = join(
  dirname(require.resolve('@grpc/reflection/package.json')),
  'build',
  'proto',
)

/** list_services and file_containing_symbol CheckRequest over one reflection stream. */
async function reflect(port: number, version: 'v1' | 'v1alpha'): Promise<Message[]> {
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, {
    includeDirs: [REFLECTION_PROTOS],
    keepCase: true,
  })
  // biome-ignore lint/suspicious/noExplicitAny: a package tree made at run time
  const pkg = loadPackageDefinition(definition) as any
  const reflection = new pkg.grpc.reflection[version].ServerReflection(
    `127.0.0.1:${port}`,
    credentials.createInsecure(),
  )
  const answers: Message[] = []
  try {
    await new Promise<void>((resolve, reject) => {
      const stream = reflection.ServerReflectionInfo()
      stream.on('data', (m: Message) => {
        answers.push(m)
        if (answers.length === 2) stream.end()
      })
      stream.on('end', resolve)
      stream.on('error', reject)
      stream.write({ list_services: '' })
      stream.write({ file_containing_symbol: 'envoy.service.auth.v3.CheckRequest' })
    })
  } finally {
    reflection.close()
  }
  return answers
}

describe.each(GRPC_TRANSPORTS)('the Check port over $name', (transport) => {
  let running: Running
  let client: Client
  let session: ClientHttp2Session

  beforeAll(async () => {
    running = await startServer(EXAMPLE, {
      ...transport.options,
      maxRequestBytes: MAX_REQUEST_BYTES,
      connections: { ...DEFAULT_CONNECTION_LIMITS, maxConcurrentStreams: MAX_STREAMS },
    })
    client = checkClient(running.grpcPort)
    session = await h2Session(running.grpcPort)
  })

  afterAll(async () => {
    session?.destroy()
    client?.close()
    await running?.stop()
  })

  /** A well-formed Check on the shared raw connection answers check()'s bytes: it serves on. */
  async function servesOn(on: ClientHttp2Session = session): Promise<void> {
    const answer = await rawCall(on, CHECK_HEADERS, grpcFrame(FIXTURE))
    expect(answer.grpcStatus).toBe(Status.OK)
    expect(firstMessage(answer.body)).toEqual(FIXTURE_ANSWER)
  }

  it('answers every fixture over a grpc-js client with check()’s bytes', async () => {
    for (const file of FIXTURE_FILES) {
      const bytes = readFileSync(join(FIXTURES, file))
      expect(await callCheck(client, bytes), file).toEqual(check(POLICY, bytes).response)
    }
  })

  describe('health', () => {
    it('is SERVING for the server and the Authorization service, NOT_FOUND for another', async () => {
      const port = running.grpcPort
      expect(await healthCheck(port, '')).toEqual({ status: 'SERVING' })
      expect(await healthCheck(port, 'envoy.service.auth.v3.Authorization')).toEqual({
        status: 'SERVING',
      })
      expect(await healthCheck(port, 'no.such.Service')).toEqual({ code: Status.NOT_FOUND })
    })
  })

  it.each(['v1', 'v1alpha'] as const)(
    'serves reflection %s: the services and the file of CheckRequest',
    async (version) => {
      const [list, file] = await reflect(running.grpcPort, version)
      const names = list.list_services_response.service.map((s: { name: string }) => s.name)
      expect(names).toEqual(
        expect.arrayContaining(['envoy.service.auth.v3.Authorization', 'grpc.health.v1.Health']),
      )
      expect(file.file_descriptor_response.file_descriptor_proto.length).toBeGreaterThan(0)
    },
  )

  describe('deadlines', () => {
    it('answers DEADLINE_EXCEEDED to a call whose message does not come before its grpc-timeout', async () => {
      const stream = session.request({ ...CHECK_HEADERS, 'grpc-timeout': '50m' })
      const answer = await rawAnswer(stream)
      expect(answer.grpcStatus).toBe(Status.DEADLINE_EXCEEDED)
      stream.close()
      await closed(stream)
      await servesOn()
    })

    it('answers a malformed grpc-timeout with INTERNAL, and the connection serves on', async () => {
      // grpc-js: /(\d{1,8})\s*([HMSmun])/ unanchored; no match → INTERNAL (trailers-only). Being
      // unanchored it takes '1Sxyz' as 1 s and '123456789S' as 23456789 s; and its `| 0` wraps
      // 597H and more to a negative timeout, which fires at once (DEADLINE_EXCEEDED at ~1 ms).
      const answer = await rawCall(
        session,
        { ...CHECK_HEADERS, 'grpc-timeout': 'soon' },
        grpcFrame(FIXTURE),
      )
      expect(answer.grpcStatus).toBe(Status.INTERNAL)
      await servesOn()
    })

    it('answers a call with a generous grpc-timeout and its message', async () => {
      const answer = await rawCall(
        session,
        { ...CHECK_HEADERS, 'grpc-timeout': '10S' },
        grpcFrame(FIXTURE),
      )
      expect(answer.grpcStatus).toBe(Status.OK)
      expect(firstMessage(answer.body)).toEqual(FIXTURE_ANSWER)
    })
  })

  describe('cancellation', () => {
    it('frees the stream slots of calls the client reset, on that connection and others', async () => {
      const own = await h2Session(running.grpcPort)
      try {
        expect(own.remoteSettings.maxConcurrentStreams).toBe(MAX_STREAMS)
        // In sequence, each past the cap's worth of resets: a leaked slot refuses a later stream.
        for (let i = 0; i < 5 * MAX_STREAMS; i++) {
          const stream = own.request(CHECK_HEADERS)
          stream.on('error', () => {})
          stream.write(grpcFrame(FIXTURE).subarray(0, 10))
          stream.close(h2.NGHTTP2_CANCEL)
          expect(await closed(stream)).toBe(h2.NGHTTP2_CANCEL)
        }
        // A cap's worth at once: each slot must be free.
        await Promise.all(Array.from({ length: MAX_STREAMS }, () => servesOn(own)))
        await servesOn()
      } finally {
        own.destroy()
      }
    })
  })

  it('answers RESOURCE_EXHAUSTED to a message over --max-request-bytes, and serves on', async () => {
    const big = grpcFrame(Buffer.alloc(MAX_REQUEST_BYTES + 1))
    expect((await rawCall(session, CHECK_HEADERS, big)).grpcStatus).toBe(Status.RESOURCE_EXHAUSTED)
    await servesOn()
  })

  describe('compressed messages', () => {
    it.each([
      ['gzip', gzipSync],
      ['deflate', deflateSync],
    ] as const)(
      'answers a %s-compressed request as the uncompressed one',
      async (encoding, zip) => {
        const answer = await rawCall(
          session,
          { ...CHECK_HEADERS, 'grpc-encoding': encoding },
          grpcFrame(zip(FIXTURE), true),
        )
        expect(answer.grpcStatus).toBe(Status.OK)
        expect(firstMessage(answer.body)).toEqual(FIXTURE_ANSWER)
      },
    )

    it('answers an unknown grpc-encoding with UNIMPLEMENTED, and serves on', async () => {
      const answer = await rawCall(
        session,
        { ...CHECK_HEADERS, 'grpc-encoding': 'br' },
        grpcFrame(brotliCompressSync(FIXTURE), true),
      )
      expect(answer.grpcStatus).toBe(Status.UNIMPLEMENTED)
      await servesOn()
    })

    it('never allows a compressed-flagged message without an encoding', async () => {
      // The gRPC spec makes this a protocol error (INTERNAL). grpc-js reads the message as
      // identity, so the gzip bytes reach check() as a CheckRequest: it fails to decode, and the
      // answer is OK with a 400 deny. Either is safe; an allow, or another error, is not.
      for (const headers of [CHECK_HEADERS, { ...CHECK_HEADERS, 'grpc-encoding': 'identity' }]) {
        const answer = await rawCall(session, headers, grpcFrame(gzipSync(FIXTURE), true))
        if (answer.grpcStatus === Status.OK) {
          const decoded = official.decodeResponse(firstMessage(answer.body))
          expect(decoded.denied_response.status.code).toBe('BadRequest')
        } else expect(answer.grpcStatus).toBe(Status.INTERNAL)
      }
      await servesOn()
    })

    it('answers RESOURCE_EXHAUSTED to a small gzip bomb over --max-request-bytes', async () => {
      const bomb = gzipSync(Buffer.alloc(1024 * 1024))
      expect(bomb.length).toBeLessThan(MAX_REQUEST_BYTES)
      const answer = await rawCall(
        session,
        { ...CHECK_HEADERS, 'grpc-encoding': 'gzip' },
        grpcFrame(bomb, true),
      )
      expect(answer.grpcStatus).toBe(Status.RESOURCE_EXHAUSTED)
      await servesOn()
    })

    it('answers corrupt gzip with INTERNAL', async () => {
      const answer = await rawCall(
        session,
        { ...CHECK_HEADERS, 'grpc-encoding': 'gzip' },
        grpcFrame(Buffer.from('not gzip'), true),
      )
      expect(answer.grpcStatus).toBe(Status.INTERNAL)
      await servesOn()
    })

    it('sends uncompressed answers, saying which encodings it accepts', async () => {
      // grpc-js sends grpc-encoding: identity and grpc-accept-encoding: identity,deflate,gzip on
      // every answer with a body (not on trailers-only errors); a client needs only that the
      // answer is not compressed.
      const answer = await rawCall(session, CHECK_HEADERS, grpcFrame(FIXTURE))
      expect(answer.body[0]).toBe(0)
      expect(answer.headers['grpc-encoding'] ?? 'identity').toBe('identity')
      const accepted = String(answer.headers['grpc-accept-encoding'] ?? 'identity').split(',')
      expect(accepted).toEqual(expect.arrayContaining(['gzip', 'deflate']))
    })
  })

  it.each([
    ['an unknown method of the Authorization service', '/envoy.service.auth.v3.Authorization/Nope'],
    ['an unknown service', '/no.such.Service/Check'],
  ])('answers %s with UNIMPLEMENTED', async (_what, path) => {
    const answer = await rawCall(session, { ...CHECK_HEADERS, ':path': path }, grpcFrame(FIXTURE))
    expect(answer.httpStatus).toBe(200)
    expect(answer.grpcStatus).toBe(Status.UNIMPLEMENTED)
  })

  describe('content-type', () => {
    const { 'content-type': _, ...withoutContentType } = CHECK_HEADERS
    it.each([
      ['application/json', { ...CHECK_HEADERS, 'content-type': 'application/json' }],
      ['missing', withoutContentType],
    ])('answers HTTP 415 when it is %s', async (_what, headers) => {
      const answer = await rawCall(session, headers, grpcFrame(FIXTURE))
      expect(answer.httpStatus).toBe(415)
      expect(answer.grpcStatus).toBeUndefined()
      await servesOn()
    })

    it('accepts application/grpc+proto', async () => {
      const answer = await rawCall(
        session,
        { ...CHECK_HEADERS, 'content-type': 'application/grpc+proto' },
        grpcFrame(FIXTURE),
      )
      expect(answer.grpcStatus).toBe(Status.OK)
      expect(firstMessage(answer.body)).toEqual(FIXTURE_ANSWER)
    })
  })

  describe('unary framing', () => {
    // grpc-js answers all three UNIMPLEMENTED ("Received no request message" / "a second request
    // message"), an odd code for a malformed request; INTERNAL would be the spec's protocol error.
    // The gate asks for either, never OK, and a connection that serves on.
    const framed = grpcFrame(FIXTURE)
    const promising = Buffer.from(framed.subarray(0, 100))
    it.each([
      ['no message (END_STREAM right after HEADERS)', undefined],
      ['two messages', Buffer.concat([framed, framed])],
      ['a length prefix promising more than is sent', promising],
      ['half a length prefix', framed.subarray(0, 3)],
    ])('answers %s with an error status, and serves on', async (_what, body) => {
      const answer = await rawCall(session, CHECK_HEADERS, body)
      expect([Status.UNIMPLEMENTED, Status.INTERNAL]).toContain(answer.grpcStatus)
      await servesOn()
    })
  })
})

describe.each(GRPC_TRANSPORTS)(
  'a connection at --max-concurrent-streams over $name',
  (transport) => {
    it('answers every one of 1024 calls in flight at once, each with an 8 KiB request', async () => {
      const running = await startServer(EXAMPLE, transport.options)
      const session = await h2Session(running.grpcPort)
      try {
        // A CheckRequest padded with an unknown field to 8 KiB, as with_request_body makes them.
        const padded = Buffer.concat([
          FIXTURE,
          Buffer.from([0xfa, 0x3f, 0xc0, 0x3f]),
          Buffer.alloc(8 * 1024),
        ])
        const streams = Array.from(
          { length: DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams },
          () => {
            const stream = session.request(CHECK_HEADERS)
            const answer = rawAnswer(stream)
            stream.write(grpcFrame(padded))
            return { stream, answer }
          },
        )
        // Every request is in flight (its message read, END_STREAM not yet sent) before any ends.
        await new Promise((resolve) => session.ping(resolve))
        for (const { stream } of streams) stream.end()
        const statuses = (await Promise.all(streams.map((s) => s.answer))).map((a) => a.grpcStatus)
        expect(statuses.filter((s) => s !== Status.OK)).toEqual([])
      } finally {
        session.destroy()
        await running.stop()
      }
    })
  },
)

describe.each(GRPC_TRANSPORTS)('the request time limit over $name', (transport) => {
  const REQUEST_TIMEOUT_MS = 200
  let running: Running
  beforeAll(async () => {
    running = await startServer(EXAMPLE, {
      ...transport.options,
      connections: { ...DEFAULT_CONNECTION_LIMITS, requestTimeoutMs: REQUEST_TIMEOUT_MS },
    })
  })
  afterAll(() => running?.stop())

  it('resets a finished call whose client never opens its window for the answer', async () => {
    // A flow-control window of 0: the answer's HEADERS pass, its DATA never can.
    const session = connect(`http://127.0.0.1:${running.grpcPort}`, {
      settings: { initialWindowSize: 0 },
    })
    session.on('error', () => {})
    try {
      const stream = session.request(CHECK_HEADERS)
      stream.on('error', () => {})
      const code = closed(stream)
      stream.end(grpcFrame(FIXTURE))
      expect(await code).toBe(h2.NGHTTP2_CANCEL)
    } finally {
      session.destroy()
    }
  })
})

describe.each(GRPC_TRANSPORTS)('shutdown over $name', (transport) => {
  it('streams health through Watch and sends NOT_SERVING when shutdown begins', async () => {
    const running = await startServer(EXAMPLE, transport.options)
    const health = new Health(`127.0.0.1:${running.grpcPort}`, credentials.createInsecure())
    const statuses: string[] = []
    const watch = health['watch']?.({ service: '' })
    watch.on('error', () => {})
    let shutdown: Promise<void> | undefined
    try {
      await new Promise<void>((resolve) =>
        watch.on('data', ({ status }: { status: string }) => {
          statuses.push(status)
          if (status === 'SERVING') shutdown = running.shutdown(5_000)
          if (status === 'NOT_SERVING') resolve()
        }),
      )
      expect(statuses).toEqual(['SERVING', 'NOT_SERVING'])
    } finally {
      // The Watch is in flight: end it, or shutdown waits for the grace period.
      watch.cancel()
      health.close()
      await (shutdown ?? running.stop())
    }
  })

  it('sends GOAWAY, lets the in-flight call finish OK, then takes no new connection', async () => {
    const running = await startServer(EXAMPLE, transport.options)
    const session = await h2Session(running.grpcPort)
    try {
      const inFlight = session.request(CHECK_HEADERS)
      const answer = rawAnswer(inFlight)
      const framed = grpcFrame(FIXTURE)
      inFlight.write(framed.subarray(0, 20))
      // The PING's ack follows the server's reading of the frames sent before it.
      await new Promise((resolve) => session.ping(resolve))
      const goaway = new Promise((resolve) => session.once('goaway', resolve))
      // serve.ts drains until no call came for QUIET_MS (1 s), then stops the gRPC server.
      const shutdown = running.shutdown(10_000)
      await goaway
      inFlight.end(framed.subarray(20))
      const finished = await answer
      expect(finished.grpcStatus).toBe(Status.OK)
      expect(firstMessage(finished.body)).toEqual(FIXTURE_ANSWER)
      await shutdown
      // Stopped: the port takes no new connection.
      const later = connect(`http://127.0.0.1:${running.grpcPort}`)
      const failed = await new Promise<boolean>((resolve) => {
        later.once('error', () => resolve(true))
        later.once('remoteSettings', () => resolve(false))
      })
      later.destroy()
      expect(failed).toBe(true)
    } finally {
      session.destroy()
    }
  })
})

describe.each(GRPC_TRANSPORTS)('the built command with $name', (transport) => {
  let server: ServeProcess | undefined
  let port = 0
  beforeAll(async () => {
    server = spawnServe(EXAMPLE, transport.flags)
    port = (await server.started()).grpcPort
  })
  afterAll(() => {
    server?.child.kill()
  })

  it('answers a fixture over a grpc-js client with check()’s bytes', async () => {
    const client = checkClient(port)
    try {
      expect(await callCheck(client, FIXTURE)).toEqual(FIXTURE_ANSWER)
    } finally {
      client.close()
    }
  })

  skipLoudly(
    !haveGrpcio,
    'python3-grpcio is missing: the fixtures were NOT sent over the C-core gRPC stack.',
  )
  it.skipIf(!haveGrpcio)(
    'answers every fixture over python3-grpcio with check()’s bytes',
    async () => {
      const { stdout } = await promisify(execFile)(PYTHON, [
        join(TOOLS, 'authz_client.py'),
        `127.0.0.1:${port}`,
        ...FIXTURE_FILES.map((f) => join(FIXTURES, f)),
      ])
      const lines = stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
      expect(lines).toHaveLength(FIXTURE_FILES.length)
      lines.forEach((line, i) => {
        const file = FIXTURE_FILES[i] ?? ''
        expect(line.ok, file).toBe(true)
        const want = check(POLICY, readFileSync(join(FIXTURES, file))).response
        expect(Buffer.from(line.response_hex, 'hex'), file).toEqual(want)
      })
    },
  )
})
