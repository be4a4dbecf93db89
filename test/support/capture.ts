// The CheckRequests Envoy 1.40 really sends: a capturing ext_authz server in place of hostguard
// (it records each Check's bytes and allows it), the shipped bootstraps, and one request per
// scenario. test/e2e/capture-fixtures.ts writes them to test/fixtures/envoy-v3/captured/;
// test/e2e/captured.test.ts checks that Envoy still sends the same and runs them through hostguard.

import { createServer, connect as tcpConnect } from 'node:net'
import {
  type handleUnaryCall,
  Server,
  ServerCredentials,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js'
import { HealthImplementation } from 'grpc-health-check'
import { AUTHORIZATION_SERVICE } from '../../src/server/authorization.js'
import { startEnvoy } from './envoy.js'
import { officialRoot } from './proto-json.js'
import { type Message, official } from './protos.js'
import { http1, http2, http2Session, startUpstream } from './upstream.js'
import { until } from './wait.js'

export const HEALTH_SECRET = 'e2e-health-secret'

export interface Scenario {
  /** The fixture's file name without extension. */
  readonly name: string
  readonly bootstrap: 'edge.yaml' | 'sidecar.yaml' | 'tcp.yaml'
  /** What the request is (the fixtures README's table). */
  readonly represents: string
  /** Sends the request to Envoy's listener; resolves once it was answered. */
  send(port: number): Promise<unknown>
}

/**
 * The stranger of these captures. Not 127.0.0.1: for exactly that peer Envoy appends its own
 * address (the machine's) to x-forwarded-for instead, which scenario 13 shows.
 */
export const STRANGER = '127.0.0.5'

const get =
  (host: string, path: string, extra: Omit<Parameters<typeof http1>[1], 'host' | 'path'> = {}) =>
  (port: number) =>
    http1(port, { host, path, from: STRANGER, ...extra })

export const SCENARIOS: readonly Scenario[] = [
  {
    name: '01-edge-http1-get',
    bootstrap: 'edge.yaml',
    represents: `HTTP/1.1 GET for www.example.com from ${STRANGER}, with a query`,
    send: get('www.example.com', '/products?page=2', {
      headers: { 'user-agent': 'e2e/1', accept: 'text/html' },
    }),
  },
  {
    name: '02-edge-http2-get',
    bootstrap: 'edge.yaml',
    represents: 'the same over HTTP/2 (cleartext, prior knowledge)',
    async send(port) {
      const session = await http2Session(port, STRANGER)
      try {
        return await http2(session, { host: 'www.example.com', path: '/products?page=2' })
      } finally {
        session.close()
      }
    },
  },
  {
    name: '03-edge-spoofed-forwarding',
    bootstrap: 'edge.yaml',
    represents:
      'a stranger sending x-forwarded-for, x-forwarded-host, forwarded, x-real-ip, true-client-ip and x_forwarded_for',
    send: get('www.example.com', '/', {
      headers: {
        'x-forwarded-for': '10.9.9.9',
        'x-forwarded-host': 'www.example.com',
        forwarded: 'for=10.9.9.9;host=www.example.com',
        'x-real-ip': '10.9.9.9',
        'true-client-ip': '10.9.9.9',
        x_forwarded_for: '10.9.9.9',
      },
    }),
  },
  {
    name: '04-edge-trusted-proxy',
    bootstrap: 'edge.yaml',
    represents: 'the load balancer 127.0.0.3 forwarding client 203.0.113.7 for an internal Host',
    send: get('internal-hop.local', '/', {
      from: '127.0.0.3',
      headers: {
        'x-forwarded-for': '203.0.113.7',
        'x-forwarded-host': 'www.example.com',
        'x-forwarded-proto': 'https',
      },
    }),
  },
  {
    name: '05-edge-admin-route',
    bootstrap: 'edge.yaml',
    represents: 'GET /%61dmin//./x/../settings (the admin route, once normalised)',
    send: get('www.example.com', '/%61dmin//./x/../settings?tab=1'),
  },
  {
    name: '06-edge-blog-vhost',
    bootstrap: 'edge.yaml',
    represents: 'GET for blog.example.com (the blog virtual host)',
    send: get('blog.example.com', '/'),
  },
  {
    name: '07-edge-health-check-probe',
    bootstrap: 'edge.yaml',
    represents: `a kubelet-style probe: Host 192.168.7.7:8080, /health-check/, x-health: ${HEALTH_SECRET}`,
    send: get('192.168.7.7:8080', '/health-check/', {
      headers: { 'x-health': HEALTH_SECRET, 'user-agent': 'kube-probe/1.30' },
    }),
  },
  {
    name: '08-edge-post-with-body',
    bootstrap: 'edge.yaml',
    represents: 'a form POST with a body',
    send: (port) =>
      http1(port, {
        host: 'www.example.com',
        path: '/form',
        from: STRANGER,
        method: 'POST',
        body: 'a=1&b=2',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      }),
  },
  {
    name: '09-edge-repeated-headers',
    bootstrap: 'edge.yaml',
    represents: 'x-real-ip and x-forwarded-for each sent twice',
    send: get('www.example.com', '/', {
      headers: {
        'x-real-ip': ['10.9.9.9', '10.8.8.8'],
        'x-forwarded-for': ['10.9.9.9', '10.8.8.8'],
      },
    }),
  },
  {
    name: '10-edge-invalid-host',
    bootstrap: 'edge.yaml',
    represents: 'Host a_b.example.com (valid to Envoy, not a host name to Django)',
    send: get('a_b.example.com', '/'),
  },
  {
    name: '13-edge-from-loopback',
    bootstrap: 'edge.yaml',
    represents: 'a GET from 127.0.0.1 itself',
    send: get('www.example.com', '/', { from: '127.0.0.1' }),
  },
  {
    name: '11-sidecar-get',
    bootstrap: 'sidecar.yaml',
    represents: 'GET for app.example.com through the sidecar',
    send: get('app.example.com', '/'),
  },
  {
    name: '12-tcp-connection',
    bootstrap: 'tcp.yaml',
    represents: 'a TCP connection from 127.0.0.2 that sends "hello" (network ext_authz)',
    send: (port) =>
      new Promise<void>((resolve, reject) => {
        const socket = tcpConnect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' })
        socket.on('data', () => socket.end())
        socket.on('close', () => resolve())
        socket.on('error', reject)
        socket.write('hello')
      }),
  },
]

const LISTENER = { 'edge.yaml': 'edge', 'sidecar.yaml': 'inbound', 'tcp.yaml': 'tcp' } as const

/** An ext_authz server that records every Check's request bytes and allows it. */
async function startCapturingServer() {
  const captured: Buffer[] = []
  const allow = official.encodeResponse({ status: { code: 0 } })
  const check: handleUnaryCall<Buffer, Buffer> = (call, callback) => {
    captured.push(call.request)
    callback(null, allow)
  }
  const server = new Server()
  server.addService(AUTHORIZATION_SERVICE, { Check: check } as UntypedServiceImplementation)
  new HealthImplementation({
    '': 'SERVING',
    'envoy.service.auth.v3.Authorization': 'SERVING',
  }).addToServer(server)
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  )
  return { port, captured, close: () => server.forceShutdown() }
}

