import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { check } from '../../src/grpc-authz/check.js'
import { policyFile, policyFrom } from '../support/policy.js'
import { FIXTURES, type Message, official } from '../support/protos.js'

// SPEC's decisions and header changes are in the case suite (test/cases); here, what check()
// adds to them: the client written into a shared answer template, the deny body, both header
// shapes and a binary secret.
const POLICY = policyFrom(
  `version: 1
trustedProxies: [10.1.0.0/16]
allowedHosts: [www.example.com]
clientIpHeader: x-real-ip
deny: { status: 404 }
sites:
  loud:
    deny: { status: 403, showReason: true }
`,
)

function request(peer: string, host: string, site?: string): Buffer {
  return official.encodeRequest({
    attributes: {
      source: { address: { socket_address: { address: peer, port_value: 1234 } } },
      request: {
        http: { method: 'GET', path: '/', host, headers: { ':authority': host } },
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
    httpStatus: r.denied_response?.status?.code,
    body: r.denied_response?.body,
    set: (r.ok_response?.headers ?? []).map((h: Message) => [
      h.header.key,
      h.header.value,
      h.append_action ?? 'APPEND_IF_EXISTS_OR_ADD',
    ]),
    meta,
  }
}

describe('the answer', () => {
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

  it("denies with a short body, the status's reason phrase", () => {
    const a = answer(request('198.51.100.23', 'evil.example'))
    expect(a).toMatchObject({ httpStatus: 'NotFound', body: 'Not Found\n' })
  })

  it('shows the reason only when the policy asks for it', () => {
    expect(answer(request('198.51.100.23', 'evil.example', 'loud')).body).toBe(
      'Forbidden: host_not_allowed\n',
    )
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
