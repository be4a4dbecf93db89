// Traefik's dialect, from Traefik's source rather than a running Traefik (none is installed):
// each request is built as Traefik v3 builds it (commit fd5a576df2, docs/proxies/traefik.md) —
// the entryPoint's forwardedHeaders stage (pkg/middlewares/forwardedheaders), then forwardAuth's
// request to hostguard (pkg/middlewares/auth/forward.go) in each of its three modes — and sent
// over HTTP to a real `--authz-port`. The shipped proxies/traefik files are parsed, so what the
// requests rely on (address, mode, headers kept and stripped) cannot drift from them.

import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse, parseAllDocuments } from 'yaml'
import { CLIENT_HEADER } from '../../src/http-authz/answer.js'
import { FORWARDING_HEADERS } from '../../src/policy/schema.js'
import type { Running } from '../../src/serve.js'
import { ROOT } from '../support/protos.js'
import { startServer } from '../support/server.js'

const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')
const EXAMPLE_POLICY = parse(readFileSync(EXAMPLE, 'utf8'))
const SECRET = 'secret' // the example's default; startServer gives hostguard an empty environment
const DIR = join(ROOT, 'proxies', 'traefik')

// biome-ignore lint/suspicious/noExplicitAny: Traefik configuration as YAML gives it
type Obj = any
const FILE = parse(readFileSync(join(DIR, 'dynamic.yml'), 'utf8')).http
const CRDS: Obj[] = parseAllDocuments(readFileSync(join(DIR, 'middleware.yaml'), 'utf8')).map((d) =>
  d.toJS(),
)
const AUTH = FILE.middlewares['hostguard-auth'].forwardAuth
const STRIP: Record<string, string> =
  FILE.middlewares['hostguard-strip'].headers.customRequestHeaders
const ANSWER: Record<string, string> =
  FILE.middlewares['hostguard-answer'].headers.customResponseHeaders

/** How forwardAuth copies the forwarding headers: trustForwardHeader unset, false or true. */
type Mode = 'unset' | boolean
const SHIPPED: Mode = AUTH.trustForwardHeader ?? 'unset'
const MODES: Mode[] = ['unset', false, true]

// --- Go's http.Header, as far as these stages use it ------------------------------------------

/** Header name → values (one per header line), keyed by Go's canonical form. */
type GoHeader = Map<string, string[]>

/** Go's CanonicalMIMEHeaderKey for token names: upper-case after start and '-', rest lower. */
function canonical(name: string): string {
  return name.toLowerCase().replace(/(^|-)([a-z])/g, (_, dash, c) => dash + c.toUpperCase())
}

function goHeader(lines: readonly (readonly [string, string])[]): GoHeader {
  const h: GoHeader = new Map()
  for (const [name, value] of lines) {
    const key = canonical(name)
    h.set(key, [...(h.get(key) ?? []), value])
  }
  return h
}

/** The X-headers Traefik manages (forwardedheaders' XHeadersSet), '_' read as '-'. */
const MANAGED = new Set(
  [
    'X-Forwarded-Proto',
    'X-Forwarded-Scheme',
    'X-Forwarded-For',
    'X-Forwarded-Host',
    'X-Forwarded-Port',
    'X-Forwarded-Server',
    'X-Forwarded-Uri',
    'X-Forwarded-Method',
    'X-Forwarded-Prefix',
    'X-Forwarded-Tls-Client-Cert',
    'X-Forwarded-Tls-Client-Cert-Info',
    'X-Scheme',
    'X-Real-Ip',
  ].map((n) => n.toLowerCase()),
)

function deleteManaged(h: GoHeader): void {
  for (const key of [...h.keys()]) {
    if (MANAGED.has(key.toLowerCase().replaceAll('_', '-'))) h.delete(key)
  }
}

const first = (h: GoHeader, key: string) => h.get(key)?.[0] ?? ''

// --- Traefik's stages ------------------------------------------------------------------------

/** What reaches Traefik: the TCP peer, the Host, the request-target, the other header lines. */
interface Incoming {
  readonly peer: string
  readonly host: string
  readonly uri: string
  readonly headers?: readonly (readonly [string, string])[]
}

/** The entryPoint's `forwardedHeaders` (static configuration). */
interface EntryPoint {
  /** Single addresses here (Traefik also takes CIDRs). */
  readonly trustedIPs?: readonly string[]
  readonly insecure?: boolean
}

/**
 * forwardedheaders.XForwarded.ServeHTTP: a peer that is neither trusted nor let through by
 * `insecure` loses every managed X-header; then X-Real-Ip, -Proto, -Port and -Host are set when
 * absent (Host from the request), X-Forwarded-For lines fold into one, -Server is Traefik's host.
 */