/** Runs every scenario through Envoy 1.40; the bytes of the one Check each caused, by name. */
export async function captureScenarios(
  scenarios: readonly Scenario[] = SCENARIOS,
): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  const capture = await startCapturingServer()
  const app = await startUpstream()
  const backend = createServer((socket) => socket.pipe(socket))
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve))
  const backendPort = (backend.address() as { port: number }).port
  try {
    for (const bootstrap of ['edge.yaml', 'sidecar.yaml', 'tcp.yaml'] as const) {
      const mine = scenarios.filter((s) => s.bootstrap === bootstrap)
      if (mine.length === 0) continue
      const envoy = await startEnvoy(bootstrap, {
        hostguard: [{ address: '127.0.0.1', port: capture.port }],
        ...(bootstrap === 'tcp.yaml'
          ? { backend: [{ address: '127.0.0.1', port: backendPort }] }
          : { app: [{ address: '127.0.0.1', port: app.port }] }),
      })
      try {
        for (const scenario of mine) {
          const before = capture.captured.length
          await scenario.send(envoy.port(LISTENER[bootstrap]))
          await until(
            5_000,
            () => capture.captured.length > before,
            `the Check of ${scenario.name}`,
          )
          if (capture.captured.length !== before + 1)
            throw new Error(`${scenario.name} caused ${capture.captured.length - before} Checks`)
          out.set(scenario.name, capture.captured[before] as Buffer)
        }
      } finally {
        await envoy.stop()
      }
    }
  } finally {
    capture.close()
    await app.close()
    await new Promise((resolve) => backend.close(resolve))
  }
  return out
}

