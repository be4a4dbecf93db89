// Differential fuzzing of check(): random and mutated CheckRequests go through the real request
// path and through fuzz/reference.ts, and must agree on decision, reason, site, mode, client and
// header changes; every answer must decode as a CheckResponse under the official Envoy protos;
// nothing may throw. `npm run fuzz -- --count N [--seed S]`; the tests run a few thousand cases.

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { RequestInput } from '../src/decision/types.js'
import { check } from '../src/grpc-authz/check.js'
import { compileHeaderNames, decode, HeaderValues } from '../src/grpc-authz/decode.js'
import { parseIp } from '../src/net/ip.js'
import { compilePolicy } from '../src/policy/compile.js'
import { parsePolicy } from '../src/policy/load.js'
import { FORWARDING_HEADERS } from '../src/policy/schema.js'
import { FIXTURES, type Message, official } from '../test/support/protos.js'
import { type ReferenceAnswer, ReferenceEvaluator, specInput } from './reference.js'

const FUZZ_POLICY = `version: 1
trustedProxies: [10.0.0.0/8, "fd00::/8", "::ffff:192.168.0.0/112"]
trustedHeaders: [x-forwarded-for, x-forwarded-host, x-forwarded-proto]
allowedHosts: [www.example.com, .example.org, "[2001:db8::1]", localhost]
allowedCidrNets: [192.0.2.0/24, "2001:db8:1::/48"]
clientCidrs: { deny: [203.0.113.66, "2001:db8:bad::/48"] }
healthCheck: { header: x-health, value: { env: FUZZ_SECRET }, paths: [/healthz] }
clientIpHeader: x-real-ip
sites:
  fwd:
    trustedHeaders: [forwarded]
    clientCidrs: { allow: [198.51.100.0/24, 10.0.0.0/8, "::/0"] }
  realip:
    trustedHeaders: [x-real-ip, x-forwarded-host]
    clientIpHeader: x-client-ip
  dry:
    dryRun: true
    deny: { status: 404, showReason: true }
    allowedHosts: [dry.example.com]
  tcp:
    clientCidrs: { allow: [198.51.100.0/24] }
  v6trust:
    trustedProxies: ["::/1", "fd00::/8", "::ffff:10.0.0.0/104"]
    clientCidrs: { deny: [10.9.0.0/16] }
`
const SECRET = 's3cret-fuzz'
const STATUS_NAMES: Record<number, string> = {
  400: 'BadRequest',
  403: 'Forbidden',
  404: 'NotFound',
}

/** mulberry32: a small seeded generator, so that a failing seed can be replayed. */
function rng(seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    chance: (p: number) => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T,
  }
}
type Rng = ReturnType<typeof rng>

const ADDRESSES = [
  '10.1.2.3',
  '10.0.0.1',
  '10.9.9.9',
  '203.0.113.7',
  '203.0.113.66',
  '198.51.100.9',
  '192.0.2.5',
  '192.168.1.1',
  '0.0.0.0',
  '255.255.255.255',
  '010.0.0.1',
  '0x0a.0.0.1',
  '167772161',
  '10.1',
  '10.0.0.256',
  '1.2.3.4.5',
  '::1',
  '::',
  '1::',
  ':::',
  '2001:db8::1',
  '2001:DB8::A',
  '2001:db8:bad::1',
  'fd00::5',
  'fe80::1%eth0',
  '::ffff:10.1.2.3',
  '::ffff:203.0.113.7',
  '::ffff:192.168.1.1',
  '::ffff:0a01:0203',
  '::10.1.2.3',
  '0:0:0:0:0:ffff:10.0.0.9',
  '[2001:db8::1]',
  '[2001:db8::1]:443',
  '10.1.2.3:8080',
  '10.1.2.3:99999',
  '[::ffff:10.0.0.1]:80',
  '2001:db8::1:80',
  '[10.0.0.1]',
  'unknown',
  '_hidden',
  'garbage',
  '',
  '  ',
  ' 203.0.113.7 ',
  '\t10.0.0.1',
  '1.2.3.4\u0000',
  '\uff11.2.3.4',
  '12345::1',
  '1:2:3:4:5:6:7:8',
  '1:2:3:4:5:6:7:8:9',
]
const HOSTS = [
  'www.example.com',
  'WWW.Example.COM',
  'www.example.com.',
  'www.example.com:8443',
  'example.org',
  'a.example.org',
  'a.b.example.org',
  'badexample.org',
  'example.org.evil.com',
  '[2001:db8::1]',
  '[2001:db8::1]:443',
  '[2001:DB8::1]',
  '2001:db8::1',
  '192.0.2.9',
  '192.0.2.9:80',
  '010.0.2.9',
  '192.0.2',
  '[2001:db8:1::7]',
  '[::ffff:192.0.2.9]',
  '[::192.0.2.9]',
  'localhost',
  'localhost.',
  'evil.example',
  'under_score.example.com',
  'a b',
  '',
  '.',
  ':80',
  'www.example.com\n',
  '\uff57ww.example.com',
  '\u212aexample.org',
  'dry.example.com',
  'www.example.com,evil.example',
  'www.example.com:',
  '[::1',
  '-.example.org',
  '..example.org',
  `${'a.'.repeat(124)}example.org`,
  `${'a.'.repeat(124)}example.org:65535`,
  `${'a.'.repeat(125)}example.org`,
  `${'A.'.repeat(2000)}example.org`,
  `${'a.'.repeat(2000)}example.org`,
]
const SEPARATORS = [',', ', ', ' ,', ',\t', ',,', ' , ']
const SITES = [
  undefined,
  undefined,
  undefined,
  'fwd',
  'realip',
  'dry',
  'tcp',
  'v6trust',
  'v6trust',
  'nope',
  '',
  'default',
  'constructor',
  '__proto__',
]

