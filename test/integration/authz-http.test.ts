// The HTTP authorization port (`serve --authz-port`) as a proxy sees it: answers over keep-alive
// connections, metrics with api="http", readiness, the limits a hostile or broken client meets,
// the misconfiguration log line, and a graceful stop.

import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { once } from 'node:events'
import { Agent, type IncomingMessage, request } from 'node:http'
import { connect, createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import { ROOT } from '../support/protos.js'
import { spawnServe, startServer } from '../support/server.js'
import { exited } from '../support/stack.js'
import { until } from '../support/wait.js'

const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')

interface Answer {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: string
}

function ask(
  port: number,
  path: string,
  headers: Record<string, string>,
  options: { agent?: Agent; method?: string; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        headers,
        method: options.method ?? 'GET',
        agent: options.agent,
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d) => {
          body += d
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      },
    )
    req.on('error', reject)
    req.end(options.body)
  })
}

const NGINX_ALLOW = {
  'x-hostguard-peer': '203.0.113.7',
  'x-hostguard-authority': 'www.example.com',
  'x-hostguard-path': '/cart?id=1',
}

function series(text: string, api: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('hostguard_decisions_total{') && l.includes(`api="${api}"`))
}

/**
 * What the port answers to raw bytes: up to the end of the first answer's head, or everything
 * until the port closes the connection.
 */
async function rawAnswer(port: number, request: string, until: 'head' | 'close'): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  let answer = ''
  socket.setEncoding('latin1')
  const done = new Promise<void>((resolve) => {
    socket.on('data', (d) => {
      answer += d
      if (until === 'head' && answer.includes('\r\n\r\n')) resolve()
    })
    socket.on('close', () => resolve())
  })
  socket.write(request)
  await done
  socket.destroy()
  return answer
}

async function metrics(running: Running): Promise<string> {
  return running.metrics.registry.metrics()
}

