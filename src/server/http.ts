// The HTTP port: liveness and readiness for Kubernetes and load balancers.

import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface HttpServer {
  readonly server: Server
  readonly port: number
}

/** `/healthz`: 200 while the process runs. `/readyz`: 200 when `isReady()`, else 503. */
export function startHttp(host: string, port: number, isReady: () => boolean): Promise<HttpServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    const send = (code: number, body: string): void => {
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8' }).end(body)
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') send(405, 'method not allowed\n')
    else if (path === '/healthz') send(200, 'ok\n')
    else if (path === '/readyz') {
      if (isReady()) send(200, 'ready\n')
      else send(503, 'not ready\n')
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
