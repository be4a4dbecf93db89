import { readFileSync } from 'node:fs'
import { constants as h2 } from 'node:http2'
import { connect as tcpConnect } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from '../../src/server/grpc.js'
import { callCheck, checkClient } from '../support/grpc.js'
import {
  CHECK_HEADERS,
  closed,
  grpcFrame,
  h2Session,
  halfOpenCheck,
  rawHalfOpenStreams,
} from '../support/h2.js'
import { FIXTURES, official, ROOT } from '../support/protos.js'
import { MAIN, spawnServe, startServer } from '../support/server.js'
import { GRPC_TRANSPORTS } from '../support/transports.js'

/** The container image's NODE_OPTIONS (Dockerfile), which the Deployment runs with. */
const IMAGE_NODE_OPTIONS =
  /^ENV NODE_OPTIONS=(.*)$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1] ?? ''

const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')
const FIXTURE = readFileSync(join(FIXTURES, '01-ipv4-direct-host.bin'))

// Every limit holds for each gRPC transport of the conformance gate.
describe.each(GRPC_TRANSPORTS)('$name', (transport) => {
  let running: Running | undefined
  afterEach(async () => {
    await running?.stop()
    running = undefined
  })

  async function start(limits: Partial<ConnectionLimits> = {}): Promise<Running> {
    running = await startServer(EXAMPLE, {
      ...transport.options,
      connections: { ...DEFAULT_CONNECTION_LIMITS, ...limits },
    })
    return running
  }

  describe('streams per connection', () => {
    it('announces --max-concurrent-streams in SETTINGS and refuses streams past it with REFUSED_STREAM', async () => {
      const { grpcPort } = await start({ maxConcurrentStreams: 4, requestTimeoutMs: 300 })
      // Six HEADERS at once, before the server's SETTINGS could have been read.
      const client = await rawHalfOpenStreams(grpcPort, 6)
      try {
        const codes = await client.resets([1, 3, 5, 7, 9, 11])
        expect(client.maxConcurrentStreams()).toBe(4)
        expect([...codes.values()].filter((c) => c === h2.NGHTTP2_REFUSED_STREAM)).toHaveLength(2)
        // The four it took are reset by the request time limit.
        expect([...codes.values()].filter((c) => c === h2.NGHTTP2_CANCEL)).toHaveLength(4)
      } finally {
        client.socket.destroy()
      }
    })
  })

  describe('--request-timeout', () => {
    it('resets a stream that sent HEADERS and no message, and the connection serves on', async () => {
      const { grpcPort } = await start({ requestTimeoutMs: 200 })
      const session = await h2Session(grpcPort)
      try {
        const stream = halfOpenCheck(session)
        let answered = false
        stream.on('response', () => {
          answered = true
        })
        expect(await closed(stream)).toBe(h2.NGHTTP2_CANCEL)
        expect(answered).toBe(false)
        const call = session.request(CHECK_HEADERS)
        call.end(grpcFrame(FIXTURE))
        const trailers = new Promise<Record<string, unknown>>((resolve) =>
          call.once('trailers', resolve),
        )
        expect(await closed(call)).toBe(h2.NGHTTP2_NO_ERROR)
        expect((await trailers)['grpc-status']).toBe('0')
      } finally {
        session.destroy()
      }
    })

    it('resets a stream that sent part of its message and stopped', async () => {
      const { grpcPort } = await start({ requestTimeoutMs: 200 })
      const session = await h2Session(grpcPort)
      try {
        const stream = halfOpenCheck(session)
        stream.write(grpcFrame(FIXTURE).subarray(0, 8))
        expect(await closed(stream)).toBe(h2.NGHTTP2_CANCEL)
      } finally {
        session.destroy()
      }
    })

    it('leaves a stream whose request is complete: a health Watch outlives a later half-open stream', async () => {
      const { grpcPort } = await start({ requestTimeoutMs: 200 })
      const session = await h2Session(grpcPort)
      try {
        const watch = session.request({ ...CHECK_HEADERS, ':path': '/grpc.health.v1.Health/Watch' })
        watch.on('error', () => {})
        const firstAnswer = new Promise((resolve) => watch.once('data', resolve))
        watch.end(grpcFrame(Buffer.alloc(0)))
        await firstAnswer
        // Opened after the Watch, so reset after the Watch's own time limit has passed.
        expect(await closed(halfOpenCheck(session))).toBe(h2.NGHTTP2_CANCEL)
        expect(watch.closed).toBe(false)
      } finally {
        session.destroy()
      }
    })
  })

  describe('--preface-timeout', () => {
    it('closes a TCP connection that never speaks HTTP/2, and keeps one that did', async () => {
      const { grpcPort } = await start({ prefaceTimeoutMs: 200 })
      const speaking = await h2Session(grpcPort)
      try {
        const silent = tcpConnect(grpcPort, '127.0.0.1')
        silent.on('error', () => {})
        silent.resume() // read, or the server's FIN is never seen
        await new Promise((resolve) => silent.once('close', resolve))
        // Idle since its SETTINGS, longer than the silent one lived: still open and serving.
        expect(speaking.closed || speaking.destroyed).toBe(false)
        const call = speaking.request(CHECK_HEADERS)
        call.end(grpcFrame(FIXTURE))
        expect(await closed(call)).toBe(h2.NGHTTP2_NO_ERROR)
      } finally {
        speaking.destroy()
      }
    })
  })

  describe('Envoy-like traffic under the default limits', () => {
    it('answers many sequential calls on one connection, and rounds of 64 concurrent streams', async () => {
      const { grpcPort } = await start()
      const client = checkClient(grpcPort)
      try {
        for (let i = 0; i < 500; i++) {
          const answer = official.decodeResponse(await callCheck(client, FIXTURE))
          expect(answer.ok_response).toBeDefined()
        }
        for (let round = 0; round < 20; round++) {
          const answers = await Promise.all(
            Array.from({ length: 64 }, () => callCheck(client, FIXTURE)),
          )
          for (const a of answers) expect(official.decodeResponse(a).ok_response).toBeDefined()
        }
      } finally {
        client.close()
      }
    })
  })

  describe('memory under half-open streams (built server)', () => {
    const TOTAL = 20_000
    const CONNECTIONS_AT_ONCE = 2
    const rssMiB = (pid: number): number =>
      Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024

    const CAP = DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams

    /** Opens `count` half-open streams on a new connection; resolves once all were reset and it closed. */
    async function fillAndLeave(port: number, count: number, codes: Map<number, number>) {
      const session = await h2Session(port)
      expect(session.remoteSettings.maxConcurrentStreams).toBe(CAP)
      const resets = await Promise.all(
        Array.from({ length: count }, () => closed(halfOpenCheck(session))),
      )
      for (const code of resets) codes.set(code, (codes.get(code) ?? 0) + 1)
      const left = new Promise((resolve) => session.once('close', resolve))
      session.close()
      await left
    }

    it.skipIf(process.platform !== 'linux')(
      `${TOTAL} streams that never send their message leave RSS within 100 MiB of idle, also once the client left`,
      async () => {
        // The image's V8 settings: Node 24's default young generation alone grows past the bound.
        const server = spawnServe(EXAMPLE, [...transport.flags, '--request-timeout', '1'], MAIN, {
          ...process.env,
          NODE_OPTIONS: IMAGE_NODE_OPTIONS,
        })
        try {
          const { grpcPort } = await server.started()
          const pid = server.child.pid ?? 0
          const client = checkClient(grpcPort)
          expect(
            official.decodeResponse(await callCheck(client, FIXTURE)).ok_response,
          ).toBeDefined()
          client.close()
          const idle = rssMiB(pid)
          const codes = new Map<number, number>()
          // As many connections as the cap requires, a few at a time.
          const batches: number[] = []
          for (let left = TOTAL; left > 0; left -= CAP) batches.push(Math.min(CAP, left))
          let highest = idle
          const worker = async () => {
            for (let count = batches.pop(); count !== undefined; count = batches.pop()) {
              await fillAndLeave(grpcPort, count, codes)
              highest = Math.max(highest, rssMiB(pid))
            }
          }
          await Promise.all(Array.from({ length: CONNECTIONS_AT_ONCE }, worker))
          expect(codes).toEqual(new Map([[h2.NGHTTP2_CANCEL, TOTAL]]))
          expect(highest).toBeLessThan(idle + 100)
          expect(rssMiB(pid)).toBeLessThan(idle + 100)
        } finally {
          server.child.kill()
        }
      },
      120_000,
    )
  })
})