describe('serve --authz-port', () => {
  let running: Running
  let port: number

  beforeAll(async () => {
    running = await startServer(EXAMPLE, {
      authzPort: 0,
      authzLimits: {
        headersTimeoutMs: 1000,
        requestTimeoutMs: 1000,
        keepAliveTimeoutMs: 5000,
        maxHeaderBytes: 16 * 1024,
      },
    })
    port = running.authzPort as number
  })
  afterAll(() => running.stop())

  it('answers on its own port, and /readyz and /metrics stay on the HTTP port', async () => {
    expect(port).toBeGreaterThan(0)
    expect(port).not.toBe(running.httpPort)
    expect((await ask(port, '/nginx/default', NGINX_ALLOW)).status).toBe(200)
    expect((await ask(port, '/metrics', {})).status).toBe(404)
    expect((await ask(running.httpPort, '/readyz', {})).status).toBe(200)
  })

  it('exports the api="http" series from zero, and counts each decision there', async () => {
    const before = series(await metrics(running), 'http')
    expect(before.some((l) => l.includes('reason="host_not_allowed"'))).toBe(true)
    const line = (text: string) =>
      series(text, 'http').find(
        (l) => l.includes('site="blog"') && l.includes('reason="host_not_allowed"'),
      )
    const count = (l: string | undefined) => Number(l?.split(' ').pop())
    const was = count(line(await metrics(running)))
    const denied = await ask(port, '/caddy/blog', {
      ...NGINX_ALLOW,
      'x-hostguard-authority': 'evil.example',
    })
    expect(denied.status).toBe(403)
    expect(denied.body).toBe('Forbidden\n')
    expect(count(line(await metrics(running)))).toBe(was + 1)
    // Not counted as a gRPC decision.
    const grpc = series(await metrics(running), 'grpc').find(
      (l) => l.includes('site="blog"') && l.includes('reason="host_not_allowed"'),
    )
    expect(count(grpc)).toBe(0)
  })

  it('answers an unknown dialect 404 without counting a decision', async () => {
    const total = (text: string) =>
      series(text, 'http').reduce((n, l) => n + Number(l.split(' ').pop()), 0)
    const was = total(await metrics(running))
    expect((await ask(port, '/apache/default', NGINX_ALLOW)).status).toBe(404)
    expect(total(await metrics(running))).toBe(was)
  })

  it('serves many requests, any method, on one keep-alive connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const sockets = new Set<Socket>()
    agent.on('free', (socket) => sockets.add(socket))
    try {
      for (const method of ['GET', 'HEAD', 'DELETE', 'OPTIONS']) {
        const r = await ask(
          port,
          '/envoy/default/cart',
          { 'x-hostguard-peer': '203.0.113.7', host: 'www.example.com' },
          { agent, method },
        )
        expect(r.status, method).toBe(200)
      }
      expect(sockets.size).toBe(1)
    } finally {
      agent.destroy()
    }
  })

  it('answers a request that declares a body without reading it, then closes the connection', async () => {
    // nginx forwards the client's Content-Length without the body unless told not to: what
    // follows on the connection must never be read as the body, nor the body as a request.
    const head = (authority: string, extra: string) =>
      `GET /nginx/default HTTP/1.1\r\nhost: hostguard\r\nx-hostguard-peer: 203.0.113.7\r\nx-hostguard-authority: ${authority}\r\n${extra}\r\n`
    for (const declared of [
      'content-length: 5',
      'CONTENT-LENGTH: 5',
      'Content-Length: 00',
      'tRANSFER-encoding: chunked',
    ]) {
      const socket = connect(port, '127.0.0.1')
      await once(socket, 'connect')
      socket.write(head('www.example.com', `${declared}\r\n`) + head('evil.example', ''))
      let answer = ''
      socket.setEncoding('latin1')
      socket.on('data', (d) => {
        answer += d
      })
      await once(socket, 'close')
      expect(answer.match(/^HTTP\/1\.1 /gm), declared).toHaveLength(1)
      expect(answer).toMatch(/^HTTP\/1\.1 200 /)
      expect(answer).toContain('x-hostguard-reason: host_allowed')
      expect(answer.toLowerCase()).toContain('connection: close')
    }
  })

  it('refuses a request of more header lines than node:http keeps, whatever the Node version', async () => {
    // Node 20 keeps only ~1024 lines in rawHeaders and still frames the body by the rest. A proxy
    // that appends its own x-hostguard-peer after the client's (Caddy's `header_up +`) then sent
    // only the client's forged one (a trusted proxy, vouching for an internal client), and the
    // late Content-Length left the connection open for a smuggled request. Node 24 answers 431
    // itself.
    const line = (i: number) => `x${i}: .\r\n`
    const pads = (n: number) => Array.from({ length: n }, (_, i) => line(i)).join('')
    const forged =
      'x-hostguard-peer: 10.1.0.1\r\nx-forwarded-for: 10.0.0.5\r\nx-hostguard-authority: www.example.com\r\n'
    const head = `GET /nginx/admin HTTP/1.1\r\nhost: hostguard\r\n${forged}${pads(1030)}x-hostguard-peer: 203.0.113.7\r\ncontent-length: 5\r\n\r\n`
    // Under the test server's 16 KiB --max-header-bytes: the count, not the size, is refused.
    expect(head.length).toBeLessThan(16 * 1024)
    const smuggled = `GET /nginx/admin HTTP/1.1\r\nhost: hostguard\r\n${forged}\r\n`
    const answer = await rawAnswer(port, head + smuggled, 'close')
    expect(answer).toMatch(/^HTTP\/1\.1 431 /)
    expect(answer.match(/^HTTP\/1\.1 /gm)).toHaveLength(1)
    expect(answer).not.toContain('x-hostguard-decision')

    // The bound itself: 1000 lines are decided, 1001 are not.
    const nginx = `host: hostguard\r\nx-hostguard-peer: 203.0.113.7\r\nx-hostguard-authority: www.example.com\r\n`
    const ofLines = (n: number) => `GET /nginx/default HTTP/1.1\r\n${nginx}${pads(n - 3)}\r\n`
    expect(await rawAnswer(port, ofLines(1000), 'head')).toMatch(/^HTTP\/1\.1 200 /)
    expect(await rawAnswer(port, ofLines(1001), 'head')).toMatch(/^HTTP\/1\.1 431 /)
  })

  it('answers a POST with a body, as Envoy sends with with_request_body', async () => {
    const r = await ask(
      port,
      '/envoy/default/cart',
      { 'x-hostguard-peer': '203.0.113.7', host: 'www.example.com' },
      { method: 'POST', body: 'x'.repeat(100_000) },
    )
    expect(r.status).toBe(200)
  })

  it('answers a request head over --max-header-bytes 431, and serves the next connection', async () => {
    const r = await ask(port, '/nginx/default', {
      ...NGINX_ALLOW,
      'x-pad': 'a'.repeat(20_000),
    }).catch((err: Error) => ({ status: -1, headers: {}, body: err.message }))
    expect(r.status).toBe(431)
    expect((await ask(port, '/nginx/default', NGINX_ALLOW)).status).toBe(200)
  })

  it('closes a connection whose client never finishes its request head', async () => {
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    socket.write('GET /nginx/default HTTP/1.1\r\nx-hostguard-peer: 203.0.113.7\r\n')
    let answer = ''
    socket.setEncoding('utf8')
    socket.on('data', (d) => {
      answer += d
    })
    // The server's headersTimeout ends it (408, then close), however long the test waits.
    await once(socket, 'close')
    expect(answer === '' || answer.startsWith('HTTP/1.1 408')).toBe(true)
  })

  it("keeps node:http's own checks of Host and Expect (its request makes only those headers)", async () => {
    const raw = (request: string) => rawAnswer(port, request, 'head')
    const nginx = 'x-hostguard-peer: 203.0.113.7\r\nx-hostguard-authority: www.example.com\r\n'
    // An HTTP/1.1 request without Host: node:http answers 400 before hostguard sees it.
    expect(await raw(`GET /nginx/default HTTP/1.1\r\n${nginx}\r\n`)).toMatch(/^HTTP\/1\.1 400 /)
    expect(await raw(`GET /nginx/default HTTP/1.1\r\nHOST: a\r\n${nginx}\r\n`)).toMatch(
      /^HTTP\/1\.1 200 /,
    )
    // An expectation node:http cannot meet: 417, not a decision.
    expect(
      await raw(`GET /nginx/default HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n${nginx}\r\n`),
    ).toMatch(/^HTTP\/1\.1 417 /)
    // 100-continue: node:http says 100 Continue, then hostguard answers (and closes: a body
    // was declared, and is never read).
    const continued = `POST /nginx/default HTTP/1.1\r\nHost: a\r\nEXPECT: 100-Continue\r\ncontent-length: 3\r\n${nginx}\r\n`
    const answer = await rawAnswer(port, continued, 'close')
    expect(answer).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /)
    expect(answer).toContain('x-hostguard-reason: host_allowed')
  })

  it('gives node:http a request whose headers object holds only what node:http reads', async () => {
    // node:http publishes each request here before any handler runs; the server is in this process.
    const seen: Record<string, unknown>[] = []
    const onStart = (message: unknown) => {
      seen.push({ ...(message as { request: IncomingMessage }).request.headers })
    }
    subscribe('http.server.request.start', onStart)
    try {
      const r = await ask(port, '/nginx/default', {
        ...NGINX_ALLOW,
        'user-agent': 'test',
        'x-request-id': 'r1',
      })
      expect(r.status).toBe(200)
    } finally {
      unsubscribe('http.server.request.start', onStart)
    }
    expect(seen).toEqual([{ host: `127.0.0.1:${port}` }])
  })

  it('answers garbage 400 and keeps serving', async () => {
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    socket.write('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n')
    let answer = ''
    socket.setEncoding('latin1')
    socket.on('data', (d) => {
      answer += d
    })
    await once(socket, 'close')
    expect(answer.startsWith('HTTP/1.1 400')).toBe(true)
    expect((await ask(port, '/nginx/default', NGINX_ALLOW)).status).toBe(200)
  })
})

