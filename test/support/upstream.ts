// The app behind Envoy in the end-to-end tests: records every request that reaches it, and
// HTTP/1.1 and HTTP/2 clients that can choose their source address (any of 127.0.0.0/8), so
// that one machine has clients, trusted proxies and strangers.

import {
  createServer,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  request,
} from 'node:http'
import { type ClientHttp2Session, connect } from 'node:http2'
import { connect as tcpConnect } from 'node:net'

interface Seen {
  readonly method: string
  /** The request target as the app received it. */
  readonly path: string
  readonly headers: IncomingHttpHeaders
}

export interface Upstream {
  readonly port: number
  /** Every request that reached the app, in order. */
  readonly seen: Seen[]
  /** The requests whose target is `path`. */
  requestsTo(path: string): Seen[]
  close(): Promise<void>
}

/** An HTTP/1.1 app on 127.0.0.1 that answers 200 `app <target>` to everything. */
export async function startUpstream(): Promise<Upstream> {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers })
    req.resume()
    req.on('end', () => res.end(`app ${req.url}`))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    seen,
    requestsTo: (path) => seen.filter((s) => s.path === path),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

export interface Reply {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

export interface RequestOptions {
  /** The Host header (HTTP/1.1) or :authority (HTTP/2). */
  readonly host: string
  readonly path: string
  readonly headers?: OutgoingHttpHeaders
  /** The client's source address; 127.0.0.1 when absent. */
  readonly from?: string
  /** GET when absent. */
  readonly method?: string
  readonly body?: string
}

/** One HTTP/1.1 request on its own connection to Envoy at 127.0.0.1:port. */
export function http1(port: number, options: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: options.path,
        method: options.method ?? 'GET',
        headers: { ...options.headers, host: options.host },
        localAddress: options.from ?? '127.0.0.1',
        agent: false,
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

/** An HTTP/2 (prior knowledge, cleartext) session to Envoy at 127.0.0.1:port. */
export async function http2Session(port: number, from = '127.0.0.1'): Promise<ClientHttp2Session> {
  const session = connect(`http://127.0.0.1:${port}`, {
    createConnection: () => tcpConnect({ host: '127.0.0.1', port, localAddress: from }),
  })
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve())
    session.once('error', reject)
  })
  return session
}

/** One HTTP/2 request on `session`. */
export function http2(session: ClientHttp2Session, options: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': options.method ?? 'GET',
      ':path': options.path,
      ':authority': options.host,
      ...options.headers,
    })
    let status = 0
    let headers: IncomingHttpHeaders = {}
    let body = ''
    stream.setEncoding('utf8')
    stream.on('response', (h) => {
      status = Number(h[':status'])
      headers = h as IncomingHttpHeaders
    })
    stream.on('data', (d) => {
      body += d
    })
    stream.on('end', () => resolve({ status, headers, body }))
    stream.on('error', reject)
    stream.end(options.body)
  })
}

/**
 * Every forwarding header hostguard never believes from a stranger (SPEC), and the underscore
 * spelling a CGI/WSGI app reads as the same header: what a spoofing client sends, and what must
 * never reach the app.
 */
export const SPOOFED_FORWARDING = {
  'x-forwarded-for': '10.9.9.9',
  'x-forwarded-host': 'www.example.com',
  'x-forwarded-proto': 'https',
  'x-forwarded-port': '443',
  'x-forwarded-scheme': 'https',
  forwarded: 'for=10.9.9.9;host=www.example.com;proto=https',
  'x-real-ip': '10.9.9.9',
  'x-client-ip': '10.9.9.9',
  'true-client-ip': '10.9.9.9',
  'cf-connecting-ip': '10.9.9.9',
  x_forwarded_for: '10.9.9.9',
  x_real_ip: '10.9.9.9',
}