/**
 * A CheckRequest as proto JSON with proto field names, keys sorted (as the hand-built
 * fixtures' .json): Timestamps in RFC 3339, int64 as strings, bytes in base64.
 */
export function checkRequestJson(bytes: Buffer): string {
  const message = CheckRequest.toObject(CheckRequest.decode(bytes), {
    longs: String,
    enums: String,
    bytes: String,
  })
  return `${JSON.stringify(sortKeys(jsonOf(message)), null, 2)}\n`
}

const CheckRequest = officialRoot(['envoy/service/auth/v3/external_auth.proto']).lookupType(
  'envoy.service.auth.v3.CheckRequest',
)

function jsonOf(value: Message): Message {
  if (Array.isArray(value)) return value.map(jsonOf)
  if (typeof value !== 'object' || value === null) return value
  const keys = Object.keys(value)
  // google.protobuf.Timestamp, the one well-known type a CheckRequest carries.
  if (keys.length > 0 && keys.every((k) => k === 'seconds' || k === 'nanos') && 'seconds' in value)
    return rfc3339(BigInt(value.seconds), Number(value.nanos ?? 0))
  return Object.fromEntries(keys.map((k) => [k, jsonOf(value[k])]))
}

function rfc3339(seconds: bigint, nanos: number): string {
  const whole = new Date(Number(seconds) * 1000).toISOString().replace('.000Z', '')
  if (nanos === 0) return `${whole}Z`
  const digits = String(nanos).padStart(9, '0')
  const cut = nanos % 1_000_000 === 0 ? 3 : nanos % 1000 === 0 ? 6 : 9
  return `${whole}.${digits.slice(0, cut)}Z`
}

function sortKeys(value: Message): Message {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, sortKeys(value[k])]),
  )
}

/**
 * What changes from one run to the next (ports the kernel picked, times, Envoy's stream id
 * and request id) set to fixed values, so that two captures of a scenario compare equal.
 */
export function stable(json: Message): Message {
  const copy = structuredClone(json)
  const attributes = copy.attributes ?? {}
  for (const side of ['source', 'destination']) {
    const socket = attributes[side]?.address?.socket_address
    if (socket) socket.port_value = 0
  }
  const request = attributes.request
  if (request?.time) request.time = '1970-01-01T00:00:00Z'
  const http = request?.http
  if (http?.id) http.id = '0'
  if (http?.headers?.['x-request-id']) http.headers['x-request-id'] = 'x'
  // For a peer of 127.0.0.1 Envoy appends its own address, which is this machine's.
  const xff = http?.headers?.['x-forwarded-for']
  if (attributes.source?.address?.socket_address?.address === '127.0.0.1' && xff)
    http.headers['x-forwarded-for'] = xff.replace(/[^,]*$/, 'ENVOY_LOCAL_ADDRESS')
  return copy
}
