// Through a real Caddy running proxies/caddy/Caddyfile as shipped (its {$NAME} placeholders
// filled in), with hostguard in-process on test/proxies/caddy.policy.yaml and an app that
// records what reaches it; and through the same file, what forward_auth sends hostguard (a
// recording server in its place) and what a client gets while hostguard is down.

import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
} from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import { CADDY, type CaddyProcess, skipWithoutCaddy, startCaddy } from '../support/caddy.js'
import { ROOT } from '../support/protos.js'
import { freePort, startServer } from '../support/server.js'
import {
  http1,
  type RequestOptions,
  SPOOFED_FORWARDING,
  startUpstream,
  type Upstream,
} from '../support/upstream.js'
import { until } from '../support/wait.js'

const POLICY = join(ROOT, 'test', 'proxies', 'caddy.policy.yaml')
const SECRET = 'caddy-health-secret'
const STRANGER = '127.0.0.3'
const BALANCER = '127.0.0.2'

skipWithoutCaddy('the tests through proxies/caddy/Caddyfile')

describe.skipIf(CADDY === undefined)('through Caddy on proxies/caddy/Caddyfile', () => {
  let hostguard: Running
  let app: Upstream
  let top: CaddyProcess
  let blog: CaddyProcess
  let n = 0
  /** A path no other request of the run used, to find what reached the app. */
  const unique = (path: string) => `${path}?n=${++n}`
  const get = (options: RequestOptions, caddy = top) => http1(caddy.port, options)
  const caddyEnv = (authz: string, site: string) => ({
    HOSTGUARD_AUTHZ: authz,
    HOSTGUARD_SITE: site,
    HOSTGUARD_HEALTH_HEADER: 'x-health',
    HOSTGUARD_APP: `127.0.0.1:${app.port}`,
  })
  const seenBy = (path: string) => {
    const seen = app.requestsTo(path)
    expect(seen, `${path} reaches the app once`).toHaveLength(1)
    return seen[0]?.headers ?? {}
  }
  /** Asserts that `path` was allowed through to the app; the headers the app got. */
  const allowed = async (options: RequestOptions, caddy = top) => {
    const reply = await get(options, caddy)
    expect(reply.status).toBe(200)
    expect(reply.body).toBe(`app ${options.path}`)
    return seenBy(options.path)
  }
  /** Asserts that `path` was denied with `status` and hostguard's `reason`; the app got nothing. */
  const denied = async (options: RequestOptions, status: number, reason: string) => {
    const reply = await get(options)
    expect(reply.status).toBe(status)
    expect(reply.headers['x-hostguard-decision']).toBe('deny')
    expect(reply.headers['x-hostguard-reason']).toBe(reason)
    expect(app.requestsTo(options.path)).toEqual([])
    return reply
  }

  beforeAll(async () => {
    hostguard = await startServer(POLICY, {
      authzPort: 0,
      env: { HEALTH_CHECK_HEADER_VALUE: SECRET },
    })
    app = await startUpstream()
    const authz = `127.0.0.1:${hostguard.authzPort}`
    ;[top, blog] = await Promise.all([
      startCaddy(caddyEnv(authz, 'default')),
      startCaddy(caddyEnv(authz, 'blog')),
    ])
  })

  afterAll(async () => {
    await Promise.all([top?.stop(), blog?.stop()])
    await hostguard?.stop()
    await app?.close()
  })

  describe('allow and deny as the client sees them', () => {
    it('allows an allowed host: the app answers, with x-real-ip the client', async () => {
      const path = unique('/')
      const headers = await allowed({ host: 'www.example.com', path, from: STRANGER })
      expect(headers['x-real-ip']).toBe(STRANGER)
      expect(headers.host).toBe('www.example.com')
    })

    it("denies another host with hostguard's 403, body and headers; the app sees nothing", async () => {
      const reply = await denied(
        { host: 'evil.example.net', path: unique('/'), from: STRANGER },
        403,
        'host_not_allowed',
      )
      expect(reply.body).toBe('Forbidden\n')
      expect(reply.headers['content-type']).toBe('text/plain; charset=utf-8')
      expect(reply.headers['x-hostguard-site']).toBe('default')
      expect(reply.headers['x-hostguard-client']).toBe(STRANGER)
    })

    it.each(['a_b.example.com', 'www.example.com:http', 'www.example.com:80:80', '[::1'])(
      "answers Host %s with hostguard's 400 (invalid_host)",
      async (host) => {
        const reply = await denied({ host, path: unique('/'), from: STRANGER }, 400, 'invalid_host')
        expect(reply.body).toBe('Bad Request\n')
      },
    )
  })

  describe('what Caddy does on its own', () => {
    /** The answer to `head` sent as is on its own connection from 127.0.0.3. */
    const raw = (head: string, halfClose = false) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port: top.port, localAddress: STRANGER })
        let received = ''
        socket.setEncoding('utf8')
        socket.on('data', (d) => {
          received += d
        })
        socket.on('end', () => resolve(received))
        socket.on('error', reject)
        // Caddy cancels a request whose client half-closes (often answering an empty 200).
        if (halfClose) socket.end(head)
        else socket.write(head)
      })

    it('refuses a Host Go finds malformed with its own 400, before hostguard is asked', async () => {
      const path = unique('/')
      const reply = await raw(`GET ${path} HTTP/1.1\r\nHost: www.example.com evil\r\n\r\n`)
      expect(reply).toMatch(
        /^HTTP\/1\.1 400 Bad Request: malformed Host header\r\n[\s\S]*\r\n\r\n400 Bad Request: malformed Host header$/,
      )
      expect(reply).not.toMatch(/x-hostguard/i)
      expect(app.requestsTo(path)).toEqual([])
    })

    it('never lets a denied request through to the app when the client half-closes', async () => {
      // Caddy cancels the request, forward_auth with it, once it reads the end of input: the
      // client gets hostguard's 403 or, cancelled in time, an empty 200; the app nothing.
      const paths = Array.from({ length: 10 }, () => unique('/half-closed'))
      const replies = await Promise.all(
        paths.map((path) => raw(`GET ${path} HTTP/1.1\r\nHost: evil.example.net\r\n\r\n`, true)),
      )
      for (const reply of replies)
        expect(reply).toMatch(
          /^HTTP\/1\.1 (403 Forbidden\r\n[\s\S]*\r\n\r\nForbidden\n|200 OK\r\n[\s\S]*Content-Length: 0\r\n\r\n)$/,
        )
      for (const path of paths) expect(app.requestsTo(path)).toEqual([])
    })

    it('asks hostguard about an HTTP/1.0 request without Host: the empty authority is invalid_host', async () => {
      const path = unique('/')
      const reply = await raw(`GET ${path} HTTP/1.0\r\n\r\n`)
      expect(reply).toMatch(/^HTTP\/1\.0 400 Bad Request\r\n/)
      expect(reply).toMatch(/\r\nX-Hostguard-Reason: invalid_host\r\n/)
      expect(app.requestsTo(path)).toEqual([])
    })
  })

  describe('the health check', () => {
    it('allows the secret on its path, for any Host; the secret never reaches the app', async () => {
      const path = unique('/health-check/')
      const headers = await allowed({ host: '10.0.3.4', path, headers: { 'x-health': SECRET } })
      expect(headers['x-health']).toBeUndefined()
    })

    it('denies the secret on another path', async () => {
      await denied(
        { host: '10.0.3.4', path: unique('/other/'), headers: { 'x-health': SECRET } },
        403,
        'host_not_allowed',
      )
    })

    it('denies it there even when the client names the health-check path itself', async () => {
      await denied(
        {
          host: '10.0.3.4',
          path: unique('/other/'),
          headers: { 'x-health': SECRET, 'x-hostguard-path': '/health-check/' },
        },
        403,
        'host_not_allowed',
      )
    })
  })

  describe('a client behind the trusted load balancer', () => {
    it('arrives as x-real-ip, and the chain does not reach the app', async () => {
      const path = unique('/via-lb')
      const headers = await allowed({
        host: 'www.example.com',
        path,
        from: BALANCER,
        headers: { 'x-forwarded-for': '203.0.113.7' },
      })
      expect(headers['x-real-ip']).toBe('203.0.113.7')
      expect(headers['x-forwarded-for']).toBeUndefined()
    })

    it('is found in a chain sent as several header lines', async () => {
      const path = unique('/via-lb')
      const headers = await allowed({
        host: 'www.example.com',
        path,
        from: BALANCER,
        headers: { 'x-forwarded-for': ['198.51.100.66', '203.0.113.7'] },
      })
      expect(headers['x-real-ip']).toBe('203.0.113.7')
    })

    it('is the one clientCidrs.deny judges', async () => {
      await denied(
        {
          host: 'www.example.com',
          path: unique('/via-lb'),
          from: BALANCER,
          headers: { 'x-forwarded-for': '198.51.100.66' },
        },
        403,
        'client_denied',
      )
    })

    it('is the balancer itself when it sends no x-forwarded-for', async () => {
      const path = unique('/via-lb')
      const headers = await allowed({ host: 'www.example.com', path, from: BALANCER })
      expect(headers['x-real-ip']).toBe(BALANCER)
    })

    it("checks the balancer's x-forwarded-host, not the internal hop's Host", async () => {
      const path = unique('/via-lb')
      const headers = await allowed({
        host: 'internal-hop.local',
        path,
        from: BALANCER,
        headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-host': 'www.example.com' },
      })
      expect(headers.host).toBe('internal-hop.local')
      expect(headers['x-forwarded-host']).toBeUndefined()
      await denied(
        {
          host: 'www.example.com',
          path: unique('/via-lb'),
          from: BALANCER,
          headers: { 'x-forwarded-host': 'evil.example.net' },
        },
        403,
        'host_not_allowed',
      )
    })

    it('believes neither header from a stranger', async () => {
      const path = unique('/stranger')
      const headers = await allowed({
        host: 'www.example.com',
        path,
        from: STRANGER,
        headers: { 'x-forwarded-for': '198.51.100.66' },
      })
      expect(headers['x-real-ip']).toBe(STRANGER)
      await denied(
        {
          host: 'evil.example.net',
          path: unique('/stranger'),
          from: STRANGER,
          headers: { 'x-forwarded-host': 'www.example.com' },
        },
        403,
        'host_not_allowed',
      )
    })
  })

  describe("a client that writes hostguard's headers itself", () => {
    it('claiming the balancer as its peer is still a stranger', async () => {
      // Were the claim believed, the chain would name a denied client.
      const path = unique('/spoof-peer')
      const headers = await allowed({
        host: 'www.example.com',
        path,
        from: STRANGER,
        // Twice: Caddy must replace every copy, or hostguard would answer 400.
        headers: { 'x-hostguard-peer': [BALANCER, BALANCER], 'x-forwarded-for': '198.51.100.66' },
      })
      expect(headers['x-real-ip']).toBe(STRANGER)
    })

    it('naming an allowed authority does not get its evil Host allowed', async () => {
      await denied(
        {
          host: 'evil.example.net',
          path: unique('/spoof-authority'),
          from: STRANGER,
          headers: { 'x-hostguard-authority': ['www.example.com', 'www.example.com'] },
        },
        403,
        'host_not_allowed',
      )
    })

    it("naming its client does not reach the app, and hostguard's headers do not either", async () => {
      const path = unique('/spoof-client')
      const headers = await allowed({
        host: 'www.example.com',
        path,
        from: STRANGER,
        headers: { 'x-hostguard-client': '10.9.9.9', 'x-hostguard-decision': 'allow' },
      })
      expect(headers['x-real-ip']).toBe(STRANGER)
      expect(Object.keys(headers).filter((k) => k.startsWith('x-hostguard-'))).toEqual([])
    })
  })

  it('a client naming x-real-ip in Connection does not take it from the app', async () => {
    // Caddy drops the headers Connection names from the request to the app, after copy_headers.
    const path = unique('/connection')
    const headers = await allowed({
      host: 'www.example.com',
      path,
      from: STRANGER,
      headers: { connection: 'close, x-real-ip, x-hostguard-peer' },
    })
    expect(headers['x-real-ip']).toBe(STRANGER)
  })

  describe('forwarding headers never reach the app', () => {
    it.each([
      ['a stranger', STRANGER, STRANGER],
      ['the trusted balancer', BALANCER, '10.9.9.9'],
    ])(
      'from %s: none does, and x-real-ip is the client hostguard named',
      async (_, from, client) => {
        const path = unique('/spoof')
        const headers = await allowed({
          host: 'www.example.com',
          path,
          from,
          headers: SPOOFED_FORWARDING,
        })
        for (const name of Object.keys(SPOOFED_FORWARDING).filter((k) => k !== 'x-real-ip'))
          expect(headers[name], name).toBeUndefined()
        expect(headers['x-real-ip']).toBe(client)
      },
    )
  })

  describe('dry run (the blog site)', () => {
    it('lets a deny through to the app as an allow', async () => {
      for (const [host, from] of [
        ['blog.example.com', '127.0.0.4'],
        ['evil.example.net', STRANGER],
      ] as const) {
        const path = unique('/blog')
        const headers = await allowed({ host, path, from }, blog)
        expect(headers['x-real-ip']).toBe(from)
      }
    })

    it('gives the app no x-real-ip when hostguard names no client, whatever the client sent', async () => {
      const path = unique('/blog-unknown')
      const headers = await allowed(
        {
          host: 'blog.example.com',
          path,
          from: BALANCER,
          headers: { 'x-forwarded-for': 'unknown', 'x-real-ip': '10.9.9.9' },
        },
        blog,
      )
      expect(headers['x-real-ip']).toBeUndefined()
    })
  })

  it('counts the decisions with api="http"', async () => {
    const count = async () => {
      const text = await hostguard.metrics.registry.metrics()
      const line = text
        .split('\n')
        .find(
          (l) =>
            l.startsWith('hostguard_decisions_total{') &&
            [
              'api="http"',
              'site="default"',
              'decision="deny"',
              'reason="host_not_allowed"',
              'mode="enforce"',
            ].every((label) => l.includes(label)),
        )
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
    }
    const before = await count()
    await denied({ host: 'evil.example.net', path: unique('/count') }, 403, 'host_not_allowed')
    expect(await count()).toBe(before + 1)
  })

  describe('what forward_auth sends hostguard (a recording server in its place)', () => {
    let recorder: Upstream
    let caddy: CaddyProcess

    beforeAll(async () => {
      recorder = await startUpstream()
      caddy = await startCaddy(caddyEnv(`127.0.0.1:${recorder.port}`, 'default'))
    })

    afterAll(async () => {
      await caddy?.stop()
      await recorder?.close()
    })

    it('a GET to /caddy/<site> with the original query, its headers set, the others as sent', async () => {
      const path = unique('/some/where')
      await allowed(
        {
          host: 'www.example.com:8443',
          path,
          method: 'POST',
          body: 'x',
          from: STRANGER,
          headers: {
            'x-hostguard-peer': BALANCER,
            'x-hostguard-authority': 'www.example.com',
            'x-forwarded-for': ['10.1.1.1', '10.2.2.2'],
            'x-forwarded-host': ['a.example', 'b.example'],
            'x-forwarded-proto': 'https',
            forwarded: 'for=10.9.9.9',
            'x-real-ip': '10.9.9.9',
          },
        },
        caddy,
      )
      const [asked] = recorder.seen
      expect(recorder.seen).toHaveLength(1)
      expect(asked?.method).toBe('GET')
      expect(asked?.path).toBe(`/caddy/default?n=${n}`)
      expect(asked?.headers).toMatchObject({
        'x-hostguard-peer': STRANGER,
        'x-hostguard-authority': 'www.example.com:8443',
        'x-hostguard-path': path,
        // One line, joined with a bare comma; without the peer Caddy would append.
        'x-forwarded-for': '10.1.1.1,10.2.2.2',
        // trusted_proxies keeps a received X-Forwarded-Host, but only its last line.
        'x-forwarded-host': 'b.example',
        'x-forwarded-proto': 'https',
        'x-forwarded-method': 'POST',
        'x-forwarded-uri': path,
        forwarded: 'for=10.9.9.9',
        'x-real-ip': '10.9.9.9',
        host: 'www.example.com:8443',
      })
    })

    it("an empty x-forwarded-for when the client sent none, and Caddy's x-forwarded-host", async () => {
      const path = unique('/bare')
      await allowed({ host: 'www.example.com', path, from: STRANGER }, caddy)
      const asked = recorder.seen.at(-1)
      expect(asked?.headers['x-forwarded-for']).toBe('')
      expect(asked?.headers['x-forwarded-host']).toBe('www.example.com')
      expect(asked?.headers['x-forwarded-proto']).toBe('http')
    })

    it('gives the app no x-real-ip when the answer names no client', async () => {
      // The recorder's 200 carries no x-hostguard-client.
      const path = unique('/no-client')
      const headers = await allowed(
        { host: 'www.example.com', path, headers: { 'x-real-ip': '10.9.9.9' } },
        caddy,
      )
      expect(headers['x-real-ip']).toBeUndefined()
    })
  })

  describe('an upgrade (WebSocket)', () => {
    let upgraded: IncomingHttpHeaders[]
    let wsApp: Server
    let caddy: CaddyProcess

    beforeAll(async () => {
      upgraded = []
      wsApp = createServer((_, res) => res.end('no upgrade'))
      wsApp.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
        upgraded.push(req.headers)
        socket.end(
          'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhello',
        )
      })
      await new Promise<void>((resolve) => wsApp.listen(0, '127.0.0.1', resolve))
      const wsPort = (wsApp.address() as AddressInfo).port
      caddy = await startCaddy({
        ...caddyEnv(`127.0.0.1:${hostguard.authzPort}`, 'default'),
        HOSTGUARD_APP: `127.0.0.1:${wsPort}`,
      })
    })

    afterAll(async () => {
      await caddy?.stop()
      wsApp?.closeAllConnections()
      await new Promise((resolve) => wsApp?.close(resolve))
    })

    it('is allowed through with x-real-ip, though Connection names x-real-ip too', async () => {
      const socket = connect({ host: '127.0.0.1', port: caddy.port, localAddress: STRANGER })
      socket.write(
        'GET /ws HTTP/1.1\r\nHost: www.example.com\r\nConnection: Upgrade, X-Real-Ip\r\nUpgrade: websocket\r\n\r\n',
      )
      let received = ''
      socket.setEncoding('utf8')
      socket.on('data', (d) => {
        received += d
      })
      await new Promise((resolve) => socket.once('end', resolve))
      expect(received).toMatch(/^HTTP\/1\.1 101 [\s\S]*\r\n\r\nhello$/)
      expect(upgraded).toHaveLength(1)
      expect(upgraded[0]).toMatchObject({
        connection: 'Upgrade',
        upgrade: 'websocket',
        'x-real-ip': STRANGER,
      })
    })
  })

  describe('while hostguard is down', () => {
    let caddy: CaddyProcess

    beforeAll(async () => {
      caddy = await startCaddy(caddyEnv(`127.0.0.1:${await freePort()}`, 'default'))
    })

    afterAll(() => caddy?.stop())

    it('answers 502 with an empty body; the app sees nothing', async () => {
      const path = unique('/down')
      const reply = await get({ host: 'www.example.com', path }, caddy)
      expect(reply.status).toBe(502)
      expect(reply.body).toBe('')
      expect(app.requestsTo(path)).toEqual([])
      // Caddy logs the failed dial at error, once the answer is sent.
      const refused =
        /"logger":"http\.log\.error","msg":"dial tcp 127\.0\.0\.1:\d+: connect: connection refused"/
      await until(5_000, () => refused.test(caddy.log()), "Caddy's error log line")
    })
  })
})
