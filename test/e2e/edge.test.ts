// Through a real Envoy running envoy/edge.yaml as shipped (addresses filled in by envoy:render),
// with hostguard (the built command) on test/e2e/edge.policy.yaml and an app that records
// what reaches it.

import type { ClientHttp2Session } from 'node:http2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  EDGE_POLICY,
  edgeRequests,
  itAllowsAndDenies,
  EDGE_HEALTH_SECRET as SECRET,
} from '../support/edge.js'
import { skipWithoutEnvoy } from '../support/envoy.js'
import { ENVOY } from '../support/envoy-bin.js'
import { type Stack, startStack } from '../support/stack.js'
import {
  http2,
  http2Session,
  type RequestOptions,
  SPOOFED_FORWARDING,
} from '../support/upstream.js'

skipWithoutEnvoy('the end-to-end tests through envoy/edge.yaml')

describe.skipIf(ENVOY === undefined)('through Envoy on envoy/edge.yaml', () => {
  let stack: Stack
  let h2: ClientHttp2Session
  const requests = edgeRequests(() => stack)
  const { unique, get, sameRequest, reached } = requests

  beforeAll(async () => {
    stack = await startStack('edge.yaml', 'edge', EDGE_POLICY, {
      env: { HEALTH_CHECK_HEADER_VALUE: SECRET },
    })
    h2 = await http2Session(stack.port)
  })

  afterAll(async () => {
    h2?.close()
    await stack?.stop()
  })

  describe('allow and deny as the client sees them', () => {
    itAllowsAndDenies(
      () => stack,
      () => h2,
      requests,
    )
  })

  describe('forwarding headers', () => {
    const seenBy = (path: string) => {
      const [seen] = stack.upstream.requestsTo(path)
      if (!seen) throw new Error(`${path} did not reach the app`)
      return seen.headers
    }

    it.each([
      ['HTTP/1.1', (o: RequestOptions) => get(o)],
      ['HTTP/2', (o: RequestOptions) => http2(h2, o)],
    ])(
      'from a stranger over %s: none reaches the app, and x-real-ip is the peer',
      async (_, send) => {
        const path = unique('/spoof')
        const reply = await send({ host: 'www.example.com', path, headers: SPOOFED_FORWARDING })
        expect(reply.status).toBe(200)
        const headers = seenBy(path)
        for (const name of Object.keys(SPOOFED_FORWARDING).filter((k) => k !== 'x-real-ip'))
          expect(headers[name], name).toBeUndefined()
        expect(headers['x-real-ip']).toBe('127.0.0.1')
      },
    )

    it('from the trusted proxy: the trusted ones reach the app, the others do not', async () => {
      const path = unique('/via-lb')
      const reply = await get({
        host: 'internal-hop.local',
        path,
        from: '127.0.0.3',
        headers: {
          'x-forwarded-for': '203.0.113.7',
          'x-forwarded-host': 'www.example.com',
          'x-forwarded-proto': 'https',
          forwarded: 'for=10.9.9.9',
          'true-client-ip': '10.9.9.9',
          'x-real-ip': '10.9.9.9',
        },
      })
      expect(reply.status).toBe(200)
      const headers = seenBy(path)
      // Envoy appends the peer it saw (use_remote_address) before hostguard reads the chain.
      expect(headers['x-forwarded-for']).toBe('203.0.113.7,127.0.0.3')
      expect(headers['x-forwarded-host']).toBe('www.example.com')
      expect(headers['x-real-ip']).toBe('203.0.113.7')
      expect(headers.forwarded).toBeUndefined()
      expect(headers['true-client-ip']).toBeUndefined()
      expect(await stack.envoy.logOf(path)).toMatchObject({ client: '203.0.113.7' })
    })

    it("checks the trusted proxy's x-forwarded-host, not the internal hop's Host", async () => {
      const path = unique('/via-lb')
      const reply = await get({
        host: 'www.example.com',
        path,
        from: '127.0.0.3',
        headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-host': 'evil.example.net' },
      })
      expect(reply.status).toBe(403)
      expect(stack.upstream.requestsTo(path)).toEqual([])
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
      expect(await stack.envoy.logOf(path)).toMatchObject({ decision: 'allow', client: '-' })
    })
  })

  describe("Envoy's access log, from hostguard's dynamic metadata", () => {
    it.each([
      [
        'an allow',
        { host: 'www.example.com', path: '/' },
        {
          status: 200,
          decision: 'allow',
          reason: 'host_allowed',
          site: 'default',
          mode: 'enforce',
          client: '127.0.0.1',
        },
      ],
      [
        'a deny',
        { host: 'evil.example.net', path: '/' },
        {
          status: 403,
          decision: 'deny',
          reason: 'host_not_allowed',
          site: 'default',
          mode: 'enforce',
          client: '127.0.0.1',
        },
      ],
      [
        'a site',
        { host: 'www.example.com', path: '/admin/', from: '127.0.0.2' },
        {
          status: 200,
          decision: 'allow',
          reason: 'host_allowed',
          site: 'admin',
          mode: 'enforce',
          client: '127.0.0.2',
        },
      ],
      [
        'a dry-run deny, answered as an allow',
        { host: 'blog.example.com', path: '/', from: '127.0.0.4' },
        {
          status: 200,
          decision: 'deny',
          reason: 'client_denied',
          site: 'blog',
          mode: 'dry_run',
          client: '127.0.0.4',
        },
      ],
    ])('logs decision, reason, site, mode and client for %s', async (_, request, want) => {
      const path = unique(request.path)
      const reply = await get({ ...request, path })
      expect(reply.status).toBe(want.status)
      expect(await stack.envoy.logOf(path)).toMatchObject(want)
    })
  })

  describe('the site chosen per route, on one spelling of each path', () => {
    // Each spelling of /admin/ that Envoy (normalize_path, merge_slashes, case-insensitive route)
    // reads as /admin/, and the escaped slashes it redirects to their plain form.
    const SAME_AS_ADMIN = [
      '/admin/',
      '/%61dmin/',
      '/adm%69n/',
      '//admin/',
      '/./admin/',
      '/x/../admin/',
      '/%2e%2e/admin/',
      '/.%2e/admin/',
      '/admin/../../admin/',
      '/\\admin/',
      '/Admin/',
      '/ADMIN/',
    ]
    const REDIRECTED = ['/%2Fadmin/', '/%2fadmin/', '/%5Cadmin/', '/admin%2F']

    it.each(SAME_AS_ADMIN)('%s from a stranger: denied by the admin site', async (spelling) => {
      const path = unique(spelling)
      const reply = await get({ host: 'www.example.com', path })
      expect(reply.status).toBe(403)
      expect(reached(path)).toEqual([])
      expect(await stack.envoy.logOf(sameRequest(path))).toMatchObject({
        site: 'admin',
        reason: 'client_not_allowed',
      })
    })

    it.each(SAME_AS_ADMIN)('%s from the admins: reaches the app as /admin/', async (spelling) => {
      const path = unique(spelling)
      const reply = await get({ host: 'www.example.com', path, from: '127.0.0.2' })
      expect(reply.status).toBe(200)
      const [seen] = reached(path)
      expect(seen?.path.toLowerCase()).toBe(`/admin/?${path.slice(path.lastIndexOf('n='))}`)
    })

    it.each(REDIRECTED)(
      '%s: redirected to its unescaped form, never forwarded',
      async (spelling) => {
        const path = unique(spelling)
        const reply = await get({ host: 'www.example.com', path, from: '127.0.0.2' })
        expect(reply.status).toBe(307)
        expect(
          new URL(reply.headers.location ?? '', 'http://base.invalid').pathname,
          reply.headers.location,
        ).toMatch(/^\/admin/)
        expect(reached(path)).toEqual([])
      },
    )

    it('names site blog per virtual host', async () => {
      const path = unique('/')
      expect((await get({ host: 'blog.example.com', path })).status).toBe(200)
      expect(await stack.envoy.logOf(path)).toMatchObject({ site: 'blog', decision: 'allow' })
    })
  })

  describe('the health-check secret', () => {
    const probe = { host: '192.168.7.7:8080', path: '/health-check/' }

    it('lets a probe with the secret through, whatever its Host', async () => {
      const path = unique(probe.path)
      const reply = await get({ ...probe, path, headers: { 'x-health': SECRET } })
      expect(reply.status).toBe(200)
      expect(await stack.envoy.logOf(path)).toMatchObject({ reason: 'health_check' })
      // The secret stops at Envoy (route_config.request_headers_to_remove): the app never sees it.
      const [seen] = stack.upstream.requestsTo(path)
      expect(seen?.headers).toBeDefined()
      expect(seen?.headers['x-health']).toBeUndefined()
    })

    it.each([
      ['a wrong secret', { 'x-health': `${SECRET}x` }, probe.path],
      ['no secret', {}, probe.path],
      ['the secret on another path', { 'x-health': SECRET }, '/other/'],
    ])('denies %s', async (_, headers, target) => {
      const path = unique(target)
      const reply = await get({ host: probe.host, path, headers })
      expect(reply.status).toBe(403)
      expect(stack.upstream.requestsTo(path)).toEqual([])
    })

    it('lets an ELB-style check through by its node-address Host (allowedCidrNets)', async () => {
      const path = unique('/')
      expect((await get({ host: '10.0.12.34', path })).status).toBe(200)
      expect(await stack.envoy.logOf(path)).toMatchObject({ reason: 'host_cidr' })
    })
  })
})
