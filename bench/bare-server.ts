// The floor of a Node.js process serving HTTP/2, for npm run bench:memory: node:http2 (nghttp2)
// listening, each request read and dropped and answered with a trailers-only gRPC status
// (UNIMPLEMENTED); no grpc-js, no policy. node build/tools/bench/bare-server.js PORT [POLICY]
// With a POLICY file it also starts hostguard's policy loader thread and loads it once, as serve
// does: what that thread (its own V8 isolate and heap) costs. Everything beyond node:http2 is
// imported only when asked, so that the plain run is the floor.

import { createServer } from 'node:http2'

if (process.env['HOSTGUARD_BENCH_MEMORY'] === '1') await import('./memory-probe.js')

const policyFile = process.argv[3]
if (policyFile !== undefined) {
  const { PolicyLoader } = await import('../src/policy/loader.js')
  const { DEFAULT_LIMITS } = await import('../src/decision/types.js')
  // Not closed, like serve's: the thread lives as long as the process, idle between reloads.
  await new PolicyLoader().load({
    file: policyFile,
    env: {},
    limits: DEFAULT_LIMITS,
    maxPolicyBytes: 16 * 2 ** 20,
    force: true,
  })
}

const server = createServer()
server.on('stream', (stream) => {
  stream.on('end', () =>
    stream.respond(
      { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' },
      { endStream: true },
    ),
  )
  stream.resume()
})
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  process.stdout.write(`${JSON.stringify({ msg: 'bare serving', port })}\n`)
})
