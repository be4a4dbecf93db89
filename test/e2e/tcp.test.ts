// Through Envoy on envoy/tcp.yaml: the network ext_authz filter asks hostguard once per TCP
// connection, with no HTTP part, so only the top level's clientCidrs decide; the backend is
// dialled only for a connection hostguard allowed.

import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type EnvoyProcess, skipWithoutEnvoy, startEnvoy } from '../support/envoy.js'
import { ENVOY } from '../support/envoy-bin.js'
import { ROOT } from '../support/protos.js'
import { type Hostguard, kill, startHostguard } from '../support/stack.js'

const POLICY = join(ROOT, 'test', 'e2e', 'tcp.policy.yaml')

/** Connects from `from`, sends `hello`; resolves with what came back before Envoy closed. */
function exchange(port: number, from: string): Promise<{ echoed: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port, localAddress: from })
    let echoed = ''
    socket.setEncoding('utf8')
    socket.on('data', (d) => {
      echoed += d
      // The echo is back: the connection was let through.
      if (echoed === 'greeting hello') socket.end()
    })
    socket.on('error', reject)
    socket.on('close', () => resolve({ echoed, closed: true }))
    socket.write('hello')
  })
}

skipWithoutEnvoy('the network ext_authz tests through envoy/tcp.yaml')

describe.skipIf(ENVOY === undefined)('through Envoy on envoy/tcp.yaml', () => {
  let hostguard: Hostguard
  let envoy: EnvoyProcess
  let backend: Server
  const peers: string[] = []

  beforeAll(async () => {
    backend = createServer((socket: Socket) => {
      peers.push(socket.remoteAddress ?? '')
      // A server-first greeting: it must reach only clients that were let through.
      socket.write('greeting ')
      socket.pipe(socket)
    })
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve))
    hostguard = await startHostguard(POLICY)
    envoy = await startEnvoy('tcp.yaml', {
      hostguard: [{ address: '127.0.0.1', port: hostguard.grpcPort }],
      backend: [{ address: '127.0.0.1', port: (backend.address() as { port: number }).port }],
    })
  })

  afterAll(async () => {
    await envoy?.stop()
    if (hostguard) await kill(hostguard.child)
    await new Promise((resolve) => backend?.close(resolve))
  })

  const tcpStats = () => envoy.stats(/^ext_authz\.tcp\./)

  it('lets a client of clientCidrs.allow through to the backend (tcp_client_allowed)', async () => {
    const before = peers.length
    expect(await exchange(envoy.port('tcp'), '127.0.0.2')).toEqual({
      echoed: 'greeting hello',
      closed: true,
    })
    expect(peers.length).toBe(before + 1)
    expect(await hostguard.decisions('reason="tcp_client_allowed"')).toBe(1)
    expect((await tcpStats()).get('ext_authz.tcp.ok')).toBe(1)
    // tcp_proxy's access log, from the metadata hostguard returned to the network filter.
    expect(
      await envoy.line((l) => / tcp 127\.0\.0\.2:\d+ /.test(l), 'the allowed connection logged'),
    ).toMatch(/ - authz=allow\/tcp_client_allowed site=default mode=enforce client=127\.0\.0\.2$/)
  })

  it('closes any other connection before the backend is dialled, unanswered', async () => {
    const before = peers.length
    expect(await exchange(envoy.port('tcp'), '127.0.0.1')).toEqual({ echoed: '', closed: true })
    expect(peers.length).toBe(before)
    expect(await hostguard.decisions('reason="client_not_allowed"')).toBe(1)
    expect(
      await envoy.line((l) => / tcp 127\.0\.0\.1:\d+ /.test(l), 'the denied connection logged'),
    ).toMatch(/ UAEX authz=deny\/client_not_allowed site=default mode=enforce client=127\.0\.0\.1$/)
    expect((await tcpStats()).get('ext_authz.tcp.denied')).toBe(1)
  })
})