function entryPoint(req: Incoming, ep: EntryPoint): GoHeader {
  const h = goHeader(req.headers ?? [])
  if (!ep.insecure && !(ep.trustedIPs ?? []).includes(req.peer)) deleteManaged(h)
  if (first(h, 'X-Real-Ip') === '') h.set('X-Real-Ip', [req.peer])
  if (first(h, 'X-Forwarded-Proto') === '') h.set('X-Forwarded-Proto', ['http'])
  if (first(h, 'X-Forwarded-Port') === '') h.set('X-Forwarded-Port', [hostPort(req.host) ?? '80'])
  if (first(h, 'X-Forwarded-Host') === '' && req.host !== '') h.set('X-Forwarded-Host', [req.host])
  const xff = h.get('X-Forwarded-For')
  if (xff !== undefined && xff.length > 0) h.set('X-Forwarded-For', [xff.join(', ')])
  h.set('X-Forwarded-Server', ['traefik-host'])
  return h
}

function hostPort(host: string): string | undefined {
  const m = /^(?:\[[^\]]*\]|[^:]*):(\d+)$/.exec(host)
  return m?.[1]
}

/**
 * forwardAuth's request to the auth server (forward.go): every header of the request, then
 * - unset (oldWriteHeader): X-Forwarded-For = the peer, -Proto, -Method, -Host = the request's
 *   Host, -Uri = its request-target, each overwritten;
 * - false (writeHeader): the managed X-headers removed, then the same set as for `true`;
 * - true (writeHeader): the peer appended to X-Forwarded-For (lines folded), -Method, -Proto,
 *   -Port, -Host and -Uri set only when the request has none.
 */
function forwardAuth(req: Incoming, afterEntryPoint: GoHeader, mode: Mode): GoHeader {
  const h: GoHeader = new Map([...afterEntryPoint].map(([k, v]) => [k, [...v]]))
  if (mode === 'unset') {
    h.set('X-Forwarded-For', [req.peer])
    h.set('X-Forwarded-Proto', ['http'])
    h.set('X-Forwarded-Method', ['GET'])
    h.set('X-Forwarded-Host', [req.host])
    h.set('X-Forwarded-Uri', [req.uri])
    return h
  }
  if (!mode) deleteManaged(h)
  const prior = h.get('X-Forwarded-For')
  h.set('X-Forwarded-For', [prior === undefined ? req.peer : `${prior.join(', ')}, ${req.peer}`])
  const setAbsent = (key: string, value: string) => {
    if (!h.has(key)) h.set(key, [value])
  }
  setAbsent('X-Forwarded-Method', 'GET')
  setAbsent('X-Forwarded-Proto', 'http')
  setAbsent('X-Forwarded-Port', hostPort(req.host) ?? '80')
  setAbsent('X-Forwarded-Host', req.host)
  setAbsent('X-Forwarded-Uri', req.uri)
  return h
}

// --- hostguard ---------------------------------------------------------------------------------

interface Answer {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: string
}

let running: Running

/** Sends `h` as Go's client would (one line per value) to the shipped address's path on `site`. */
function send(h: GoHeader, site = 'default'): Promise<Answer> {
  const path = new URL(AUTH.address).pathname.replace(/\/default$/, `/${site}`)
  const headers: Record<string, string[]> = {}
  for (const [k, v] of h) headers[k] = v
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: running.authzPort, path, method: 'GET', headers },
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
    req.end()
  })
}

/** A client's request through the entryPoint and forwardAuth in `mode`, to hostguard. */
function viaTraefik(
  req: Incoming,
  { mode = SHIPPED, ep = {}, site }: { mode?: Mode; ep?: EntryPoint; site?: string } = {},
): Promise<Answer> {
  return send(forwardAuth(req, entryPoint(req, ep), mode), site)
}

async function decisions(labels: string): Promise<number> {
  const text = await running.metrics.registry.metrics()
  const line = text
    .split('\n')
    .find((l) => l.startsWith('hostguard_decisions_total{') && l.includes(labels))
  return Number(line?.split(' ').pop() ?? 0)
}

const STRANGER = '203.0.113.66'
const CLIENT = '203.0.113.7'
/** A load balancer in front of Traefik: in the example policy's trustedProxies (10.1.0.0/16). */
const LB = '10.1.0.5'

beforeAll(async () => {
  running = await startServer(EXAMPLE, { authzPort: 0 })
})
afterAll(() => running.stop())

