// SPEC's questions, one case each: the evaluation order step by step, the answer, and the details
// that are easy to get wrong (/SPEC.md). Expected answers are written from SPEC, not from a run.

import type { Reason } from '../../src/decision/types.js'
import { http, PEER, raw, tcp } from './request.js'
import { type CaseGroup, FORWARDING, forwardingExcept, inlinePolicy, type Want } from './suite.js'

const SECRET = 's3cret'

const SPEC = inlinePolicy(
  'spec',
  `version: 1
trustedProxies: [10.1.0.0/16, "fd00::/8"]
trustedHeaders: [x-forwarded-for, x-forwarded-host, x-forwarded-proto]
allowedHosts: [www.example.com, .example.org, "[2001:db8::1]"]
allowedCidrNets: [10.0.0.0/16, "2001:db8:1::/48"]
clientCidrs: { deny: [203.0.113.66] }
healthCheck: { header: x-health, value: { env: HEALTH_SECRET }, paths: [/health-check/] }
clientIpHeader: x-real-ip
deny: { status: 404 }
sites:
  internal:
    clientCidrs: { allow: [10.0.0.0/8], deny: [10.66.0.0/16] }
  allowonly:
    clientCidrs: { allow: [10.0.0.0/8] }
  anypath:
    healthCheck: { header: x-health, value: { env: HEALTH_SECRET } }
  fwd:
    trustedHeaders: [forwarded]
    clientCidrs: null
  realip:
    trustedHeaders: [x-real-ip]
    clientIpHeader: x-client-ip
  tcp:
    clientCidrs: { allow: [192.0.2.0/24] }
  v6proxies:
    trustedProxies: ["::/0"]
  dry:
    dryRun: true
  plain:
    clientIpHeader: null
  fwdclient:
    clientIpHeader: x-forwarded-for
  anyhost:
    allowedHosts: ["*"]
  mappedrange:
    trustedProxies: ["::ffff:10.1.0.0/112"]
  v4everything:
    allowedCidrNets: [0.0.0.0/0]
`,
  SECRET,
)

// The top level's header changes: from an untrusted peer every forwarding header goes but the
// clientIpHeader, which is set instead; from a trusted proxy the trusted ones stay.
const UNTRUSTED_PEER = forwardingExcept('x-real-ip')
const TRUSTED_PEER = forwardingExcept(
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-real-ip',
)
const PROXY = '10.1.2.3'
const INTERNAL_AUTHORITY = 'web.default.svc.cluster.local:8080'

function allowed(reason: Reason, client: string | undefined, more: Partial<Want> = {}): Want {
  return { decision: 'allow', reason, client, ...more }
}

function denied(
  reason: Reason,
  status: number,
  client: string | undefined,
  more: Partial<Want> = {},
): Want {
  return { decision: 'deny', reason, status, client, ...more }
}

/** A deny of a site in dry run: answered as an allow, so no status. */
function deniedInDryRun(
  reason: Reason,
  client: string | undefined,
  more: Partial<Want> = {},
): Want {
  return { decision: 'deny', reason, mode: 'dry_run', client, ...more }
}

const www = (more: Parameters<typeof http>[0] = {}) =>
  http({ authority: 'www.example.com', ...more })
const probe = (value: string, path = '/health-check/', site?: string) =>
  http({
    peer: '203.0.113.66',
    authority: '10.244.2.15:8080',
    headers: { 'x-health': value },
    path,
    ...(site === undefined ? {} : { site }),
  })
const viaProxy = (headers: Record<string, string>, site?: string) =>
  http({
    peer: PROXY,
    authority: INTERNAL_AUTHORITY,
    headers,
    ...(site === undefined ? {} : { site }),
  })

