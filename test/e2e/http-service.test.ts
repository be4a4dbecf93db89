// Through a real Envoy running envoy/http-service.yaml as shipped (addresses filled in by
// envoy:render): ext_authz over plain HTTP to hostguard's --authz-port (the envoy dialect), on
// test/e2e/http-service.policy.yaml, with an app that records what reaches it. What Envoy 1.40
// was seen to send and do is written down in docs/proxies/envoy-http-service.md.

import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import { type EnvoyProcess, skipWithoutEnvoy, startEnvoy } from '../support/envoy.js'
import { ENVOY } from '../support/envoy-bin.js'
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

const FILE = 'http-service.yaml'
const POLICY = join(ROOT, 'test', 'e2e', 'http-service.policy.yaml')
const SECRET = 'e2e-health-secret'

/** An HTTP server on 127.0.0.1 answering `status` and `headers`, and 200 to /readyz. */
async function answering(status: number, headers: Record<string, string>): Promise<Server> {
  const server = createServer((req, res) =>
    req.url === '/readyz' ? res.end() : res.writeHead(status, headers).end(),
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return server
}

skipWithoutEnvoy('the end-to-end tests through envoy/http-service.yaml')

describe.skipIf(ENVOY === undefined)('through Envoy on envoy/http-service.yaml', () => {
  let hostguard: Running
  let upstream: Upstream
  let envoy: EnvoyProcess
  let n = 0
  /** A path no other request of the run used, to find its access log line and upstream record. */
  const unique = (path: string) => `${path}${path.includes('?') ? '&' : '?'}n=${++n}`
  const get = (options: RequestOptions) => http1(envoy.port('edge'), options)
  const seenBy = (path: string) => {
    const [seen] = upstream.requestsTo(path)
    if (!seen) throw new Error(`${path} did not reach the app`)
    return seen.headers
  }
  /** hostguard_decisions_total over the series whose labels contain every one of `labels`. */
  const decisions = async (...labels: string[]) => {
    const text = await (await fetch(`http://127.0.0.1:${hostguard.httpPort}/metrics`)).text()
    let sum = 0
    for (const m of text.matchAll(/^hostguard_decisions_total\{([^}]*)\} (\d+)$/gm))
      if (labels.every((l) => m[1]?.includes(l))) sum += Number(m[2])
    return sum
  }

  beforeAll(async () => {
    hostguard = await startServer(POLICY, {
      authzPort: 0,
      env: { HEALTH_CHECK_HEADER_VALUE: SECRET },
    })
    upstream = await startUpstream()
    envoy = await startEnvoy(FILE, {
      hostguard: [
        {
          address: '127.0.0.1',
          port: hostguard.authzPort ?? 0,
          healthCheckPort: hostguard.httpPort,
        },
      ],
      app: [{ address: '127.0.0.1', port: upstream.port }],
    })
  })

  afterAll(async () => {
    await envoy?.stop()
    await Promise.all([hostguard?.stop(), upstream?.close()])
  })

  it('health-checks hostguard on /readyz of its HTTP port, and finds it ready', async () => {
    await until(
      10_000,
      async () =>
        ((await envoy.stats(/^cluster\.hostguard\.health_check\.success$/)).get(
          'cluster.hostguard.health_check.success',
        ) ?? 0) > 0,
      'a successful health check',
    )
    expect(await envoy.hosts('hostguard')).toMatchObject([{ failedActiveHealthCheck: false }])
  })

  describe('allow and deny as the client sees them', () => {
    it('allows an allowed host: the app answers, with x-real-ip the client', async () => {
      const path = unique('/a/b')
      const reply = await get({ host: 'www.example.com', path })
      expect(reply.status).toBe(200)
      expect(reply.body).toBe(`app ${path}`)
      expect(seenBy(path)['x-real-ip']).toBe('127.0.0.1')
      // hostguard's answer headers stay between Envoy and hostguard on an allow.
      expect(reply.headers['x-hostguard-decision']).toBeUndefined()
      expect(await envoy.logOf(path)).toMatchObject({
        status: 200,
        decision: 'allow',
        reason: 'host_allowed',
        site: 'default',
        mode: 'enforce',
        client: '127.0.0.1',
      })
    })

    it("denies another host with hostguard's 403, body and x-hostguard-* headers; the app sees nothing", async () => {
      const path = unique('/')
      const reply = await get({ host: 'evil.example.net', path })
      expect(reply.status).toBe(403)
      expect(reply.body).toBe('Forbidden\n')
      expect(reply.headers).toMatchObject({
        'content-type': 'text/plain; charset=utf-8',
        'x-hostguard-decision': 'deny',
        'x-hostguard-reason': 'host_not_allowed',
        'x-hostguard-site': 'default',
        'x-hostguard-mode': 'enforce',
        'x-hostguard-client': '127.0.0.1',
      })
      expect(upstream.requestsTo(path)).toEqual([])
      expect(await envoy.logOf(path)).toMatchObject({
        status: 403,
        flags: 'UAEX',
        decision: 'deny',
        reason: 'host_not_allowed',
      })
    })

    it.each(['a_b.example.com', 'www.example.com:http', 'www.example.com:80:80', '[::1'])(
      'answers Host %s with 400 from hostguard (invalid_host)',
      async (host) => {
        const path = unique('/')
        const reply = await get({ host, path })
        expect(reply.status).toBe(400)
        expect(reply.headers['x-hostguard-reason']).toBe('invalid_host')
        expect(upstream.requestsTo(path)).toEqual([])
      },
    )

    it('counts its decisions as api="http" in hostguard_decisions_total', async () => {
      const allows = await decisions('api="http"', 'decision="allow"', 'reason="host_allowed"')
      const denies = await decisions('api="http"', 'decision="deny"', 'reason="host_not_allowed"')
      expect((await get({ host: 'www.example.com', path: unique('/count') })).status).toBe(200)
      expect((await get({ host: 'evil.example.net', path: unique('/count') })).status).toBe(403)
      expect(await decisions('api="http"', 'decision="allow"', 'reason="host_allowed"')).toBe(
        allows + 1,
      )
      expect(await decisions('api="http"', 'decision="deny"', 'reason="host_not_allowed"')).toBe(
        denies + 1,
      )
      expect(await decisions('api="grpc"')).toBe(0)
    })
  })

  describe('the site named per route and per virtual host (the per-route http_service)', () => {
    it.each(['/admin/', '/Admin/', '/%61dmin/', '//admin/', '/x/../admin/'])(
      '%s from a stranger: denied by the admin site',
      async (spelling) => {
        const path = unique(spelling)
        const reply = await get({ host: 'www.example.com', path })
        expect(reply.status).toBe(403)
        expect(reply.headers).toMatchObject({
          'x-hostguard-site': 'admin',
          'x-hostguard-reason': 'client_not_allowed',
        })
      },
    )

    it('/admin/ from the admins: allowed by the admin site', async () => {
      const path = unique('/admin/')
      const reply = await get({ host: 'www.example.com', path, from: '127.0.0.2' })
      expect(reply.status).toBe(200)
      expect(upstream.requestsTo(path)).toHaveLength(1)
      expect(await envoy.logOf(path)).toMatchObject({ site: 'admin', decision: 'allow' })
    })

    it('names site blog per virtual host, whose dry run answers a deny as an allow', async () => {
      const allowed = unique('/')
      expect((await get({ host: 'blog.example.com:8080', path: allowed })).status).toBe(200)
      expect(await envoy.logOf(allowed)).toMatchObject({ site: 'blog', decision: 'allow' })
      const denied = unique('/')
      const reply = await get({ host: 'blog.example.com', path: denied, from: '127.0.0.4' })
      expect(reply.status).toBe(200)
      expect(upstream.requestsTo(denied)).toHaveLength(1)
      expect(await envoy.logOf(denied)).toMatchObject({
        status: 200,
        decision: 'deny',
        reason: 'client_denied',
        site: 'blog',
        mode: 'dry_run',
      })
    })
  })

  describe('forwarding headers', () => {
    it('from a stranger: none reaches the app, and x-real-ip is the peer', async () => {
      const path = unique('/spoof')
      const reply = await get({ host: 'www.example.com', path, headers: SPOOFED_FORWARDING })
      expect(reply.status).toBe(200)
      const headers = seenBy(path)
      // x-forwarded-for and x-forwarded-host reach Envoy's router (Envoy appended the peer to
      // the first): hostguard's x-envoy-auth-headers-to-remove is what keeps them from the app.
      for (const name of Object.keys(SPOOFED_FORWARDING).filter((k) => k !== 'x-real-ip'))
        expect(headers[name], name).toBeUndefined()
      expect(headers['x-real-ip']).toBe('127.0.0.1')
    })

    it('from the trusted load balancer: the client it names arrives as x-real-ip', async () => {
      const path = unique('/via-lb')
      const reply = await get({
        host: 'internal-hop.local',
        path,
        from: '127.0.0.3',
        headers: {
          'x-forwarded-for': '203.0.113.7',
          'x-forwarded-host': 'www.example.com',
          forwarded: 'for=10.9.9.9',
          'true-client-ip': '10.9.9.9',
          'x-real-ip': '10.9.9.9',
        },
      })
      expect(reply.status).toBe(200)
      const headers = seenBy(path)
      expect(headers['x-real-ip']).toBe('203.0.113.7')
      // Trusted from this peer, so left for the app: Envoy appended the peer it saw.
      expect(headers['x-forwarded-for']).toBe('203.0.113.7,127.0.0.3')
      expect(headers['x-forwarded-host']).toBe('www.example.com')
      expect(headers.forwarded).toBeUndefined()
      expect(headers['true-client-ip']).toBeUndefined()
      expect(await envoy.logOf(path)).toMatchObject({ client: '203.0.113.7' })
    })

    it("checks the trusted load balancer's x-forwarded-host, not the internal hop's Host", async () => {
      const path = unique('/via-lb')
      const reply = await get({
        host: 'www.example.com',
        path,
        from: '127.0.0.3',
        headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-host': 'evil.example.net' },
      })
      expect(reply.status).toBe(403)
      expect(upstream.requestsTo(path)).toEqual([])
    })

    it('removes x-real-ip when the client is unknown, whatever the client sent', async () => {
      const path = unique('/unknown-client')
      const reply = await get({
        host: 'www.example.com',
        path,
        from: '127.0.0.3',
        headers: { 'x-forwarded-for': 'unknown', 'x-real-ip': '10.9.9.9' },
      })
      expect(reply.status).toBe(200)
      expect(seenBy(path)['x-real-ip']).toBeUndefined()
      expect(await envoy.logOf(path)).toMatchObject({ decision: 'allow', client: '-' })
    })
  })

  describe("hostguard's own headers, sent by a client", () => {
    it('x-hostguard-peer (twice) naming the trusted load balancer: the stranger is still a stranger', async () => {
      const path = unique('/peer')
      const reply = await get({
        host: 'www.example.com',
        path,
        headers: { 'x-hostguard-peer': ['127.0.0.3', '127.0.0.3'], 'x-forwarded-for': '127.0.0.2' },
      })
      expect(reply.status).toBe(200)
      expect(seenBy(path)['x-real-ip']).toBe('127.0.0.1')
      expect(await envoy.logOf(path)).toMatchObject({ client: '127.0.0.1' })
    })

    it('x-hostguard-peer naming the admins: the admin site still refuses the stranger', async () => {
      const path = unique('/admin/')
      const reply = await get({
        host: 'www.example.com',
        path,
        headers: { 'x-hostguard-peer': '127.0.0.2' },
      })
      expect(reply.status).toBe(403)
      expect(reply.headers['x-hostguard-client']).toBe('127.0.0.1')
    })

    it('x-hostguard-authority naming an allowed host does not get an evil Host allowed', async () => {
      const path = unique('/authority')
      const reply = await get({
        host: 'evil.example.net',
        path,
        headers: { 'x-hostguard-authority': 'www.example.com' },
      })
      expect(reply.status).toBe(403)
      expect(upstream.requestsTo(path)).toEqual([])
    })
  })

  describe('the health-check secret', () => {
    const probe = { host: '192.168.7.7:8080', path: '/health-check/' }

    it('lets a probe with the secret through, whatever its Host; the app never sees it', async () => {
      const path = unique(probe.path)
      const reply = await get({ ...probe, path, headers: { 'x-health': SECRET } })
      expect(reply.status).toBe(200)
      expect(await envoy.logOf(path)).toMatchObject({ reason: 'health_check' })
      expect(seenBy(path)['x-health']).toBeUndefined()
    })

    it.each([
      ['a wrong secret', { 'x-health': `${SECRET}x` }, probe.path],
      ['no secret', {}, probe.path],
      ['the secret on another path', { 'x-health': SECRET }, '/other/'],
    ])('denies %s', async (_, headers, target) => {
      const path = unique(target)
      const reply = await get({ host: probe.host, path, headers })
      expect(reply.status).toBe(403)
      expect(upstream.requestsTo(path)).toEqual([])
    })
  })
})