describe('the shipped Traefik configuration', () => {
  it('asks hostguard in the traefik dialect with trustForwardHeader: false', () => {
    expect(new URL(AUTH.address).pathname).toBe('/traefik/default')
    expect(AUTH.trustForwardHeader).toBe(false)
    expect(AUTH.maxResponseBodySize).toBeGreaterThan(0)
  })

  it("hands the app hostguard's client address, and only that", () => {
    expect(AUTH.authResponseHeaders.map((n: string) => n.toLowerCase())).toEqual([CLIENT_HEADER])
  })

  it('strips every untrusted forwarding header and the health-check secret before the app', () => {
    const stripped = Object.entries(STRIP)
      .filter(([, v]) => v === '')
      .map(([k]) => k.toLowerCase())
    expect(stripped.sort()).toEqual(
      [...FORWARDING_HEADERS, EXAMPLE_POLICY.healthCheck.header].sort(),
    )
  })

  it('runs the answer filter first, the auth request next and the strip last', () => {
    expect(FILE.middlewares.hostguard.chain.middlewares).toEqual([
      'hostguard-answer',
      'hostguard-auth',
      'hostguard-strip',
    ])
    expect(FILE.routers.app.middlewares).toEqual(['hostguard'])
  })

  it('ships the same middlewares as Kubernetes CRDs (traefik.io/v1alpha1)', () => {
    const byName = new Map(CRDS.map((o) => [o.metadata.name, o]))
    expect(
      CRDS.every((o) => o.apiVersion === 'traefik.io/v1alpha1' && o.kind === 'Middleware'),
    ).toBe(true)
    expect([...byName.keys()].sort()).toEqual(Object.keys(FILE.middlewares).sort())
    expect(byName.get('hostguard').spec.chain.middlewares.map((m: Obj) => m.name)).toEqual(
      FILE.middlewares.hostguard.chain.middlewares,
    )
    for (const name of ['hostguard-answer', 'hostguard-strip']) {
      expect(byName.get(name).spec).toEqual(FILE.middlewares[name])
    }
    const { address, ...rest } = byName.get('hostguard-auth').spec.forwardAuth
    const { address: fileAddress, ...fileRest } = AUTH
    expect(rest).toEqual(fileRest)
    expect(new URL(address).pathname).toBe(new URL(fileAddress).pathname)
    expect(new URL(address).port).toBe('9002')
  })
})

describe.each(MODES)('forwardAuth with trustForwardHeader %s', (mode) => {
  const opts = { mode }

  it('allows a listed Host and names the client', async () => {
    const a = await viaTraefik({ peer: CLIENT, host: 'www.example.com', uri: '/cart?id=1' }, opts)
    expect(a.status).toBe(200)
    expect(a.headers['x-hostguard-reason']).toBe('host_allowed')
    expect(a.headers[CLIENT_HEADER]).toBe(CLIENT)
  })

  it("denies another Host with the site's status and a short body", async () => {
    const a = await viaTraefik({ peer: CLIENT, host: 'evil.example', uri: '/' }, opts)
    expect(a.status).toBe(403)
    expect(a.body).toBe('Forbidden\n')
    expect(a.headers['x-hostguard-reason']).toBe('host_not_allowed')
    const blog = await viaTraefik(
      { peer: CLIENT, host: 'www.example.com', uri: '/' },
      { mode, site: 'blog' },
    )
    expect(blog.headers['x-hostguard-reason']).toBe('host_not_allowed')
  })

  it('answers a Host of invalid syntax 400', async () => {
    // Go's server lets these bytes through (httpguts.ValidHostHeader); hostguard refuses them.
    for (const host of ['www.example.com:8x', 'www.example.com,evil.example']) {
      const a = await viaTraefik({ peer: CLIENT, host, uri: '/' }, opts)
      expect(a.status, host).toBe(400)
      expect(a.headers['x-hostguard-reason'], host).toBe('invalid_host')
    }
  })

  it('allows the health-check secret on its path only', async () => {
    const probe = (uri: string) =>
      viaTraefik({ peer: '10.0.3.4', host: '10.9.0.1', uri, headers: [['X-Health', SECRET]] }, opts)
    const a = await probe('/health-check/?full=1')
    expect(a.status).toBe(200)
    expect(a.headers['x-hostguard-reason']).toBe('health_check')
    expect((await probe('/admin')).headers['x-hostguard-reason']).toBe('host_not_allowed')
  })

  it('answers a deny as an allow in dry run', async () => {
    const a = await viaTraefik(
      { peer: CLIENT, host: 'evil.example', uri: '/' },
      { mode, site: 'internal-api' },
    )
    expect(a.status).toBe(200)
    expect(a.headers['x-hostguard-decision']).toBe('deny')
    expect(a.headers['x-hostguard-mode']).toBe('dry_run')
  })

  it('keeps a stranger from choosing the Host, the path or the client (the entryPoint strips)', async () => {
    const spoof = {
      peer: STRANGER,
      host: 'evil.example',
      uri: '/',
      headers: [
        ['X-Forwarded-Host', 'www.example.com'],
        ['X-Forwarded-Uri', '/health-check/'],
        ['X-Forwarded-For', '10.0.0.1'],
      ] as const,
    }
    const a = await viaTraefik(spoof, { mode, ep: { trustedIPs: [LB] } })
    expect(a.status).toBe(403)
    expect(a.headers['x-hostguard-reason']).toBe('host_not_allowed')
    expect(a.headers[CLIENT_HEADER]).toBe(STRANGER)
    const admin = await viaTraefik(
      { ...spoof, host: 'www.example.com' },
      { mode, ep: { trustedIPs: [LB] }, site: 'admin' },
    )
    expect(admin.headers['x-hostguard-reason']).toBe('client_not_allowed')
  })

  it('decides on the peer even when it sends hostguard-looking headers', async () => {
    const a = await viaTraefik(
      {
        peer: STRANGER,
        host: 'www.example.com',
        uri: '/',
        headers: [
          ['X-Hostguard-Peer', '10.0.0.1'],
          ['X-Hostguard-Client', '10.0.0.1'],
        ],
      },
      { mode, site: 'admin' },
    )
    expect(a.headers['x-hostguard-reason']).toBe('client_not_allowed')
    expect(a.headers[CLIENT_HEADER]).toBe(STRANGER)
  })
})

