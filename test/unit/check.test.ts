import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { check } from '../../src/check/check.js'
import { FORWARDING_HEADERS } from '../../src/policy/schema.js'
import { policyFile, policyFrom } from '../support/policy.js'
import { FIXTURES, type Message, official } from '../support/protos.js'

const POLICY = policyFrom(
  `version: 1
trustedProxies: [10.1.0.0/16]
trustedHeaders: [x-forwarded-for, x-forwarded-host, x-forwarded-proto]
allowedHosts: [www.example.com]
clientIpHeader: x-real-ip
deny: { status: 404 }
sites:
  dry:
    dryRun: true
  loud:
    deny: { status: 403, showReason: true }
  plain:
    clientIpHeader: null
  fwdclient:
    clientIpHeader: x-forwarded-for
`,
)

function request(
  peer: string,
  host: string,
  hdrs: Record<string, string> = {},
  site?: string,
): Buffer {
  return official.encodeRequest({
    attributes: {
      source: { address: { socket_address: { address: peer, port_value: 1234 } } },
      request: {
        http: { method: 'GET', path: '/', host, headers: { ':authority': host, ...hdrs } },
      },
      ...(site ? { context_extensions: { site } } : {}),
    },
  })
}

/** The answer as Envoy would read it, decoded with the official protos. */
function answer(bytes: Buffer) {
  const r: Message = official.decodeResponse(check(POLICY, bytes).response)
  const meta: Record<string, string> = {}
  for (const [k, v] of Object.entries(r.dynamic_metadata?.fields ?? {}))
    meta[k] = (v as Message).stringValue ?? (v as Message).string_value
  return {
    grpcCode: r.status?.code ?? 0,
    kind: r.http_response,
    httpStatus: r.denied_response?.status?.code,
    body: r.denied_response?.body,
    set: (r.ok_response?.headers ?? []).map((h: Message) => [
      h.header.key,
      h.header.value,
      h.append_action ?? 'APPEND_IF_EXISTS_OR_ADD',
    ]),
    remove: r.ok_response?.headers_to_remove ?? [],
    meta,
  }
}

describe('the answer', () => {
  it('allows with headers_to_remove, the client header overwritten, and dynamic metadata', () => {
    const a = answer(request('198.51.100.23', 'www.example.com', { 'x-forwarded-for': '10.0.0.1' }))
    expect(a.grpcCode).toBe(0)
    expect(a.kind).toBe('ok_response')
    expect(a.set).toEqual([['x-real-ip', '198.51.100.23', 'OVERWRITE_IF_EXISTS_OR_ADD']])
    expect(a.remove).toEqual(FORWARDING_HEADERS.filter((h) => h !== 'x-real-ip'))
    expect(a.meta).toEqual({
      decision: 'allow',
      reason: 'host_allowed',
      site: 'default',
      mode: 'enforce',
      client: '198.51.100.23',
    })
  })

  it('writes each client into its answer, also where one answer shape serves many clients', () => {
    // Same site, reason and address length: one template, two answers.
    for (const client of ['198.51.100.23', '203.0.113.77', '2001:db8::1', '2001:db8::ff']) {
      const a = answer(request(client, 'www.example.com'))
      expect(a.set).toEqual([['x-real-ip', client, 'OVERWRITE_IF_EXISTS_OR_ADD']])
      expect(a.meta['client']).toBe(client)
      const denied = answer(request(client, 'nope.example.com'))
      expect([denied.httpStatus, denied.meta['client']]).toEqual(['NotFound', client])
    }
    // The longest address text there is.
    const mapped = 'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255'
    expect(answer(request(mapped, 'www.example.com')).meta['client']).toBe(
      'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
    )
  })

  it('keeps the trusted forwarding headers when the peer is a trusted proxy', () => {
    const a = answer(request('10.1.2.3', 'www.example.com', { 'x-forwarded-for': '203.0.113.7' }))
    expect(a.remove).toEqual([
      'x-forwarded-port',
      'x-forwarded-scheme',
      'forwarded',
      'x-client-ip',
      'true-client-ip',
      'cf-connecting-ip',
    ])
    expect(a.set).toEqual([['x-real-ip', '203.0.113.7', 'OVERWRITE_IF_EXISTS_OR_ADD']])
  })

  it('removes the client header instead of setting it when the client is unknown', () => {
    const a = answer(request('10.1.2.3', 'www.example.com', { 'x-forwarded-for': 'garbage' }))
    expect(a.set).toEqual([])
    expect(a.remove).toContain('x-real-ip')
    expect(a.meta['client']).toBeUndefined()
  })

  it('never both sets and removes a trusted header used as the client header', () => {
    const a = answer(
      request('10.1.2.3', 'www.example.com', { 'x-forwarded-for': '203.0.113.7' }, 'fwdclient'),
    )
    expect(a.set).toEqual([['x-forwarded-for', '203.0.113.7', 'OVERWRITE_IF_EXISTS_OR_ADD']])
    expect(a.remove).not.toContain('x-forwarded-for')
  })

  it('sets no client header when the site switches it off', () => {
    const a = answer(request('198.51.100.23', 'www.example.com', {}, 'plain'))
    expect(a.set).toEqual([])
    expect(a.remove).toEqual([...FORWARDING_HEADERS])
  })

  it('denies with the site status, a short body and the metadata', () => {
    const a = answer(request('198.51.100.23', 'evil.example'))
    expect(a).toMatchObject({
      grpcCode: 7,
      kind: 'denied_response',
      httpStatus: 'NotFound',
      body: 'Not Found\n',
    })
    expect(a.meta).toEqual({
      decision: 'deny',
      reason: 'host_not_allowed',
      site: 'default',
      mode: 'enforce',
      client: '198.51.100.23',
    })
  })

  it('always denies invalid Host syntax with 400', () => {
    expect(answer(request('198.51.100.23', 'a b')).httpStatus).toBe('BadRequest')
  })

  it('shows the reason only when the policy asks for it', () => {
    expect(answer(request('198.51.100.23', 'evil.example', {}, 'loud')).body).toBe(
      'Forbidden: host_not_allowed\n',
    )
  })

  it('answers a dry-run deny as an allow, keeping decision and reason in the metadata', () => {
    const a = answer(request('198.51.100.23', 'evil.example', {}, 'dry'))
    expect(a.grpcCode).toBe(0)
    expect(a.kind).toBe('ok_response')
    expect(a.set).toEqual([['x-real-ip', '198.51.100.23', 'OVERWRITE_IF_EXISTS_OR_ADD']])
    expect(a.meta).toMatchObject({
      decision: 'deny',
      reason: 'host_not_allowed',
      site: 'dry',
      mode: 'dry_run',
    })
  })

  it('answers an unknown site with the top level', () => {
    const a = answer(request('198.51.100.23', 'www.example.com', {}, 'nope'))
    expect(a).toMatchObject({ grpcCode: 7, httpStatus: 'NotFound' })
    expect(a.meta).toMatchObject({ reason: 'unknown_site', site: 'default' })
  })

  it('denies bytes that are not a CheckRequest with 400 invalid_request', () => {
    const a = answer(Buffer.from([0x0a, 0xff]))
    expect(a).toMatchObject({ grpcCode: 7, httpStatus: 'BadRequest' })
    expect(a.meta).toEqual({
      decision: 'deny',
      reason: 'invalid_request',
      site: 'default',
      mode: 'enforce',
    })
  })
})

