// Through a real nginx running proxies/nginx/hostguard.conf as shipped (addresses and site
// filled in by test/support/nginx.ts), with hostguard in-process on test/proxies/nginx.policy.yaml
// and an app that records what reaches it.

import { createServer } from 'node:http'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import { NGINX, type NginxProcess, skipWithoutNginx, startNginx } from '../support/nginx.js'
import { ROOT } from '../support/protos.js'
import { freePort, startServer } from '../support/server.js'
import {
  http1,
  type RequestOptions,
  SPOOFED_FORWARDING,
  startUpstream,
  type Upstream,
} from '../support/upstream.js'

const POLICY = join(ROOT, 'test', 'proxies', 'nginx.policy.yaml')
const SECRET = 'nginx-health-secret'

interface RawReply {
  readonly status: number
  readonly head: string
  readonly body: string
}

/**
 * Writes `request` as is on its own connection from `from`; reads until nginx closes it (the
 * request must say HTTP/1.0 or Connection: close). The socket is not half-closed: nginx takes a
 * client's FIN during the auth subrequest for an abort (499) and answers nothing.
 */
function raw(port: number, request: string, from = '127.0.0.1'): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress: from }, () =>
      socket.write(request),
    )
    let text = ''
    socket.setEncoding('latin1')
    socket.on('data', (d) => {
      text += d
    })
    socket.on('error', reject)
    socket.on('end', () => {
      const split = text.indexOf('\r\n\r\n')
      const head = text.slice(0, split)
      resolve({ status: Number(head.split(' ')[1]), head, body: text.slice(split + 4) })
    })
  })
}

skipWithoutNginx('the tests through proxies/nginx/hostguard.conf')