describe('the difference trustForwardHeader makes', () => {
  const SPOOF = {
    peer: STRANGER,
    host: 'evil.example',
    uri: '/',
    headers: [['X-Forwarded-Host', 'www.example.com']] as const,
  }

  it('false and unset overwrite X-Forwarded-Host even from an insecure entryPoint', async () => {
    for (const mode of [false, 'unset'] as const) {
      const a = await viaTraefik(SPOOF, { mode, ep: { insecure: true } })
      expect(a.headers['x-hostguard-reason'], String(mode)).toBe('host_not_allowed')
    }
  })

  it('true with an insecure entryPoint lets a client pick the Host hostguard checks', async () => {
    // Why the shipped file says false, and true needs an entryPoint that is never insecure.
    const a = await viaTraefik(SPOOF, { mode: true, ep: { insecure: true } })
    expect(a.status).toBe(200)
    expect(a.headers['x-hostguard-reason']).toBe('host_allowed')
  })

  it('true with a trusted load balancer that passes the header on: the same hole', async () => {
    // trustedIPs may list only proxies that overwrite X-Forwarded-Host and X-Forwarded-Uri.
    const a = await viaTraefik({ ...SPOOF, peer: LB }, { mode: true, ep: { trustedIPs: [LB] } })
    expect(a.headers['x-hostguard-reason']).toBe('host_allowed')
  })

  it('only true carries a trusted chain: the client behind the load balancer', async () => {
    const fromLb = {
      peer: LB,
      host: 'www.example.com',
      uri: '/',
      headers: [['X-Forwarded-For', CLIENT]] as const,
    }
    const ep = { trustedIPs: [LB] }
    const trusted = await viaTraefik(fromLb, { mode: true, ep })
    expect(trusted.status).toBe(200)
    expect(trusted.headers[CLIENT_HEADER]).toBe(CLIENT)
    for (const mode of [false, 'unset'] as const) {
      const a = await viaTraefik(fromLb, { mode, ep })
      expect(a.headers[CLIENT_HEADER], String(mode)).toBe(LB)
    }
  })

  it('true: two X-Forwarded-Host lines from a trusted peer are a misconfiguration (400)', async () => {
    const a = await viaTraefik(
      {
        peer: LB,
        host: 'www.example.com',
        uri: '/',
        headers: [
          ['X-Forwarded-Host', 'www.example.com'],
          ['X-Forwarded-Host', 'evil.example'],
        ],
      },
      { mode: true, ep: { trustedIPs: [LB] } },
    )
    expect(a.status).toBe(400)
    expect(a.headers['x-hostguard-reason']).toBe('invalid_request')
  })
})

describe('what reaches the client on a deny', () => {
  it("the answer filter drops every x-hostguard-* header of hostguard's deny", async () => {
    const a = await viaTraefik({ peer: CLIENT, host: 'evil.example', uri: '/' })
    const sent = Object.keys(a.headers).filter((n) => n.startsWith('x-hostguard-'))
    expect(sent.length).toBeGreaterThan(0)
    const dropped = Object.entries(ANSWER)
      .filter(([, v]) => v === '')
      .map(([k]) => k.toLowerCase())
    expect(dropped).toEqual(expect.arrayContaining(sent))
    expect(Buffer.byteLength(a.body)).toBeLessThanOrEqual(AUTH.maxResponseBodySize)
  })
})

describe('metrics', () => {
  it('counts each decision with api="http"', async () => {
    const labels = 'reason="host_not_allowed",mode="enforce",api="http"'
    const series = `site="default",decision="deny",${labels}`
    const before = await decisions(series)
    await viaTraefik({ peer: CLIENT, host: 'evil.example', uri: '/' })
    expect(await decisions(series)).toBe(before + 1)
  })
})
