// The HTTP authorization port (`--authz-port`): nginx's auth_request, Caddy's forward_auth,
// Traefik's forwardAuth and Envoy's http_service ask here, HTTP/1.1 with keep-alive. Its own
// listener, never the metrics port: only the proxies may reach it (SPEC "HTTP authorization").

import {
  createServer,
  type IncomingHttpHeaders,
  IncomingMessage,
  type Server,
  type ServerOptions,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { DecisionObserver } from '../decision/observe.js'
import { authorize, misconfiguration } from '../http-authz/authorize.js'
import { equalsLowerCase } from '../net/header-name.js'
import type { PolicyStore } from '../policy/store.js'

export interface AuthzHttpServer {
  readonly server: Server
  readonly port: number
  /** performance.now() of the last request received. */
  lastCallAt(): number
}

/** How long a proxy's connection may take over one request, and keep an idle connection. */
export interface AuthzHttpLimits {
  /** The request's headers must have arrived by then (node:http's headersTimeout). */
  readonly headersTimeoutMs: number
  /** The whole request, body included, must have arrived by then. */
  readonly requestTimeoutMs: number
  /** An idle keep-alive connection is closed after this. */
  readonly keepAliveTimeoutMs: number
  /** The largest request head (node:http's maxHeaderSize): a larger one is answered 431. */
  readonly maxHeaderBytes: number
}

export const DEFAULT_AUTHZ_HTTP_LIMITS: AuthzHttpLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  // Longer than nginx's upstream keepalive_timeout (60 s) and Envoy's idle_timeout (1 h is
  // theirs; the shipped files set 60 s), so the proxy, not hostguard, closes idle connections
  // and never sends on one hostguard is closing.
  keepAliveTimeoutMs: 75_000,
  maxHeaderBytes: 64 * 1024,
}

const FAIL_CLOSED = ['content-type', 'text/plain; charset=utf-8']

/**
 * The request headers node:http reads itself, and how it folds a repeat (_http_incoming.js's
 * matchKnownFields): Host (an HTTP/1.1 request without one is answered 400), Expect
 * (100-continue), TE (chunked answers to HTTP/1.0) and the body headers (declaresBody below, and
 * Node 24's optimizeEmptyRequests, which hostguard does not set).
 */
const NODE_READS: readonly NodeRead[] = [
  { name: 'host', join: false },
  { name: 'expect', join: true },
  { name: 'te', join: true },
  { name: 'content-length', join: false },
  { name: 'transfer-encoding', join: true },
]

interface NodeRead {
  readonly name: string
  /** Repeats joined with `, `; else the first one wins. */
  readonly join: boolean
}

/** NODE_READS by name length, null where none has it (their lengths differ). */
const NODE_READ_BY_LENGTH: readonly (NodeRead | null)[] = Array.from(
  { length: Math.max(...NODE_READS.map((r) => r.name.length)) + 1 },
  (_, length) => NODE_READS.find((r) => r.name.length === length) ?? null,
)

/**
 * node:http's bound on a request's header lines (its parser's maxHeaderPairs, 2000 names and
 * values). Node 24 answers a longer head 431; Node 20 keeps only part of the rest in rawHeaders,
 * while its parser still reads them (a late Content-Length still frames the body): the port
 * refuses such a request itself, so that no line it cannot see decides anything.
 */
const MAX_HEADER_LINES = 1000

/**
 * `req.headers` as node:http makes it, for the names in NODE_READS only (node:http's
 * joinDuplicateHeaders option, which would join Host and Content-Length too, is not set).
 */
export function headersNodeReads(rawHeaders: readonly string[]): IncomingHttpHeaders {
  const headers: Record<string, string> = {}
  // node:http's getter reads no further either.
  const end = Math.min(rawHeaders.length, 2 * MAX_HEADER_LINES)
  for (let i = 0; i + 1 < end; i += 2) {
    const raw = rawHeaders[i] as string
    const read = raw.length < NODE_READ_BY_LENGTH.length ? NODE_READ_BY_LENGTH[raw.length] : null
    if (!read || !equalsLowerCase(raw, read.name)) continue
    const before = headers[read.name]
    const value = rawHeaders[i + 1] as string
    if (before === undefined) headers[read.name] = value
    else if (read.join) headers[read.name] = `${before}, ${value}`
  }
  return headers
}

const HEADERS = Symbol('headers')