/** What a client puts left of its own entry, which a walk must never be moved by. */
const PADDING = [
  () => 'x'.repeat(9000),
  () => ','.repeat(9000),
  () => '10.0.0.1,'.repeat(40),
  () => 'for=10.1.2.3,'.repeat(40),
  () => '"',
  () => 'for="unterminated, ',
  () => '\\"',
  () => `${',, '.repeat(20)}10.0.0.1`,
  () => `${Array.from({ length: 16 }, (_, i) => `a${i}=1;`).join('')}for=10.1.2.3`,
]

function xff(r: Rng): string {
  if (r.chance(0.02))
    return Array.from({ length: r.chance(0.5) ? 40 : 10_000 }, () => '10.0.0.1').join(',')
  const n = r.int(6)
  let out = r.chance(0.08) ? `${r.pick(PADDING)()}${r.pick(SEPARATORS)}` : ''
  for (let i = 0; i < n; i++) out += (i > 0 ? r.pick(SEPARATORS) : '') + r.pick(ADDRESSES)
  return out
}

function forwarded(r: Rng): string {
  const nodes = [
    '192.0.2.60',
    '"192.0.2.60:4711"',
    '"[2001:db8:cafe::17]"',
    '"[2001:db8::1]:80"',
    '[2001:db8::1]',
    'unknown',
    '_hidden',
    '10.1.2.3',
    '"10.1.2.3"',
    '198.51.100.9',
    '"_x:_y"',
    '010.0.0.1',
    '"garbage"',
    '',
  ]
  const hosts = [
    'www.example.com',
    '"www.example.com:443"',
    'evil.example',
    '"a b"',
    'a.example.org',
    '""',
  ]
  const junk = [
    'for="unterminated',
    ';;',
    'for=a;for=b',
    '=x',
    'for',
    'for=1.2.3.4 x',
    'for=\\"',
    'proto=https',
    'host=',
    '"x"=y',
    `${Array.from({ length: 15 }, (_, i) => `e${i}=1;`).join('')}for=192.0.2.60`,
    `${Array.from({ length: 16 }, (_, i) => `e${i}=1;`).join('')}for=192.0.2.60`,
    ', , ,',
  ]
  const n = 1 + r.int(4)
  const elements: string[] = []
  for (let i = 0; i < n; i++) {
    if (r.chance(0.15)) {
      elements.push(r.pick(junk))
      continue
    }
    const pairs: string[] = []
    if (r.chance(0.9)) pairs.push(`${r.pick(['for', 'For', 'FOR'])}=${r.pick(nodes)}`)
    if (r.chance(0.4)) pairs.push(`host=${r.pick(hosts)}`)
    if (r.chance(0.3)) pairs.push('proto=https')
    if (r.chance(0.2)) pairs.push('by=10.1.2.3')
    elements.push(pairs.join(r.pick([';', '; ', ' ;'])))
  }
  const padding = r.chance(0.08) ? `${r.pick(PADDING)()},` : ''
  return padding + elements.join(r.pick([',', ', ']))
}