const specCases: CaseGroup = {
  policy: SPEC,
  cases: [
    // 1. Site
    {
      name: 'site: none named is the top level, reported as default',
      request: www(),
      want: allowed('host_allowed', PEER, { set: [`x-real-ip: ${PEER}`], remove: UNTRUSTED_PEER }),
    },
    {
      name: 'site: a named site decides with its own rules',
      request: www({ site: 'internal', peer: '10.2.3.4' }),
      want: allowed('host_allowed', '10.2.3.4', { site: 'internal' }),
    },
    {
      name: "site: an unknown name denies unknown_site with the top level's status",
      request: www({ site: 'nope' }),
      want: denied('unknown_site', 404, PEER),
    },
    {
      name: 'site: an empty name is unknown',
      request: www({ site: '' }),
      want: denied('unknown_site', 404, PEER),
    },
    {
      name: 'site: "default" names no site (it is how the top level is reported)',
      request: www({ site: 'default' }),
      want: denied('unknown_site', 404, PEER),
    },
    {
      name: 'site: "__proto__" is no site',
      request: www({ site: '__proto__' }),
      want: denied('unknown_site', 404, PEER),
    },
    {
      name: 'site: "constructor" is no site',
      request: www({ site: 'constructor' }),
      want: denied('unknown_site', 404, PEER),
    },

    // 2. Health check
    {
      name: 'health check: the secret on its path allows before the client and host rules',
      request: probe(SECRET),
      want: allowed('health_check', '203.0.113.66'),
    },
    {
      name: 'health check: the path is matched without its query string',
      request: probe(SECRET, '/health-check/?probe=1'),
      want: allowed('health_check', '203.0.113.66'),
    },
    {
      name: 'health check: paths match exactly (another case is another path)',
      request: probe(SECRET, '/Health-Check/'),
      want: denied('client_denied', 404, '203.0.113.66'),
    },
    {
      name: 'health check: the secret on another path goes on to the client rules',
      request: probe(SECRET, '/admin/'),
      want: denied('client_denied', 404, '203.0.113.66'),
    },
    {
      name: 'health check: a wrong secret',
      request: probe('s3creT'),
      want: denied('client_denied', 404, '203.0.113.66'),
    },
    {
      name: 'health check: a prefix of the secret',
      request: probe('s3cre'),
      want: denied('client_denied', 404, '203.0.113.66'),
    },
    {
      name: 'health check: the secret and more',
      request: probe('s3cret!'),
      want: denied('client_denied', 404, '203.0.113.66'),
    },
    {
      name: 'health check: the secret twice (a repeated header, comma-joined)',
      request: probe(`${SECRET},${SECRET}`),
      want: denied('client_denied', 404, '203.0.113.66'),
    },
    {
      name: 'health check: an empty value',
      request: probe(''),
      want: denied('client_denied', 404, '203.0.113.66'),
    },
    {
      name: 'health check: without paths, any path',
      request: probe(SECRET, '/anything', 'anypath'),
      want: allowed('health_check', '203.0.113.66', { site: 'anypath' }),
    },

    // 3. Client address
    {
      name: 'client: x-forwarded-for from an untrusted peer is ignored, and removed',
      request: www({ headers: { 'x-forwarded-for': '10.1.9.9' } }),
      want: allowed('host_allowed', PEER, { set: [`x-real-ip: ${PEER}`], remove: UNTRUSTED_PEER }),
    },
    {
      name: 'client: from a trusted proxy, the first untrusted address from the right',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': '203.0.113.7, 10.1.9.9' } }),
      want: allowed('host_allowed', '203.0.113.7', {
        set: ['x-real-ip: 203.0.113.7'],
        remove: TRUSTED_PEER,
      }),
    },
    {
      name: 'client: when every address is a trusted proxy, the leftmost',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': '10.1.9.9, 10.1.5.5' } }),
      want: allowed('host_allowed', '10.1.9.9'),
    },
    {
      name: 'client: what lies left of the first untrusted entry is never read',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': 'garbage, 203.0.113.7' } }),
      want: allowed('host_allowed', '203.0.113.7'),
    },
    {
      name: 'client: a non-address entry ends the walk; unknown, it is denied by a deny list',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': '203.0.113.7, garbage' } }),
      want: denied('client_denied', 404, undefined),
    },
    {
      name: 'client: an IPv4 entry may carry a port',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': '203.0.113.7:5678' } }),
      want: allowed('host_allowed', '203.0.113.7'),
    },
    {
      name: 'client: a bracketed IPv6 entry may carry a port',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': '[2001:db8::7]:80' } }),
      want: allowed('host_allowed', '2001:db8::7'),
    },
    {
      name: 'client: a bare IPv6 entry',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': '2001:DB8:0::7' } }),
      want: allowed('host_allowed', '2001:db8::7'),
    },
    {
      name: 'client: an IPv4-mapped IPv6 entry is its IPv4 address',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': '::ffff:203.0.113.7' } }),
      want: allowed('host_allowed', '203.0.113.7'),
    },
    {
      name: 'client: an IPv4-mapped peer is matched as its IPv4 address',
      request: www({ peer: `::ffff:${PROXY}`, headers: { 'x-forwarded-for': '203.0.113.7' } }),
      want: allowed('host_allowed', '203.0.113.7'),
    },
    {
      name: 'client: entries are trimmed of spaces and tabs, and empty ones skipped',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': '203.0.113.7 ,\t,, 10.1.9.9' } }),
      want: allowed('host_allowed', '203.0.113.7'),
    },
    {
      name: 'client: a legacy IPv4 spelling is not an address (peer 010.0.0.1)',
      request: www({ peer: '010.0.0.1' }),
      want: denied('client_denied', 404, undefined),
    },
    {
      name: 'client: a legacy IPv4 spelling is not an address (entry 0x0a.0.0.1)',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': '0x0a.0.0.1' } }),
      want: denied('client_denied', 404, undefined),
    },
    {
      name: 'client: found by the walk in clientCidrs.deny',
      request: www({ peer: PROXY, headers: { 'x-forwarded-for': '203.0.113.66' } }),
      want: denied('client_denied', 404, '203.0.113.66'),
    },
    {
      name: 'client: no peer at all, with a deny list (it cannot be shown to be outside)',
      request: www({ peer: '' }),
      want: denied('client_denied', 404, undefined),
    },
    {
      name: 'client: more entries than --max-forwarded-hops, all trusted, leave it unknown',
      request: www({
        peer: PROXY,
        headers: { 'x-forwarded-for': Array(40).fill('10.1.9.9').join(', ') },
      }),
      want: denied('client_denied', 404, undefined),
    },
    {
      name: 'client: an IPv6 range holds no IPv4 peer (::/0 is not 0.0.0.0/0)',
      request: www({ site: 'v6proxies', peer: PROXY, headers: { 'x-forwarded-for': '10.1.9.9' } }),
      want: allowed('host_allowed', PROXY, { site: 'v6proxies', remove: UNTRUSTED_PEER }),
    },
    {
      name: 'client: an IPv6 peer in an IPv6 range is a trusted proxy',
      request: www({ peer: 'fd00::5', headers: { 'x-forwarded-for': '203.0.113.7' } }),
      want: allowed('host_allowed', '203.0.113.7', { remove: TRUSTED_PEER }),
    },
    {
      name: 'client: a range written in mapped form with a prefix of 96 or more is its IPv4 range',
      request: www({
        site: 'mappedrange',
        peer: PROXY,
        headers: { 'x-forwarded-for': '203.0.113.7' },
      }),
      want: allowed('host_allowed', '203.0.113.7', { site: 'mappedrange', remove: TRUSTED_PEER }),
    },
    {
      name: 'client: padding left of the first untrusted entry, past --max-header-bytes, is never read',
      request: www({
        peer: PROXY,
        headers: { 'x-forwarded-for': `${'x'.repeat(9000)}, 203.0.113.7, 10.1.9.9` },
      }),
      want: allowed('host_allowed', '203.0.113.7'),
    },
    {
      name: 'client: a trusted x-real-ip names the client',
      request: www({ site: 'realip', peer: PROXY, headers: { 'x-real-ip': '203.0.113.7' } }),
      want: allowed('host_allowed', '203.0.113.7', {
        site: 'realip',
        set: ['x-client-ip: 203.0.113.7'],
        remove: forwardingExcept('x-real-ip', 'x-client-ip'),
      }),
    },
    {
      name: 'client: a single-address header with several values leaves it unknown',
      request: www({
        site: 'realip',
        peer: PROXY,
        headers: { 'x-real-ip': '203.0.113.7,203.0.113.8' },
      }),
      want: denied('client_denied', 404, undefined, { site: 'realip' }),
    },
    {
      name: 'client: clientCidrs.deny is checked before .allow',
      request: www({ site: 'internal', peer: '10.66.1.1' }),
      want: denied('client_denied', 404, '10.66.1.1', { site: 'internal' }),
    },
    {
      name: 'client: outside clientCidrs.allow',
      request: www({ site: 'internal' }),
      want: denied('client_not_allowed', 404, PEER, { site: 'internal' }),
    },
    {
      name: 'client: unknown, with an allow list only',
      request: www({ site: 'allowonly', peer: '' }),
      want: denied('client_not_allowed', 404, undefined, { site: 'allowonly' }),
    },
    {
      name: "client: a site's clientCidrs replaces the top level's as a whole",
      request: www({ site: 'allowonly', peer: '10.0.0.66' }),
      want: allowed('host_allowed', '10.0.0.66', { site: 'allowonly' }),
    },

    // 4. Host
    {
      name: 'host: an allowed name with a port',
      request: http({ authority: 'www.example.com:8443' }),
      want: allowed('host_allowed', PEER),
    },
    {
      name: 'host: matched without regard to case',
      request: http({ authority: 'WWW.Example.COM' }),
      want: allowed('host_allowed', PEER),
    },
    {
      name: 'host: a trailing dot is dropped',
      request: http({ authority: 'www.example.com.' }),
      want: allowed('host_allowed', PEER),
    },
    {
      name: 'host: .example.org matches a subdomain',
      request: http({ authority: 'a.b.example.org' }),
      want: allowed('host_allowed', PEER),
    },
    {
      name: 'host: .example.org matches example.org itself',
      request: http({ authority: 'example.org' }),
      want: allowed('host_allowed', PEER),
    },
    {
      name: 'host: .example.org does not match badexample.org',
      request: http({ authority: 'badexample.org' }),
      want: denied('host_not_allowed', 404, PEER),
    },
    {
      name: 'host: a bracketed IPv6 literal keeps its brackets',
      request: http({ authority: '[2001:db8::1]:443' }),
      want: allowed('host_allowed', PEER),
    },
    {
      name: 'host: another name',
      request: http({ authority: 'evil.example' }),
      want: denied('host_not_allowed', 404, PEER),
    },
    {
      name: 'host: an IPv4 literal inside allowedCidrNets (a load balancer health check)',
      request: http({ authority: '10.0.12.34' }),
      want: allowed('host_cidr', PEER),
    },
    {
      name: 'host: an IP literal with a port inside allowedCidrNets',
      request: http({ authority: '10.0.12.34:8080' }),
      want: allowed('host_cidr', PEER),
    },
    {
      name: 'host: an IPv6 literal inside allowedCidrNets',
      request: http({ authority: '[2001:db8:1::5]' }),
      want: allowed('host_cidr', PEER),
    },
    {
      name: 'host: an IPv4-mapped literal is its IPv4 address',
      request: http({ authority: '[::ffff:10.0.12.34]' }),
      want: allowed('host_cidr', PEER),
    },
    {
      name: "host: a range's network address is in it",
      request: http({ authority: '10.0.0.0' }),
      want: allowed('host_cidr', PEER),
    },
    {
      name: "host: a range's broadcast address is in it",
      request: http({ authority: '10.0.255.255' }),
      want: allowed('host_cidr', PEER),
    },
    {
      name: 'host: 0.0.0.0/0 holds every IPv4 literal',
      request: http({ authority: '203.0.113.9', site: 'v4everything' }),
      want: allowed('host_cidr', PEER, { site: 'v4everything' }),
    },
    {
      name: 'host: 0.0.0.0/0 holds no IPv6 literal',
      request: http({ authority: '[2001:db8:1::5]', site: 'v4everything' }),
      want: denied('host_not_allowed', 404, PEER, { site: 'v4everything' }),
    },
    {
      name: 'host: an IP literal outside allowedCidrNets',
      request: http({ authority: '10.1.0.1' }),
      want: denied('host_not_allowed', 404, PEER),
    },
    {
      name: 'host: a legacy IPv4 spelling is a name, not an address',
      request: http({ authority: '010.0.12.34' }),
      want: denied('host_not_allowed', 404, PEER),
    },
    {
      name: 'host: a path in the Host is invalid, always 400',
      request: http({ authority: 'www.example.com/x' }),
      want: denied('invalid_host', 400, PEER),
    },
    {
      name: 'host: a space in the Host is invalid',
      request: http({ authority: 'a b' }),
      want: denied('invalid_host', 400, PEER),
    },
    {
      name: 'host: an unbracketed IPv6 address is invalid',
      request: http({ authority: '2001:db8::1' }),
      want: denied('invalid_host', 400, PEER),
    },
    {
      name: 'host: an unclosed bracket is invalid',
      request: http({ authority: '[::1' }),
      want: denied('invalid_host', 400, PEER),
    },
    {
      name: 'host: none at all is invalid',
      request: http({}),
      want: denied('invalid_host', 400, PEER),
    },
    {
      name: 'host: the :authority header when http.host is empty',
      request: http({ headers: { ':authority': 'www.example.com' } }),
      want: allowed('host_allowed', PEER),
    },
    {
      name: 'host: the host header when there is no :authority',
      request: http({ headers: { host: 'www.example.com' } }),
      want: allowed('host_allowed', PEER),
    },
    {
      name: 'host: http.host before the :authority header',
      request: http({ host: 'evil.example', headers: { ':authority': 'www.example.com' } }),
      want: denied('host_not_allowed', 404, PEER),
    },
    {
      name: 'host: x-forwarded-host from a trusted peer instead of the authority',
      request: viaProxy({ 'x-forwarded-host': 'www.example.com' }),
      want: allowed('host_allowed', PROXY, { set: [`x-real-ip: ${PROXY}`], remove: TRUSTED_PEER }),
    },
    {
      name: 'host: every element of x-forwarded-host must pass',
      request: viaProxy({ 'x-forwarded-host': 'www.example.com, evil.example' }),
      want: denied('host_not_allowed', 404, PROXY),
    },
    {
      name: 'host: the worst element of x-forwarded-host decides wherever it stands',
      request: viaProxy({ 'x-forwarded-host': 'evil.example, www.example.com' }),
      want: denied('host_not_allowed', 404, PROXY),
    },
    {
      name: 'host: an IP element of x-forwarded-host inside allowedCidrNets',
      request: viaProxy({ 'x-forwarded-host': 'www.example.com, 10.0.0.9' }),
      want: allowed('host_cidr', PROXY),
    },
    {
      name: 'host: an empty x-forwarded-host element is an invalid host',
      request: viaProxy({ 'x-forwarded-host': 'www.example.com,' }),
      want: denied('invalid_host', 400, PROXY),
    },
    {
      name: 'host: x-forwarded-host from an untrusted peer is ignored',
      request: http({
        authority: INTERNAL_AUTHORITY,
        headers: { 'x-forwarded-host': 'www.example.com' },
      }),
      want: denied('host_not_allowed', 404, PEER),
    },
    {
      name: 'host: a trusted peer without x-forwarded-host: the authority',
      request: viaProxy({}),
      want: denied('host_not_allowed', 404, PROXY),
    },
    {
      name: 'host: a trusted forwarded host= (and its for= names the client)',
      request: viaProxy({ forwarded: 'for=192.0.2.60;host=www.example.com' }, 'fwd'),
      want: allowed('host_allowed', '192.0.2.60', {
        site: 'fwd',
        set: ['x-real-ip: 192.0.2.60'],
        remove: forwardingExcept('forwarded', 'x-real-ip'),
      }),
    },
    {
      name: 'host: every host= of the elements walked must pass',
      request: viaProxy(
        { forwarded: 'for=192.0.2.60;host="www.example.com:443", for=10.1.9.9;host=evil.example' },
        'fwd',
      ),
      want: denied('host_not_allowed', 404, '192.0.2.60', { site: 'fwd' }),
    },
    {
      name: "host: a host= left of the client's own element is not read",
      request: http({
        peer: PROXY,
        authority: 'evil.example',
        headers: { forwarded: 'host=www.example.com, for=203.0.113.7' },
        site: 'fwd',
      }),
      want: denied('host_not_allowed', 404, '203.0.113.7', { site: 'fwd' }),
    },
    {
      name: 'host: a malformed forwarded header is an invalid host',
      request: viaProxy({ forwarded: 'host=www.example.com, for="x' }, 'fwd'),
      want: denied('invalid_host', 400, undefined, { site: 'fwd' }),
    },
    {
      name: 'host: forwarded without host=: the authority',
      request: viaProxy({ forwarded: 'for=192.0.2.60' }, 'fwd'),
      want: denied('host_not_allowed', 404, '192.0.2.60', { site: 'fwd' }),
    },
    {
      name: 'host: "*" allows any host',
      request: http({ authority: 'anything.example', site: 'anyhost' }),
      want: allowed('host_allowed', PEER, { site: 'anyhost' }),
    },
    {
      name: 'host: "*" does not allow invalid syntax',
      request: http({ authority: 'a b', site: 'anyhost' }),
      want: denied('invalid_host', 400, PEER, { site: 'anyhost' }),
    },

    // Requests without an HTTP part, and bytes that are not a CheckRequest
    {
      name: 'not HTTP: denied not_http without clientCidrs.allow',
      request: tcp({}),
      want: denied('not_http', 404, PEER),
    },
    {
      name: 'not HTTP: a peer in clientCidrs.allow',
      request: tcp({ site: 'tcp', peer: '192.0.2.9' }),
      want: allowed('tcp_client_allowed', '192.0.2.9', { site: 'tcp' }),
    },
    {
      name: 'not HTTP: a peer outside clientCidrs.allow',
      request: tcp({ site: 'tcp' }),
      want: denied('client_not_allowed', 404, PEER, { site: 'tcp' }),
    },
    {
      name: 'not HTTP: a peer in clientCidrs.deny',
      request: tcp({ peer: '203.0.113.66' }),
      want: denied('client_denied', 404, '203.0.113.66'),
    },
    {
      name: 'not HTTP: no peer, with a deny list',
      request: tcp({ peer: '' }),
      want: denied('client_denied', 404, undefined),
    },
    {
      name: 'not HTTP: no peer, with an allow list',
      request: tcp({ site: 'tcp', peer: '' }),
      want: denied('client_not_allowed', 404, undefined, { site: 'tcp' }),
    },
    {
      name: 'not HTTP: no peer, no client lists',
      request: tcp({ site: 'fwd', peer: '' }),
      want: denied('not_http', 404, undefined, { site: 'fwd' }),
    },
    {
      name: 'not HTTP: an empty message',
      request: raw(Buffer.alloc(0)),
      want: denied('client_denied', 404, undefined),
    },
    {
      name: 'bytes that are not a CheckRequest: 400 invalid_request',
      request: raw(Buffer.from([0x0a, 0xff])),
      want: denied('invalid_request', 400, undefined),
    },

    // The answer
    {
      name: 'answer: an unknown client gets clientIpHeader removed, never set',
      request: www({ site: 'fwd', peer: PROXY, headers: { forwarded: 'for=unknown' } }),
      want: allowed('host_allowed', undefined, {
        site: 'fwd',
        set: [],
        remove: forwardingExcept('forwarded'),
      }),
    },
    {
      name: 'answer: a trusted header used as clientIpHeader is set, not removed',
      request: www({
        site: 'fwdclient',
        peer: PROXY,
        headers: { 'x-forwarded-for': '203.0.113.7' },
      }),
      want: allowed('host_allowed', '203.0.113.7', {
        site: 'fwdclient',
        set: ['x-forwarded-for: 203.0.113.7'],
        remove: forwardingExcept('x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto'),
      }),
    },
    {
      name: 'answer: an untrusted header used as clientIpHeader is set, not removed',
      request: www({ site: 'fwdclient', headers: { 'x-forwarded-for': '203.0.113.7' } }),
      want: allowed('host_allowed', PEER, {
        site: 'fwdclient',
        set: [`x-forwarded-for: ${PEER}`],
        remove: forwardingExcept('x-forwarded-for'),
      }),
    },
    {
      name: 'answer: a site that switches clientIpHeader off sets nothing',
      request: www({ site: 'plain' }),
      want: allowed('host_allowed', PEER, { site: 'plain', set: [], remove: FORWARDING }),
    },
    {
      name: 'answer: dry run answers a deny as an allow, keeping decision, reason and headers',
      request: http({ authority: 'evil.example', site: 'dry' }),
      want: deniedInDryRun('host_not_allowed', PEER, {
        site: 'dry',
        set: [`x-real-ip: ${PEER}`],
        remove: UNTRUSTED_PEER,
      }),
    },
    {
      name: 'answer: dry run answers an invalid host as an allow too',
      request: http({ authority: 'a b', site: 'dry' }),
      want: deniedInDryRun('invalid_host', PEER, { site: 'dry' }),
    },
    {
      name: "answer: dry run is the site's mode, also for what it allows",
      request: www({ site: 'dry' }),
      want: allowed('host_allowed', PEER, { site: 'dry', mode: 'dry_run' }),
    },
  ],
}

const DRY_TOP = inlinePolicy(
  'dry-top-level',
  `version: 1
allowedHosts: [www.example.com]
dryRun: true
sites:
  strict:
    dryRun: false
    deny: { status: 429 }
`,
)

const dryTopCases: CaseGroup = {
  policy: DRY_TOP,
  cases: [
    {
      name: "an unknown site is answered with the top level's dry run",
      request: www({ site: 'nope' }),
      want: deniedInDryRun('unknown_site', PEER),
    },
    {
      name: 'a site that turns dry run off enforces, with its own status',
      request: http({ authority: 'evil.example', site: 'strict' }),
      want: denied('host_not_allowed', 429, PEER, { site: 'strict' }),
    },
    {
      name: 'dry run does not wave through bytes that are not a CheckRequest',
      request: raw(Buffer.from([0x0a, 0xff])),
      want: denied('invalid_request', 400, undefined),
    },
    {
      name: 'the top level in dry run: a deny answered as an allow, the default 403 unused',
      request: http({ authority: 'evil.example' }),
      want: deniedInDryRun('host_not_allowed', PEER, { remove: FORWARDING }),
    },
  ],
}

export const SPEC_CASES: readonly CaseGroup[] = [specCases, dryTopCases]
