// grpcurl (Go's gRPC and protobuf-go: a third client stack) on each gRPC transport of the
// conformance gate: it lists the services, describes CheckRequest, asks health, and sends a Check
// it encodes from the descriptors reflection served. protobuf-go checks those descriptors the
// way protoc does, so this is where a descriptor a Node client accepts but Go refuses shows.

import { execFile, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import { ROOT } from '../support/protos.js'
import { startServer } from '../support/server.js'
import { skipLoudly } from '../support/system.js'
import { GRPC_TRANSPORTS } from '../support/transports.js'

const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')

/** GRPCURL, else .tools/go/bin/grpcurl (where .ci/run installs it), else one on PATH. */
function findGrpcurl(): string | undefined {
  const candidates = [
    process.env['GRPCURL'],
    join(ROOT, '.tools', 'go', 'bin', 'grpcurl'),
    'grpcurl',
  ]
  return candidates.find(
    (bin) =>
      bin !== undefined &&
      (bin.includes('/') ? existsSync(bin) : true) &&
      spawnSync(bin, ['-version']).status === 0,
  )
}
const GRPCURL = findGrpcurl()

/** A CheckRequest as proto JSON: `host` from `source`, as Envoy sends it. */
function checkRequest(host: string, source: string): string {
  return JSON.stringify({
    attributes: {
      source: { address: { socket_address: { address: source, port_value: 40000 } } },
      request: { http: { method: 'GET', path: '/', host, headers: { ':authority': host } } },
    },
  })
}

skipLoudly(
  GRPCURL === undefined,
  'grpcurl is missing: health, reflection and Check were NOT tried over Go’s gRPC stack. Install it with `GOBIN=$PWD/.tools/go/bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3`.',
)

describe.skipIf(GRPCURL === undefined).each(GRPC_TRANSPORTS)('grpcurl on $name', (transport) => {
  let running: Running
  /** grpcurl [flags] ADDRESS command…, with `-d data` among the flags when given. */
  const grpcurl = async (command: string[], data?: string): Promise<string> => {
    const { stdout } = await promisify(execFile)(GRPCURL as string, [
      '-plaintext',
      '-max-time',
      '20',
      ...(data === undefined ? [] : ['-d', data]),
      `127.0.0.1:${running.grpcPort}`,
      ...command,
    ])
    return stdout
  }

  beforeAll(async () => {
    running = await startServer(EXAMPLE, transport.options)
  })
  afterAll(async () => {
    await running?.stop()
  })

  it('lists the services by reflection', async () => {
    const services = (await grpcurl(['list'])).trim().split('\n').sort()
    expect(services).toEqual(['envoy.service.auth.v3.Authorization', 'grpc.health.v1.Health'])
  })

  it('describes CheckRequest and the types it refers to in other files', async () => {
    expect(await grpcurl(['describe', 'envoy.service.auth.v3.CheckRequest'])).toContain(
      '.envoy.service.auth.v3.AttributeContext attributes = 1;',
    )
    // In envoy/type/v3: found only if the file that uses it names it as an import.
    expect(await grpcurl(['describe', 'envoy.service.auth.v3.DeniedHttpResponse'])).toContain(
      '.envoy.type.v3.HttpStatus status = 1;',
    )
  })

  it('answers health Check and List (a map field: its entry type named as protobuf requires)', async () => {
    expect(JSON.parse(await grpcurl(['grpc.health.v1.Health/Check'], '{"service":""}'))).toEqual({
      status: 'SERVING',
    })
    expect(JSON.parse(await grpcurl(['grpc.health.v1.Health/List']))).toEqual({
      statuses: {
        '': { status: 'SERVING' },
        'envoy.service.auth.v3.Authorization': { status: 'SERVING' },
      },
    })
  })

  it('allows and denies a Check it encoded from the reflected descriptors', async () => {
    const allowed = JSON.parse(
      await grpcurl(
        ['envoy.service.auth.v3.Authorization/Check'],
        checkRequest('www.example.com', '203.0.113.7'),
      ),
    )
    expect(allowed.status ?? {}).toEqual({})
    expect(allowed.dynamic_metadata).toMatchObject({ decision: 'allow', client: '203.0.113.7' })
    const denied = JSON.parse(
      await grpcurl(
        ['envoy.service.auth.v3.Authorization/Check'],
        checkRequest('evil.example.net', '203.0.113.7'),
      ),
    )
    expect(denied.status).toEqual({ code: 7 })
    expect(denied.denied_response.status).toEqual({ code: 'Forbidden' })
    expect(denied.dynamic_metadata).toMatchObject({
      decision: 'deny',
      reason: 'host_not_allowed',
    })
  })
})
