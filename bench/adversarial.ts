// The adversarial part of npm run bench: for each input shape a client controls (long runs of
// dots, thousands of elements, many hops, headers up to --max-header-bytes), check() per call
// against a typical request, the two measured side by side in the same run. SPEC "Bounded work":
// no shape may cost more than a few times a typical Check (target: 3x).

import { DEFAULT_LIMITS } from '../src/decision/types.js'
import { check } from '../src/grpc-authz/check.js'
import { compilePolicy } from '../src/policy/compile.js'
import { parsePolicy } from '../src/policy/load.js'
import { type Message, ours } from '../test/support/protos.js'
import { measure } from './inprocess.js'

const POLICY = `version: 1
trustedProxies: [10.1.0.0/16]
trustedHeaders: [x-forwarded-for, x-forwarded-host, x-forwarded-proto]
allowedHosts: [www.example.com, .example.org, .a.example.net]
allowedCidrNets: [10.0.0.0/16]
clientCidrs: { deny: [192.0.2.0/24] }
clientIpHeader: x-real-ip
sites:
  fwd:
    trustedHeaders: [forwarded]
  realip:
    trustedHeaders: [x-real-ip]
`

const LIMIT = DEFAULT_LIMITS.maxHeaderBytes
const HOPS = DEFAULT_LIMITS.maxForwardedHops

/** A CheckRequest from a trusted proxy (10.1.2.3) with Envoy's usual headers and these. */
function request(authority: string, extra: Record<string, string>, site?: string): Buffer {
  const headers: Record<string, string> = {
    ':authority': authority,
    ':method': 'GET',
    ':path': '/products/42?ref=home',
    ':scheme': 'https',
    'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36',
    accept: 'text/html,application/xhtml+xml',
    'x-forwarded-proto': 'https',
    'x-request-id': '5f0c3c1e-8b2a-4a51-9d1e-0d1c2b3a4f5e',
    ...extra,
  }
  const message: Message = {
    attributes: {
      source: { address: { socket_address: { address: '10.1.2.3', port_value: 51234 } } },
      request: { http: { method: 'GET', path: '/products/42', host: authority, headers } },
      ...(site ? { context_extensions: { site } } : {}),
    },
  }
  return ours.encodeRequest(message)
}

/** `unit` repeated to at most `bytes` characters. */
function fill(unit: string, bytes: number): string {
  return unit.repeat(Math.floor(bytes / unit.length))
}

const dotted = fill('a.', LIMIT - 20).slice(0, -1)

export const SHAPES: readonly { name: string; bytes: Buffer }[] = [
  { name: 'Host: 8 KiB of a.a.a… (no match)', bytes: request(dotted, {}) },
  {
    name: 'Host: 8 KiB of a.a.a….example.org (match)',
    bytes: request(`${dotted}.example.org`, {}),
  },
  { name: 'Host: 8 KiB of A.A.A… (upper case)', bytes: request(dotted.toUpperCase(), {}) },
  { name: 'Host: one 8 KiB label', bytes: request(fill('a', LIMIT - 20), {}) },
  {
    name: 'Host: 8 KiB of digits and dots',
    bytes: request(fill('1.', LIMIT - 20).slice(0, -1), {}),
  },
  {
    name: 'x-forwarded-host: 8 KiB of a.a.a…',
    bytes: request('internal', { 'x-forwarded-host': dotted }),
  },
  {
    name: 'x-forwarded-host: 4,000 elements',
    bytes: request('internal', { 'x-forwarded-host': fill('a,', LIMIT - 2).slice(0, -1) }),
  },
  {
    name: 'forwarded host=: 8 KiB of a.a.a…',
    bytes: request('internal', { forwarded: `for=198.51.100.7;host=${dotted}` }, 'fwd'),
  },
  {
    name: 'forwarded: 2,700 elements',
    bytes: request('internal', { forwarded: fill('for=a,', LIMIT - 20) }, 'fwd'),
  },
  {
    name: 'forwarded: 8 KiB padding left of the client',
    bytes: request(
      'www.example.com',
      { forwarded: `${fill('x', LIMIT - 40)},for=198.51.100.7` },
      'fwd',
    ),
  },
  {
    name: `forwarded: ${HOPS} trusted hops`,
    bytes: request(
      'www.example.com',
      { forwarded: `for=198.51.100.7,${fill('for=10.1.9.9,', 13 * HOPS).slice(0, -1)}` },
      'fwd',
    ),
  },
  {
    name: 'x-forwarded-for: 8 KiB padding left of the client',
    bytes: request('www.example.com', {
      'x-forwarded-for': `${fill('x', LIMIT - 40)},198.51.100.7`,
    }),
  },
  {
    name: 'x-forwarded-for: 8 KiB of trusted hops',
    bytes: request('www.example.com', { 'x-forwarded-for': fill('10.1.9.9,', LIMIT).slice(0, -1) }),
  },
  {
    name: 'x-forwarded-for: 8 KiB of commas',
    bytes: request('www.example.com', {
      'x-forwarded-for': `${fill(',', LIMIT - 20)}198.51.100.7`,
    }),
  },
  {
    name: 'x-real-ip: 8 KiB',
    bytes: request('www.example.com', { 'x-real-ip': fill('1', LIMIT) }, 'realip'),
  },
  {
    name: "forwarded: 8 KiB of commas, then the proxy's element",
    bytes: request(
      'internal',
      { forwarded: `${fill(',', LIMIT - 60)}for=198.51.100.7;host=www.example.org` },
      'fwd',
    ),
  },
  {
    name: "forwarded: elements of 150 parameters, then the proxy's",
    bytes: request(
      'internal',
      {
        forwarded: `${fill(`${Array.from({ length: 150 }, (_, i) => `e${i}=v`).join(';')},`, LIMIT - 60)}for=198.51.100.7;host=www.example.org`,
      },
      'fwd',
    ),
  },
  {
    name: 'x-forwarded-for: 8 KiB of commas right of a trusted entry',
    bytes: request('www.example.com', {
      'x-forwarded-for': `198.51.100.7${fill(',', LIMIT - 40)}10.1.5.5`,
    }),
  },
  {
    name: `x-forwarded-host: ${HOPS} names of 247 characters`,
    bytes: request('internal', {
      'x-forwarded-host': Array.from({ length: HOPS }, () => `${fill('a.', 236)}example.org`).join(
        ',',
      ),
    }),
  },
  {
    name: '200 headers of 40 bytes',
    bytes: request(
      'www.example.com',
      Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`x-pad-${i}`, fill('p', 40)])),
    ),
  },
]

export const TYPICAL = request('www.example.com', { 'x-forwarded-for': '198.51.100.7' })

export interface AdversarialRow {
  readonly shape: string
  readonly bytes: number
  readonly typicalNs: number
  readonly shapeNs: number
}

/** Each shape raced against the typical request in one tinybench run. */
export async function adversarialBench(timeMs: number): Promise<AdversarialRow[]> {
  const policy = compilePolicy(parsePolicy(POLICY, 'adversarial.yaml', {}))
  const rows: AdversarialRow[] = []
  for (const shape of SHAPES) {
    const [typical, hostile] = await measure(
      { typical: () => check(policy, TYPICAL), shape: () => check(policy, shape.bytes) },
      timeMs,
      0,
    )
    if (typical && hostile)
      rows.push({
        shape: shape.name,
        bytes: shape.bytes.length,
        typicalNs: typical.nsPerOp,
        shapeNs: hostile.nsPerOp,
      })
  }
  return rows
}