describe.skipIf(NGINX === undefined)('through nginx on proxies/nginx/hostguard.conf', () => {
  let hostguard: Running
  let app: Upstream
  let nginx: NginxProcess
  let blog: NginxProcess
  let n = 0
  /** A path no other request of the run used, to find it at the app. */
  const unique = (path: string) => `${path}${path.includes('?') ? '&' : '?'}n=${++n}`
  const get = (options: RequestOptions) => http1(nginx.port, options)
  const seenBy = (path: string) => {
    const [seen] = app.requestsTo(path)
    if (!seen) throw new Error(`${path} did not reach the app`)
    return seen.headers
  }
  /** The sum of hostguard_decisions_total over the series whose labels contain `labels`. */
  const decisions = async (labels: string) => {
    const text = await (await fetch(`http://127.0.0.1:${hostguard.httpPort}/metrics`)).text()
    let sum = 0
    for (const line of text.split('\n'))
      if (line.startsWith('hostguard_decisions_total{') && line.includes(labels))
        sum += Number(line.slice(line.lastIndexOf(' ') + 1))
    return sum
  }

  beforeAll(async () => {
    hostguard = await startServer(POLICY, {
      authzPort: 0,
      env: { HEALTH_CHECK_HEADER_VALUE: SECRET },
    })
    app = await startUpstream()
    const authzPort = hostguard.authzPort ?? 0
    nginx = await startNginx({ authzPort, appPort: app.port })
    blog = await startNginx({ authzPort, appPort: app.port, site: 'blog' })
  })

  afterAll(async () => {
    await nginx?.stop()
    await blog?.stop()
    await app?.close()
    await hostguard?.stop()
  })

  describe('allow and deny as the client sees them', () => {
    it('allows an allowed host: the app answers, with x-real-ip the client', async () => {
      const path = unique('/')
      const reply = await get({ host: 'www.example.com', path })
      expect(reply.status).toBe(200)
      expect(reply.body).toBe(`app ${path}`)
      expect(app.requestsTo(path)).toHaveLength(1)
      expect(seenBy(path)['x-real-ip']).toBe('127.0.0.1')
      expect(seenBy(path).host).toBe('www.example.com')
    })

    it('denies another host with 403 and a short body; the app sees nothing', async () => {
      const path = unique('/')
      const reply = await get({ host: 'evil.example.net', path })
      expect(reply.status).toBe(403)
      expect(reply.body).toBe('Forbidden\n')
      expect(reply.headers['content-type']).toBe('text/plain; charset=utf-8')
      expect(app.requestsTo(path)).toEqual([])
    })

    it.each(['a_b.example.com', 'www.example.com:http', 'www.example.com:80:80', '[::1'])(
      'answers Host %s with 400 (invalid_host, through x-hostguard-status)',
      async (host) => {
        const path = unique('/')
        const reply = await get({ host, path })
        expect(reply.status).toBe(400)
        expect(reply.body).toBe('Bad Request\n')
        expect(app.requestsTo(path)).toEqual([])
      },
    )

    it('gives a deny status other than 400 and 403 as 403: only those have a line', async () => {
      const hidden = await startNginx({
        authzPort: hostguard.authzPort ?? 0,
        appPort: app.port,
        site: 'hidden',
      })
      try {
        const reply = await http1(hidden.port, { host: 'evil.example.net', path: unique('/') })
        expect(reply.status).toBe(403)
      } finally {
        await hidden.stop()
      }
    })

    it("answers a repeated Host with nginx's own 400, before hostguard is asked", async () => {
      const path = unique('/')
      const before = await decisions('api="http"')
      const reply = await raw(
        nginx.port,
        `GET ${path} HTTP/1.1\r\nHost: www.example.com\r\nHost: evil.example.net\r\nConnection: close\r\n\r\n`,
      )
      expect(reply.status).toBe(400)
      expect(reply.body).toContain('<center>nginx/')
      expect(app.requestsTo(path)).toEqual([])
      expect(await decisions('api="http"')).toBe(before)
    })

    it('shows the client none of the x-hostguard-* headers of a deny', async () => {
      const reply = await get({ host: 'evil.example.net', path: unique('/') })
      expect(reply.status).toBe(403)
      expect(Object.keys(reply.headers).filter((h) => h.startsWith('x-hostguard-'))).toEqual([])
    })

    it('denies a client outside the site clientCidrs.allow', async () => {
      const admin = await startNginx({
        authzPort: hostguard.authzPort ?? 0,
        appPort: app.port,
        site: 'admin',
      })
      try {
        const path = unique('/admin')
        const stranger = await http1(admin.port, { host: 'www.example.com', path })
        expect(stranger.status).toBe(403)
        const adminPath = unique('/admin')
        const ok = await http1(admin.port, {
          host: 'www.example.com',
          path: adminPath,
          from: '127.0.0.2',
        })
        expect(ok.status).toBe(200)
        expect(app.requestsTo(path)).toEqual([])
        expect(seenBy(adminPath)['x-real-ip']).toBe('127.0.0.2')
      } finally {
        await admin.stop()
      }
    })
  })

  describe('the health-check secret', () => {
    it('is allowed on its path whatever the Host, and never reaches the app', async () => {
      const path = '/health-check/'
      const reply = await get({ host: '10.99.0.1:8080', path, headers: { 'x-health': SECRET } })
      expect(reply.status).toBe(200)
      const [seen] = app.requestsTo(path)
      expect(seen?.headers['x-health']).toBeUndefined()
      expect(seen?.headers['x-real-ip']).toBe('127.0.0.1')
    })

    it.each([
      ['a wrong secret on its path', '/health-check/', 'guess'],
      ['the secret on another path', '/other', SECRET],
    ])('denies %s', async (_, path, value) => {
      const sent = unique(path)
      const reply = await get({
        host: 'evil.example.net',
        path: sent,
        headers: { 'x-health': value },
      })
      expect(reply.status).toBe(403)
      expect(app.requestsTo(sent)).toEqual([])
    })
  })

  describe('forwarding headers', () => {
    it('from a stranger: none reaches the app, and x-real-ip is the peer', async () => {
      const path = unique('/spoof')
      const reply = await get({ host: 'www.example.com', path, headers: SPOOFED_FORWARDING })
      expect(reply.status).toBe(200)
      const headers = seenBy(path)
      for (const name of Object.keys(SPOOFED_FORWARDING).filter((k) => k !== 'x-real-ip'))
        expect(headers[name], name).toBeUndefined()
      expect(headers['x-real-ip']).toBe('127.0.0.1')
    })

    it('from the trusted proxy: the resolved client arrives as x-real-ip, the chain does not', async () => {
      const path = unique('/via-lb')
      const reply = await get({
        host: 'internal-hop.local',
        path,
        from: '127.0.0.3',
        headers: {
          'x-forwarded-for': '198.51.100.9, 203.0.113.7',
          'x-forwarded-host': 'www.example.com',
          'x-forwarded-proto': 'https',
          'x-real-ip': '10.9.9.9',
        },
      })
      expect(reply.status).toBe(200)
      const headers = seenBy(path)
      expect(headers['x-real-ip']).toBe('203.0.113.7')
      expect(headers['x-forwarded-for']).toBeUndefined()
      expect(headers['x-forwarded-host']).toBeUndefined()
      expect(headers['x-forwarded-proto']).toBeUndefined()
    })

    it('from the trusted proxy: a forwarded host that is not allowed is denied', async () => {
      const path = unique('/via-lb')
      const reply = await get({
        host: 'www.example.com',
        path,
        from: '127.0.0.3',
        headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-host': 'evil.example.net' },
      })
      expect(reply.status).toBe(403)
      expect(app.requestsTo(path)).toEqual([])
    })

    it('from a stranger: x-forwarded-host is not believed (Host decides)', async () => {
      const path = unique('/spoof')
      const reply = await get({
        host: 'evil.example.net',
        path,
        headers: { 'x-forwarded-host': 'www.example.com' },
      })
      expect(reply.status).toBe(403)
      expect(app.requestsTo(path)).toEqual([])
    })
  })

  describe("hostguard's own input headers sent by a client", () => {
    it('a stranger claiming the trusted peer in x-hostguard-peer is still a stranger', async () => {
      const path = unique('/claim')
      const reply = await get({
        host: 'www.example.com',
        path,
        headers: { 'x-hostguard-peer': '127.0.0.3', 'x-forwarded-for': '203.0.113.7' },
      })
      expect(reply.status).toBe(200)
      expect(seenBy(path)['x-real-ip']).toBe('127.0.0.1')
    })

    it('a stranger claiming an admin address is refused by the admin site', async () => {
      const admin = await startNginx({
        authzPort: hostguard.authzPort ?? 0,
        appPort: app.port,
        site: 'admin',
      })
      try {
        const path = unique('/admin')
        const reply = await http1(admin.port, {
          host: 'www.example.com',
          path,
          headers: { 'x-hostguard-peer': '127.0.0.2' },
        })
        expect(reply.status).toBe(403)
        expect(app.requestsTo(path)).toEqual([])
      } finally {
        await admin.stop()
      }
    })

    it('x-hostguard-peer sent twice is replaced as one (hostguard sees no repeat)', async () => {
      const path = unique('/twice')
      const reply = await raw(
        nginx.port,
        `GET ${path} HTTP/1.1\r\nHost: www.example.com\r\nX-Hostguard-Peer: 127.0.0.3\r\n` +
          'X-Hostguard-Peer: 127.0.0.2\r\nX-Hostguard-Authority: www.example.com\r\n' +
          'X-Hostguard-Authority: www.example.com\r\nConnection: close\r\n\r\n',
      )
      expect(reply.status).toBe(200)
      expect(seenBy(path)['x-real-ip']).toBe('127.0.0.1')
    })

    it('a spoofed x-hostguard-authority does not get an evil Host allowed', async () => {
      const path = unique('/claim')
      const reply = await get({
        host: 'evil.example.net',
        path,
        headers: { 'x-hostguard-authority': 'www.example.com' },
      })
      expect(reply.status).toBe(403)
      expect(app.requestsTo(path)).toEqual([])
    })

    it('a spoofed x-hostguard-path does not open the health-check path', async () => {
      const path = unique('/other')
      const reply = await get({
        host: 'evil.example.net',
        path,
        headers: { 'x-health': SECRET, 'x-hostguard-path': '/health-check/' },
      })
      expect(reply.status).toBe(403)
      expect(app.requestsTo(path)).toEqual([])
    })

    it('HTTP/1.0 without Host: $http_host is empty, no authority is sent, not even the client one: 400', async () => {
      const path = unique('/no-host')
      const reply = await raw(
        nginx.port,
        `GET ${path} HTTP/1.0\r\nX-Hostguard-Authority: www.example.com\r\n\r\n`,
      )
      expect(reply.status).toBe(400)
      expect(reply.body).toBe('Bad Request\n')
      expect(app.requestsTo(path)).toEqual([])
    })
  })

  describe('dry run (site blog)', () => {
    it('answers a deny as an allow: the app gets the request', async () => {
      const path = unique('/blog')
      const reply = await http1(blog.port, { host: 'evil.example.net', path })
      expect(reply.status).toBe(200)
      expect(reply.body).toBe(`app ${path}`)
      expect(seenBy(path)['x-real-ip']).toBe('127.0.0.1')
    })
  })

  describe('metrics', () => {
    it('counts each decision with api="http"', async () => {
      const allow =
        'site="default",decision="allow",reason="host_allowed",mode="enforce",api="http"'
      const deny =
        'site="default",decision="deny",reason="host_not_allowed",mode="enforce",api="http"'
      const dry = 'site="blog",decision="deny",reason="host_not_allowed",mode="dry_run",api="http"'
      const before = [await decisions(allow), await decisions(deny), await decisions(dry)]
      await get({ host: 'www.example.com', path: unique('/m') })
      await get({ host: 'evil.example.net', path: unique('/m') })
      await http1(blog.port, { host: 'evil.example.net', path: unique('/m') })
      expect([await decisions(allow), await decisions(deny), await decisions(dry)]).toEqual(
        before.map((v) => v + 1),
      )
    })
  })
})