describe('both request shapes', () => {
  it('headers and header_map give the same decision and answer', () => {
    const raw = readFileSync(join(FIXTURES, '11-header-map-raw-values.bin'))
    const message = official.decodeRequest(raw)
    const http = message.attributes.request.http
    const map: Record<string, string> = {}
    for (const h of http.header_map.headers) {
      const v = Buffer.from(h.raw_value).toString('utf8')
      map[h.key] = map[h.key] === undefined ? v : `${map[h.key]},${v}`
    }
    http.header_map = undefined
    http.headers = map
    const asMap = check(POLICY, official.encodeRequest(message))
    const asRaw = check(POLICY, raw)
    expect(asRaw.decision.reason).toBe('host_allowed')
    expect(asRaw.response).toEqual(asMap.response)
  })
})

describe('a binary health-check secret', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hostguard-secret-'))
  const secretFile = join(dir, 'secret')
  writeFileSync(secretFile, Buffer.from([0xff, 0xfe, 0x41, 0x0a]))
  const policy = policyFile(
    (() => {
      const file = join(dir, 'policy.yaml')
      writeFileSync(
        file,
        'version: 1\nallowedHosts: [www.example.com]\nhealthCheck: { header: x-health, value: { file: secret }, paths: [/hc] }\n',
      )
      return file
    })(),
  )
  const probe = (value: Buffer) =>
    official.decodeResponse(
      check(
        policy,
        official.encodeRequest({
          attributes: {
            source: { address: { socket_address: { address: '192.0.2.1', port_value: 1 } } },
            request: {
              http: {
                method: 'GET',
                path: '/hc',
                host: 'evil.example',
                header_map: { headers: [{ key: 'x-health', raw_value: value }] },
              },
            },
          },
        }),
      ).response,
    ).status?.code ?? 0

  it('is compared byte for byte with the raw header value', () => {
    expect(probe(Buffer.from([0xff, 0xfe, 0x41]))).toBe(0)
  })

  it('is not matched by other invalid UTF-8 bytes that decode to the same text', () => {
    // Both decode as "\uFFFD\uFFFDA": compared as text, they would pass.
    expect(probe(Buffer.from([0xfe, 0xff, 0x41]))).not.toBe(0)
    expect(probe(Buffer.from([0xc0, 0xc1, 0x41]))).not.toBe(0)
  })
})