/** A random CheckRequest as an object with proto field names. */
function randomRequest(r: Rng): Message {
  const headers: Record<string, string> = {}
  const host = r.chance(0.02) ? `${'x'.repeat(9000)}.example.org` : r.pick(HOSTS)
  if (r.chance(0.9)) headers[':authority'] = host
  if (r.chance(0.05)) headers['host'] = r.pick(HOSTS)
  if (r.chance(0.6)) headers['x-forwarded-for'] = xff(r)
  if (r.chance(0.3)) headers['forwarded'] = forwarded(r)
  if (r.chance(0.25))
    headers['x-forwarded-host'] = r.chance(0.2)
      ? `${r.pick(HOSTS)}, ${r.pick(HOSTS)}`
      : r.pick(HOSTS)
  if (r.chance(0.2))
    headers['x-real-ip'] = r.chance(0.2)
      ? `${r.pick(ADDRESSES)},${r.pick(ADDRESSES)}`
      : r.pick(ADDRESSES)
  if (r.chance(0.1)) headers['x-client-ip'] = r.pick(ADDRESSES)
  if (r.chance(0.2))
    headers['x-health'] = r.pick([
      SECRET,
      `${SECRET}x`,
      '',
      `${SECRET},${SECRET}`,
      SECRET.toUpperCase(),
    ])
  if (r.chance(0.2))
    headers['x-request-id'] = r.pick(['abc', 'line\nbreak', '\u2028', 'x'.repeat(300)])
  if (r.chance(0.05)) headers['x-big'] = 'y'.repeat(1 << 20)
  const path = r.pick(['/healthz', '/healthz?probe=1', '/other', '', '/HEALTHZ'])
  const site = r.pick(SITES)
  const http: Message = { method: 'GET', path }
  if (r.chance(0.85)) http.host = r.chance(0.1) ? '' : host
  if (r.chance(0.2)) {
    // encode_raw_headers: one entry per line, repeated headers split into several lines
    const lines: Message[] = []
    for (const [key, value] of Object.entries(headers)) {
      const parts = key === 'x-real-ip' || key === 'x-forwarded-for' ? value.split(',') : [value]
      for (const part of parts) lines.push({ key, raw_value: Buffer.from(part, 'utf8') })
    }
    http.header_map = { headers: lines }
  } else {
    http.headers = headers
  }
  const attributes: Message = {}
  if (r.chance(0.95))
    attributes.source = {
      address: { socket_address: { address: r.pick(ADDRESSES), port_value: r.int(65536) } },
    }
  if (r.chance(0.95)) attributes.request = { http }
  if (site !== undefined) attributes.context_extensions = { site }
  return { attributes }
}

/** Byte-level damage: flips, truncation, duplication, unknown fields, deep groups. */
function mutate(r: Rng, bytes: Buffer): Buffer {
  let out = Buffer.from(bytes)
  const rounds = 1 + r.int(4)
  for (let i = 0; i < rounds; i++) {
    switch (r.int(6)) {
      case 0:
        if (out.length > 0) {
          const at = r.int(out.length)
          out[at] = (out[at] ?? 0) ^ (1 << r.int(8))
        }
        break
      case 1:
        out = out.subarray(0, r.int(out.length + 1))
        break
      case 2: {
        const at = r.int(out.length + 1)
        const len = r.int(Math.min(64, out.length - at) + 1)
        out = Buffer.concat([out.subarray(0, at), out.subarray(at, at + len), out.subarray(at)])
        break
      }
      case 3:
        // unknown field 99 (varint) and 98 (bytes) at the top level
        out = Buffer.concat([
          Buffer.from([0x98, 0x06, r.int(128), 0x92, 0x06, 0x02, 0x01, 0x02]),
          out,
        ])
        break
      case 4: {
        // a deep nest of start-group keys for field 97
        const depth = 1 + r.int(64)
        const open = Buffer.alloc(depth * 2, 0)
        for (let d = 0; d < depth; d++) open.writeUInt16BE(0x8b06, d * 2)
        out = Buffer.concat([open, out])
        break
      }
      default:
        out = Buffer.from(Array.from({ length: r.int(64) }, () => r.int(256)))
    }
  }
  return out
}

interface Observed {
  decision: string
  reason: string
  site: string
  mode: string
  client: string | undefined
  kind: 'ok' | 'denied'
  status: number | undefined
  set: string[]
  remove: string[]
}

