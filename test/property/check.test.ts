import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import ipaddr from 'ipaddr.js'
import { describe, expect } from 'vitest'
import { resolveClient } from '../../src/decision/client.js'
import { check } from '../../src/grpc-authz/check.js'
import { decode } from '../../src/grpc-authz/decode.js'
import { formatIp } from '../../src/net/ip.js'
import { checkInput, headers, policyFrom } from '../support/policy.js'
import { prop } from '../support/prop.js'
import { FIXTURES, official } from '../support/protos.js'

const POLICY = policyFrom(
  'version: 1\nallowedHosts: ["*"]\ntrustedProxies: [10.0.0.0/8]\nclientIpHeader: x-real-ip\n',
)
const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.bin'))
  .map((f) => readFileSync(join(FIXTURES, f)))

describe('decoding hostile bytes', () => {
  prop(
    'never throws on arbitrary bytes',
    [fc.uint8Array({ maxLength: 512 })],
    (bytes) => {
      decode(Buffer.from(bytes), POLICY.headerNames)
    },
    2000,
  )

  prop(
    'answers every mutated fixture with a CheckResponse the official protos read',
    [
      fc.nat(fixtures.length - 1),
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 8 }),
      fc.nat(),
    ],
    (which, flips, cut) => {
      const bytes = Buffer.from(fixtures[which] ?? Buffer.alloc(0))
      for (const [at, value] of flips) bytes[at % bytes.length] = value
      const result = check(POLICY, bytes.subarray(0, bytes.length - (cut % 4)))
      const answer = official.decodeResponse(result.response)
      expect(answer.dynamic_metadata.fields.reason).toBeDefined()
    },
    500,
  )
})

const trusted = ipaddr.parseCIDR('10.0.0.0/8')
const hop = fc.oneof(
  fc.tuple(fc.constant(10), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.')),
  fc
    .tuple(fc.integer({ min: 11, max: 223 }), fc.nat(255), fc.nat(255), fc.nat(255))
    .map((o) => o.join('.')),
  fc.constantFrom('garbage', 'unknown', '010.0.0.1', ''),
)

/** The walk written as plainly as possible: split, trim, drop empties, then right to left. */
function referenceWalk(xff: string, peer: string): string | undefined {
  const chain = [
    ...xff
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
    peer,
  ]
  for (let i = chain.length - 1; i >= 0; i--) {
    const entry = chain[i] ?? ''
    if (!/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(entry))
      return undefined
    if (!ipaddr.IPv4.parse(entry).match(trusted)) return entry
  }
  return chain[0]
}

describe('x-forwarded-for walk', () => {
  prop(
    'agrees with an array version',
    [
      fc.array(hop, { maxLength: 8 }),
      fc.constantFrom(', ', ',', ' ,\t'),
      fc.constantFrom('10.1.2.3', '198.51.100.9'),
    ],
    (hops, sep, peer) => {
      const xff = hops.join(sep)
      const input = checkInput(peer, undefined, {
        authority: 'a',
        path: '/',
        headers: headers({ 'x-forwarded-for': xff }),
      })
      const client = resolveClient(POLICY.top, input)
      const expected = peer.startsWith('10.') ? referenceWalk(xff, peer) : peer
      expect(client.ip && formatIp(client.ip)).toBe(expected)
    },
    1000,
  )
})

/** The client address in the answer, as Envoy reads it: the x-real-ip header and the metadata. */
function answeredClient(peer: string): [string | undefined, string | undefined] {
  const request = official.encodeRequest({
    attributes: {
      source: { address: { socket_address: { address: peer, port_value: 1 } } },
      request: { http: { method: 'GET', path: '/', host: 'a.example' } },
    },
  })
  const answer = official.decodeResponse(check(POLICY, request).response)
  const header = answer.ok_response?.headers?.[0]?.header?.value
  return [header, answer.dynamic_metadata?.fields?.client?.stringValue]
}

describe('the client written into the answer', () => {
  prop(
    'is the IPv4 address in dotted-quad text, every octet width',
    [fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255))],
    (octets) => {
      const text = octets.join('.')
      expect(answeredClient(text)).toEqual([text, text])
    },
    2000,
  )

  prop(
    'is the IPv6 address in RFC 5952 text',
    // Zero groups often, so that runs of them (the :: of RFC 5952) come in every place.
    [fc.array(fc.oneof(fc.constant(0), fc.nat(0xffff)), { minLength: 8, maxLength: 8 })],
    (groups) => {
      const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff
      // ::ffff:a.b.c.d is that IPv4 client (SPEC "Addresses"); ipaddr.js writes RFC 5952.
      const want = mapped
        ? [groups[6] ?? 0, groups[7] ?? 0].flatMap((g) => [g >> 8, g & 0xff]).join('.')
        : new ipaddr.IPv6(groups).toRFC5952String()
      expect(answeredClient(groups.map((g) => g.toString(16)).join(':'))).toEqual([want, want])
    },
    1000,
  )
})
