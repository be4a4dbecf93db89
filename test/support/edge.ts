// What the end-to-end tests through envoy/edge.yaml share: its policy, requests that each carry
// a path no other request of the file used, and the allow-and-deny scenarios every edge stack
// must pass (edge.test.ts on the shipped file, grpc-clients.test.ts per gRPC client and
// transport).

import type { ClientHttp2Session } from 'node:http2'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { ROOT } from './protos.js'
import type { Stack } from './stack.js'
import { http1, http2, type Reply, type RequestOptions } from './upstream.js'

export const EDGE_POLICY = join(ROOT, 'test', 'e2e', 'edge.policy.yaml')
/** The edge policy's healthCheck.value, given to hostguard as HEALTH_CHECK_HEADER_VALUE. */
export const EDGE_HEALTH_SECRET = 'e2e-health-secret'

export interface EdgeRequests {
  /** A path no other request of the file used, to find its access log line and app record. */
  unique(path: string): string
  /** One HTTP/1.1 request to the stack's Envoy. */
  get(options: RequestOptions): Promise<Reply>
  /** Matches the path (as Envoy logs it, or the app saw it) of the request sent as `sent`. */
  sameRequest(sent: string): (path: string) => boolean
  /** What reached the app of the request sent as `sent`, however Envoy respelled its path. */
  reached(sent: string): Stack['upstream']['seen']
}

/** Requests to the stack `stack()` returns (set in a beforeAll). */
export function edgeRequests(stack: () => Stack): EdgeRequests {
  let n = 0
  const sameRequest = (sent: string) => {
    const tag = sent.slice(sent.lastIndexOf('n='))
    return (path: string) => path.endsWith(`?${tag}`) || path.endsWith(`&${tag}`)
  }
  return {
    unique: (path) => `${path}${path.includes('?') ? '&' : '?'}n=${++n}`,
    get: (options) => http1(stack().port, options),
    sameRequest,
    reached: (sent) => stack().upstream.seen.filter((s) => sameRequest(sent)(s.path)),
  }
}

/**
 * The core of the edge, as the client, the app and Envoy's access log see it: an allowed host
 * reaches the app, another is denied with 403 and never does, an invalid Host is a 400. Call
 * inside a describe whose beforeAll sets what `stack` and `h2` return.
 */
export function itAllowsAndDenies(
  stack: () => Stack,
  h2: () => ClientHttp2Session,
  { unique, get }: EdgeRequests,
): void {
  it('allows an allowed host over HTTP/1.1: the app answers, with the client in x-real-ip', async () => {
    const path = unique('/')
    const reply = await get({ host: 'www.example.com', path })
    expect(reply.status).toBe(200)
    expect(reply.body).toBe(`app ${path}`)
    const seen = stack().upstream.requestsTo(path)
    expect(seen).toHaveLength(1)
    // The policy's clientIpHeader, set by hostguard's OK response.
    expect(seen[0]?.headers['x-real-ip']).toBe('127.0.0.1')
    expect(await stack().envoy.logOf(path)).toMatchObject({
      status: 200,
      decision: 'allow',
      reason: 'host_allowed',
      client: '127.0.0.1',
    })
  })

  it('allows an allowed host over HTTP/2', async () => {
    const path = unique('/h2')
    const reply = await http2(h2(), { host: 'www.example.com', path })
    expect(reply.status).toBe(200)
    expect(reply.body).toBe(`app ${path}`)
    expect(stack().upstream.requestsTo(path)).toHaveLength(1)
  })

  it.each([
    ['HTTP/1.1', (o: RequestOptions) => get(o)],
    ['HTTP/2', (o: RequestOptions) => http2(h2(), o)],
  ])(
    'denies another host with 403 and a short body over %s; the app sees nothing',
    async (_, send) => {
      const path = unique('/')
      const reply = await send({ host: 'evil.example.net', path })
      expect(reply.status).toBe(403)
      expect(reply.body).toBe('Forbidden\n')
      expect(stack().upstream.requestsTo(path)).toEqual([])
      expect(await stack().envoy.logOf(path)).toMatchObject({
        status: 403,
        decision: 'deny',
        reason: 'host_not_allowed',
      })
    },
  )

  it.each(['a_b.example.com', 'www.example.com:http', 'www.example.com:80:80', '[::1'])(
    'answers Host %s with 400 from hostguard (invalid_host)',
    async (host) => {
      const path = unique('/')
      const reply = await get({ host, path })
      expect(reply.status).toBe(400)
      expect(stack().upstream.requestsTo(path)).toEqual([])
      expect(await stack().envoy.logOf(path)).toMatchObject({
        status: 400,
        decision: 'deny',
        reason: 'invalid_host',
      })
    },
  )
}