function observed(response: Buffer): Observed {
  const a: Message = official.decodeResponse(response)
  const meta: Record<string, string> = {}
  for (const [k, v] of Object.entries(a.dynamic_metadata?.fields ?? {}))
    meta[k] = (v as Message).stringValue
  const kind = a.http_response === 'ok_response' ? 'ok' : 'denied'
  const statusName: string | undefined = a.denied_response?.status?.code
  const statusNumber = Object.entries(STATUS_NAMES).find(([, name]) => name === statusName)?.[0]
  for (const h of a.ok_response?.headers ?? []) {
    if (h.append_action !== 'OVERWRITE_IF_EXISTS_OR_ADD')
      throw new Error(`header ${h.header.key} not overwritten`)
  }
  return {
    decision: meta['decision'] ?? '',
    reason: meta['reason'] ?? '',
    site: meta['site'] ?? '',
    mode: meta['mode'] ?? '',
    client: meta['client'],
    kind,
    status: kind === 'denied' ? Number(statusNumber ?? 0) : undefined,
    set: (a.ok_response?.headers ?? []).map((h: Message) => `${h.header.key}: ${h.header.value}`),
    remove: [...(a.ok_response?.headers_to_remove ?? [])].sort(),
  }
}

export interface FuzzResult {
  readonly seed: number
  readonly cases: number
  readonly mutated: number
  readonly decodeFailures: number
  /** How many cases ended with each reason: the generators must reach every one. */
  readonly reasons: Readonly<Record<string, number>>
  readonly failures: readonly {
    readonly index: number
    readonly problem: string
    readonly request: string
  }[]
}

const WANTED: readonly string[] = [
  ':authority',
  'host',
  'x-request-id',
  'x-health',
  ...FORWARDING_HEADERS,
]
const wantedNames = compileHeaderNames(WANTED)

/** What decode must read from a request object: SPEC's reading, with the address parsed. */
function expectedInput(m: Message) {
  const input = specInput(m, WANTED)
  // decode parses the peer's bytes; the string parser must give the same address.
  return { peer: input.peer, peerIp: parseIp(input.peer), site: input.site, http: input.http }
}

export function runFuzz(
  count: number,
  seed: number,
  onProgress?: (done: number) => void,
): FuzzResult {
  const policy = compilePolicy(
    parsePolicy(FUZZ_POLICY, 'fuzz-policy.yaml', { FUZZ_SECRET: SECRET }),
  )
  const reference = new ReferenceEvaluator(FUZZ_POLICY, SECRET)
  const fixtures = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.bin'))
    .map((f) => readFileSync(join(FIXTURES, f)))
  const r = rng(seed)
  const failures: { index: number; problem: string; request: string }[] = []
  let mutated = 0
  let decodeFailures = 0
  const reasons: Record<string, number> = {}
  for (let i = 0; i < count; i++) {
    const fromFixture = r.chance(0.1)
    const message = fromFixture ? undefined : randomRequest(r)
    let bytes = message ? official.encodeRequest(message) : (r.pick(fixtures) as Buffer)
    const damaged = r.chance(0.3)
    if (damaged) {
      bytes = mutate(r, bytes)
      mutated++
    }
    const fail = (problem: string) => {
      if (failures.length < 50)
        failures.push({ index: i, problem, request: bytes.toString('base64') })
    }
    try {
      const input = decode(bytes, wantedNames)
      if (input === undefined) decodeFailures++
      if (message && !damaged) {
        const want = expectedInput(message)
        const got = JSON.stringify(plainInput(input), mapReplacer)
        if (got !== JSON.stringify(want, mapReplacer))
          fail(
            `decode: got ${got.slice(0, 300)} want ${JSON.stringify(want, mapReplacer).slice(0, 300)}`,
          )
      }
      const got = observed(check(policy, bytes).response)
      reasons[got.reason] = (reasons[got.reason] ?? 0) + 1
      const want: ReferenceAnswer = reference.evaluate(input)
      const diff = (Object.keys(want) as (keyof ReferenceAnswer)[]).filter(
        (k) => JSON.stringify(got[k]) !== JSON.stringify(want[k]),
      )
      if (diff.length > 0)
        fail(
          `${diff.map((k) => `${k}: got ${JSON.stringify(got[k])} want ${JSON.stringify(want[k])}`).join('; ')}`,
        )
    } catch (err) {
      fail(`threw: ${(err as Error).stack ?? err}`)
    }
    if (onProgress && (i + 1) % 100_000 === 0) onProgress(i + 1)
  }
  return { seed, cases: count, mutated, decodeFailures, reasons, failures }
}

/** decode's answer as plain data: its peer and path are getters, which JSON.stringify would not see. */
function plainInput(input: RequestInput | undefined) {
  const http = input?.http
  return (
    input && {
      peer: input.peer,
      peerIp: input.peerIp,
      site: input.site,
      http: http && { authority: http.authority, path: http.path, headers: http.headers },
    }
  )
}

function mapReplacer(_key: string, value: unknown): unknown {
  if (value instanceof HeaderValues) return Object.fromEntries(value.entries().sort())
  return value instanceof Map ? Object.fromEntries([...value.entries()].sort()) : value
}