describe('serve without --authz-port', () => {
  it('has no HTTP authorization listener and no api="http" series', async () => {
    const running = await startServer(EXAMPLE)
    try {
      expect(running.authzPort).toBeUndefined()
      expect(series(await metrics(running), 'http')).toEqual([])
      expect(series(await metrics(running), 'grpc').length).toBeGreaterThan(0)
    } finally {
      await running.stop()
    }
  })
})

describe('hostguard serve --authz-port, the process', () => {
  it("parses strictly even under NODE_OPTIONS's --insecure-http-parser", async () => {
    const served = spawnServe(EXAMPLE, ['--authz-port', '0'], undefined, {
      ...process.env,
      NODE_OPTIONS: '--insecure-http-parser',
    })
    try {
      const { authzPort } = await served.started()
      const both = `POST /nginx/default HTTP/1.1\r\nhost: hostguard\r\nx-hostguard-peer: 203.0.113.7\r\nx-hostguard-authority: www.example.com\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n`
      expect(await rawAnswer(authzPort as number, both, 'head')).toMatch(/^HTTP\/1\.1 400 /)
    } finally {
      served.child.kill('SIGKILL')
    }
  })

  it('logs a proxy misconfiguration at warn, naming the dialect and the header', async () => {
    const served = spawnServe(EXAMPLE, ['--authz-port', '0'])
    try {
      const { authzPort } = await served.started()
      const r = await ask(authzPort as number, '/nginx/default', {
        'x-hostguard-authority': 'www.example.com',
      })
      expect(r.status).toBe(403)
      expect(r.headers['x-hostguard-status']).toBe('400')
      expect(r.headers['x-hostguard-reason']).toBe('invalid_request')
      const found = () =>
        served
          .output()
          .split('\n')
          .find((l) => l.includes('proxy misconfiguration'))
      await until(10_000, () => found() !== undefined, 'the misconfiguration line')
      const line = found()
      expect(JSON.parse(line ?? '{}')).toMatchObject({
        level: 'warn',
        dialect: 'nginx',
        header: 'x-hostguard-peer',
      })
    } finally {
      served.child.kill('SIGKILL')
      await exited(served.child)
    }
  })

  it('drains on SIGTERM: answers what it has, then exits 0', async () => {
    const served = spawnServe(EXAMPLE, ['--authz-port', '0', '--grace-period', '2'])
    const { authzPort } = await served.started()
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    expect((await ask(authzPort as number, '/nginx/default', NGINX_ALLOW, { agent })).status).toBe(
      200,
    )
    const exit = once(served.child, 'exit')
    served.child.kill('SIGTERM')
    const [code] = await exit
    agent.destroy()
    expect(code).toBe(0)
  })

  it('exits 1 when the authz port cannot be bound, and names it', async () => {
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const busy = (taken.address() as { port: number }).port
    const served = spawnServe(EXAMPLE, ['--authz-port', String(busy)])
    try {
      const [code] = await once(served.child, 'exit')
      expect(code).toBe(1)
      expect(served.output()).toContain('EADDRINUSE')
    } finally {
      taken.close()
    }
  })
})