describe.skipIf(NGINX === undefined)('the auth subrequest nginx sends', () => {
  let recorder: Upstream
  let app: Upstream
  let nginx: NginxProcess

  beforeAll(async () => {
    // A recorder stands in for hostguard: it answers 200 (allow) and keeps what it got.
    recorder = await startUpstream()
    app = await startUpstream()
    nginx = await startNginx({ authzPort: recorder.port, appPort: app.port })
  })

  afterAll(async () => {
    await nginx?.stop()
    await app?.close()
    await recorder?.close()
  })

  it('is a GET of /nginx/default with the three inputs, the client headers, no body', async () => {
    const reply = await http1(nginx.port, {
      host: 'www.example.com:8443',
      path: '/form?a=1',
      method: 'POST',
      body: 'secret=body',
      headers: {
        'x-hostguard-peer': '10.0.0.1',
        'x-hostguard-authority': 'evil.example.net',
        'x-hostguard-path': '/health-check/',
        'x-health': 'probe',
        'x-forwarded-for': '203.0.113.7',
        x_forwarded_for: '10.9.9.9',
        'content-type': 'application/x-www-form-urlencoded',
      },
    })
    expect(reply.status).toBe(200)
    expect(recorder.seen).toHaveLength(1)
    const [auth] = recorder.seen
    expect(auth?.method).toBe('GET')
    expect(auth?.path).toBe('/nginx/default')
    expect(auth?.headers).toMatchObject({
      'x-hostguard-peer': '127.0.0.1',
      'x-hostguard-authority': 'www.example.com:8443',
      'x-hostguard-path': '/form?a=1',
      'x-health': 'probe',
      'x-forwarded-for': '203.0.113.7',
      host: 'hostguard',
    })
    // nginx drops header names with an underscore (ignore_invalid_headers on) before anyone.
    expect(auth?.headers['x_forwarded_for']).toBeUndefined()
    expect(auth?.headers['content-length']).toBeUndefined()
    expect(auth?.headers['transfer-encoding']).toBeUndefined()
    // proxy_http_version 1.1 and an empty Connection: the keepalive pool is used.
    expect(auth?.headers.connection).toBeUndefined()
    // The app gets the body; the recorder answered with a body nginx threw away.
    expect(app.requestsTo('/form?a=1')).toHaveLength(1)
  })

  it('carries no Transfer-Encoding for a chunked request body', async () => {
    const reply = await raw(
      nginx.port,
      'POST /chunked HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n' +
        'Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    )
    expect(reply.status).toBe(200)
    const auth = recorder.seen.find((s) => s.headers['x-hostguard-path'] === '/chunked')
    expect(auth?.headers).not.toHaveProperty('transfer-encoding')
    expect(auth?.headers).not.toHaveProperty('content-length')
    expect(app.requestsTo('/chunked')).toHaveLength(1)
  })

  it('carries no x-hostguard-authority for a request without Host, not even the client one', async () => {
    const reply = await raw(
      nginx.port,
      'GET /no-host HTTP/1.0\r\nX-Hostguard-Authority: www.example.com\r\n\r\n',
    )
    expect(reply.status).toBe(200)
    const auth = recorder.seen.find((s) => s.headers['x-hostguard-path'] === '/no-host')
    expect(auth?.headers['x-hostguard-peer']).toBe('127.0.0.1')
    expect(auth?.headers).not.toHaveProperty('x-hostguard-authority')
  })
})

describe.skipIf(NGINX === undefined)('when hostguard is down', () => {
  it('nginx answers 500 and the app gets nothing (fail closed)', async () => {
    const app = await startUpstream()
    const nginx = await startNginx({ authzPort: await freePort(), appPort: app.port })
    try {
      const reply = await http1(nginx.port, { host: 'www.example.com', path: '/down' })
      expect(reply.status).toBe(500)
      expect(app.seen).toEqual([])
      expect(nginx.errorLog()).toContain('auth request unexpected status: 502')
    } finally {
      await nginx.stop()
      await app.close()
    }
  })
})

describe.skipIf(NGINX === undefined)("the app's own 403", () => {
  it('reaches the client unchanged, not as the deny page', async () => {
    const app = createServer((_, res) => res.writeHead(403).end('app says no'))
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
    const hostguard = await startServer(POLICY, {
      authzPort: 0,
      env: { HEALTH_CHECK_HEADER_VALUE: SECRET },
    })
    const appPort = (app.address() as { port: number }).port
    const nginx = await startNginx({ authzPort: hostguard.authzPort ?? 0, appPort })
    try {
      const reply = await http1(nginx.port, { host: 'www.example.com', path: '/' })
      expect(reply.status).toBe(403)
      expect(reply.body).toBe('app says no')
    } finally {
      await nginx.stop()
      await hostguard.stop()
      app.closeAllConnections()
      await new Promise((resolve) => app.close(resolve))
    }
  })
})