/**
 * The authz port's request: `headers` holds only what node:http reads itself (NODE_READS).
 * node:http makes `req.headers` for every HTTP/1.1 request, to look up Host and Expect, and
 * lower-casing, matching and joining every header a browser sent cost ~3.4 of the ~16 µs a
 * request takes (bench/RESULTS.md, the two no-ops); hostguard reads `rawHeaders` only. A
 * diagnostics_channel subscriber (http.server.request.start) or an 'http' PerformanceObserver,
 * of which hostguard has none, would see only these headers.
 */
export class AuthzIncomingMessage extends IncomingMessage {
  [HEADERS]: IncomingHttpHeaders | undefined = undefined
}
// An accessor, as IncomingMessage's own `headers` is (TypeScript types it as a field). No
// setter: nothing assigns req.headers, node:http included (Node 20 and 24).
Object.defineProperty(AuthzIncomingMessage.prototype, 'headers', {
  get(this: AuthzIncomingMessage): IncomingHttpHeaders {
    this[HEADERS] ??= headersNodeReads(this.rawHeaders)
    return this[HEADERS]
  },
})

/** node:http's options for the authz port (the benchmark's no-op server takes them too). */
export function authzServerOptions(limits: AuthzHttpLimits): ServerOptions {
  return {
    keepAlive: true,
    // Whatever NODE_OPTIONS says (--insecure-http-parser): a lenient parser accepts what proxies
    // and hostguard may frame differently (Content-Length beside Transfer-Encoding, bare LF).
    insecureHTTPParser: false,
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // node:http checks both timeouts only this often (30 s by default).
    connectionsCheckingInterval: Math.max(
      50,
      Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 10,
    ),
  }
}

export function startAuthzHttp(
  store: PolicyStore,
  observer: DecisionObserver,
  log: Logger,
  host: string,
  port: number,
  limits: AuthzHttpLimits,
  onInternalError: () => void,
): Promise<AuthzHttpServer> {
  let lastCallAt = 0
  const options = { ...authzServerOptions(limits), IncomingMessage: AuthzIncomingMessage }
  const server = createServer(options, (req, res) => {
    const started = performance.now()
    lastCallAt = started
    if (req.rawHeaders.length > 2 * MAX_HEADER_LINES) {
      // Not a decision: what node:http itself answers on Node 24, before any handler runs.
      res.shouldKeepAlive = false
      res.writeHead(431, FAIL_CLOSED).end(`more than ${MAX_HEADER_LINES} header lines\n`)
      return
    }
    const policy = store.current
    if (policy === undefined) {
      res.writeHead(503, FAIL_CLOSED).end('no policy loaded\n')
      return
    }
    let result: ReturnType<typeof authorize>
    try {
      result = authorize(policy, req.url ?? '', req.rawHeaders)
    } catch (err) {
      // Last resort, as on the gRPC port: fail closed with the policy's deny status.
      onInternalError()
      log.error({ err }, 'authorization failed; answered deny')
      res.writeHead(policy.top.denyStatus, FAIL_CLOSED).end('Denied\n')
      return
    }
    if (result === undefined) {
      res
        .writeHead(404, FAIL_CLOSED)
        .end('not found: the path is /<nginx|caddy|traefik|envoy>/<site>\n')
      return
    }
    const { answer } = result
    // A request that declares a body is answered before its body is read, and never read: its
    // connection is closed after the answer, so that bytes a proxy did not send as promised
    // (nginx forwards the client's Content-Length without the body unless told not to) can
    // never be read as the next request on the connection.
    if (declaresBody(req.headers)) res.shouldKeepAlive = false
    res.writeHead(answer.status, answer.headers).end(answer.body)
    observer.observe(result, (performance.now() - started) / 1000, 'http')
    if (result.misconfigured)
      log.warn(
        { dialect: result.dialect, header: result.misconfigured.header },
        `proxy misconfiguration: ${misconfiguration(result.dialect, result.misconfigured)}; answered 400`,
      )
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve({
        server,
        port: (server.address() as AddressInfo).port,
        lastCallAt: () => lastCallAt,
      })
    })
  })
}

/**
 * The request declares a body: a Content-Length other than 0, or a Transfer-Encoding (node:http
 * refuses a request with both, or with two Content-Lengths: its parser is never lenient here).
 */
function declaresBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length']
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/** Stops accepting, closes idle connections, lets answers in flight finish; cuts the rest after `forceAfterMs`. */
export function stopAuthzHttp(authz: AuthzHttpServer, forceAfterMs = 0): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => authz.server.closeAllConnections(), forceAfterMs)
    authz.server.close(() => {
      clearTimeout(force)
      resolve()
    })
    authz.server.closeIdleConnections()
  })
}
