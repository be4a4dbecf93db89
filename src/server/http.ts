// The HTTP port: liveness and readiness for Kubernetes and load balancers, and /metrics for
// Prometheus.

import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'

export interface HttpServer {
  readonly server: Server
  readonly port: number
}

/** `/healthz`: 200 while the process runs. `/readyz`: 200 when `isReady()`, else 503. */
export function startHttp(
  host: string,
  port: number,
  isReady: () => boolean,
  registry: Registry,
): Promise<HttpServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type }).end(body)
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') send(405, 'method not allowed\n')
    else if (path === '/healthz') send(200, 'ok\n')
    else if (path === '/readyz') {
      if (isReady()) send(200, 'ready\n')
      else send(503, 'not ready\n')
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => send(200, text, registry.contentType),
        (err: unknown) => send(500, `metrics failed: ${(err as Error).message}\n`),
      )
    } else send(404, 'not found\n')
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve({ server, port: (server.address() as AddressInfo).port })
    })
  })
}

export function stopHttp(http: HttpServer): Promise<void> {
  return new Promise((resolve) => http.server.close(() => resolve()))
}
