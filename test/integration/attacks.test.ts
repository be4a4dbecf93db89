// Issue 14's attacks, tried as an attacker would: against the built server (dist/main.js) on
// loopback, over gRPC, with the CheckRequests a trusted proxy would forward.

import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Client } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { callCheck, checkClient } from '../support/grpc.js'
import { type Message, official } from '../support/protos.js'
import { type ServeProcess, spawnServe } from '../support/server.js'

const POLICY = `version: 1
trustedProxies: [10.1.0.0/16]
trustedHeaders: [x-forwarded-for, x-forwarded-host]
allowedHosts: [www.example.com, .example.org]
clientCidrs: { deny: [192.0.2.0/24] }
sites:
  fwd:
    trustedHeaders: [forwarded]
  realip:
    trustedHeaders: [x-real-ip]
  v6:
    trustedProxies: ["::/1", "fd00::/8"]
`

let server: ServeProcess
let client: Client

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hostguard-attacks-'))
  const file = join(dir, 'policy.yaml')
  writeFileSync(file, POLICY)
  server = spawnServe(file)
  client = checkClient((await server.started()).grpcPort)
})

afterAll(() => {
  client?.close()
  server?.child.kill('SIGKILL')
})

/** The answer's dynamic metadata and denied status for one request. */
async function ask(
  peer: string,
  headers: Record<string, string>,
  site?: string,
  host = 'www.example.com',
): Promise<{ meta: Record<string, string>; status: string | undefined; removed: string[] }> {
  const request = official.encodeRequest({
    attributes: {
      source: { address: { socket_address: { address: peer, port_value: 4711 } } },
      request: {
        http: { method: 'GET', path: '/', host, headers: { ':authority': host, ...headers } },
      },
      ...(site ? { context_extensions: { site } } : {}),
    },
  })
  const answer: Message = official.decodeResponse(await callCheck(client, request))
  const meta: Record<string, string> = {}
  for (const [k, v] of Object.entries(answer.dynamic_metadata.fields))
    meta[k] = (v as Message).stringValue
  return {
    meta,
    status: answer.denied_response?.status.code,
    removed: answer.ok_response?.headers_to_remove ?? [],
  }
}

describe('a denied client cannot pad its way past clientCidrs.deny', () => {
  // The trusted proxy 10.1.2.3 appends the real client 192.0.2.9 to what the client sent.
  it.each([
    [
      'x-forwarded-for with 8 KiB before the client',
      { 'x-forwarded-for': `${'x'.repeat(8192)}, 192.0.2.9` },
      undefined,
    ],
    [
      'forwarded with 33 elements before the client',
      { forwarded: `${'for=10.1.9.9,'.repeat(33)}for=192.0.2.9` },
      'fwd',
    ],
    ['x-real-ip the client sent, appended to', { 'x-real-ip': '1.1.1.1,192.0.2.9' }, 'realip'],
  ])('%s', async (_, headers, site) => {
    const { meta } = await ask('10.1.2.3', headers, site)
    expect(meta['decision']).toBe('deny')
    expect(meta['reason']).toBe('client_denied')
  })

  it('still allows the one-entry chain of a client outside the list', async () => {
    const { meta } = await ask('10.1.2.3', {
      'x-forwarded-for': `${'x'.repeat(8192)}, 198.51.100.7`,
    })
    expect(meta).toMatchObject({ decision: 'allow', client: '198.51.100.7' })
  })
})

describe('an IPv6 range trusts no IPv4 peer', () => {
  it('keeps 10.9.9.9 the client under trustedProxies ["::/1"] and strips its headers', async () => {
    const { meta, removed } = await ask('10.9.9.9', { 'x-forwarded-for': '198.51.100.7' }, 'v6')
    expect(meta).toMatchObject({ decision: 'allow', client: '10.9.9.9' })
    expect(removed).toContain('x-forwarded-for')
  })

  it('trusts an IPv6 peer in it', async () => {
    const { meta } = await ask('::1', { 'x-forwarded-for': '198.51.100.7' }, 'v6')
    expect(meta).toMatchObject({ decision: 'allow', client: '198.51.100.7' })
  })
})

describe('a host= the client wrote in forwarded does not stand in for the authority', () => {
  // The trusted proxy 10.1.2.3 appends only for= to the client's own forwarded header.
  it('checks the authority when the elements the walk read carry no host=', async () => {
    const headers = { forwarded: 'host=www.example.com, for=198.51.100.7' }
    const { meta } = await ask('10.1.2.3', headers, 'fwd', 'evil.example.net')
    expect(meta).toMatchObject({ decision: 'deny', reason: 'host_not_allowed' })
  })

  it('reads host= from the element the trusted proxy wrote', async () => {
    const headers = { forwarded: 'host=evil.example.net, for=198.51.100.7;host=www.example.com' }
    const { meta } = await ask('10.1.2.3', headers, 'fwd', 'internal')
    expect(meta).toMatchObject({ decision: 'allow', reason: 'host_allowed' })
  })
})

describe('a long dotted Host is answered, not scanned', () => {
  const dotted = `${'a.'.repeat(4000)}example.org`
  it.each([
    ['Host', {}, dotted],
    ['x-forwarded-host', { 'x-forwarded-host': dotted }, 'internal'],
  ])('%s: 8 KiB of labels is an invalid Host', async (_, headers, host) => {
    const { meta, status } = await ask('10.1.2.3', headers, undefined, host)
    expect(meta['reason']).toBe('invalid_host')
    expect(status).toBe('BadRequest')
  })
})