describe.skipIf(ENVOY === undefined)(
  'through envoy/http-service.yaml when hostguard cannot answer',
  () => {
    const servers: Server[] = []
    const envoys: EnvoyProcess[] = []
    let upstream: Upstream

    beforeAll(async () => {
      upstream = await startUpstream()
    })

    afterAll(async () => {
      await Promise.all(envoys.map((e) => e.stop()))
      for (const s of servers) s.close()
      await upstream?.close()
    })

    const envoyTo = async (port: number, healthCheckPort = port) => {
      const envoy = await startEnvoy(FILE, {
        hostguard: [{ address: '127.0.0.1', port, healthCheckPort }],
        app: [{ address: '127.0.0.1', port: upstream.port }],
      })
      envoys.push(envoy)
      return envoy
    }

    it('answers 503 with an empty body when nothing listens on the authorization port', async () => {
      const envoy = await envoyTo(await freePort())
      const reply = await http1(envoy.port('edge'), { host: 'www.example.com', path: '/down' })
      expect(reply.status).toBe(503)
      expect(reply.body).toBe('')
      expect(upstream.requestsTo('/down')).toEqual([])
      expect(await envoy.logOf('/down')).toMatchObject({
        status: 503,
        flags: 'UAEX',
        decision: '-',
      })
    })

    it('takes a draining hostguard out on its /readyz, while it still answers', async () => {
      const draining = await startServer(POLICY, {
        authzPort: 0,
        env: { HEALTH_CHECK_HEADER_VALUE: SECRET },
      })
      const authz = `http://127.0.0.1:${draining.authzPort}/envoy/default/`
      const envoy = await envoyTo(draining.authzPort ?? 0, draining.httpPort)
      expect(await envoy.hosts('hostguard')).toMatchObject([{ failedActiveHealthCheck: false }])
      const stopped = draining.shutdown(20_000)
      // Calls keep coming during the drain (here straight to the authorization port: a request
      // without x-hostguard-peer is 400), so hostguard keeps answering while /readyz is 503.
      let answered = 0
      await until(
        15_000,
        async () => {
          answered = (await fetch(authz)).status
          return (await envoy.hosts('hostguard'))[0]?.failedActiveHealthCheck === true
        },
        'Envoy taking the draining hostguard out',
      )
      expect(answered).toBe(400)
      await draining.stop()
      await stopped
    })

    it.each([204, 201])(
      'lets through only a 200: an answer of %i saying allow reaches the client, not the app',
      async (status) => {
        const server = await answering(status, { 'x-hostguard-decision': 'allow' })
        servers.push(server)
        const envoy = await envoyTo((server.address() as AddressInfo).port)
        const path = `/not-200-${status}`
        const reply = await http1(envoy.port('edge'), { host: 'www.example.com', path })
        expect(reply.status).toBe(status)
        expect(upstream.requestsTo(path)).toEqual([])
      },
    )
  },
)
