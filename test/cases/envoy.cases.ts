// examples/policy.yaml against the 13 Envoy fixtures (test/fixtures/envoy-v3: real requests as
// Envoy and Istio send them), with the answer an operator should expect, and the example's
// sites, health check and dry run asked the same way.

import { join } from 'node:path'
import { ROOT } from '../support/protos.js'
import { fixture, http, raw } from './request.js'
import { type Case, type CaseGroup, filePolicy, forwardingExcept } from './suite.js'

// The example's secret comes from its env default: the environment is empty.
const EXAMPLE = filePolicy('examples/policy.yaml', join(ROOT, 'examples', 'policy.yaml'), 'secret')

// x-real-ip is the example's clientIpHeader: set to the client, never removed.
const UNTRUSTED_PEER = forwardingExcept('x-real-ip')
const TRUSTED_PEER = forwardingExcept(
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-real-ip',
)

/** An allowed fixture: the client written into x-real-ip, the untrusted forwarding headers gone. */
function allowedFixture(
  name: string,
  reason: 'host_allowed' | 'host_cidr' | 'health_check',
  client: string,
  site = 'default',
  remove = UNTRUSTED_PEER,
): Case {
  return {
    name: `${name}: ${reason}`,
    request: fixture(name),
    want: { decision: 'allow', reason, site, client, set: [`x-real-ip: ${client}`], remove },
  }
}

function deniedFixture(name: string, client: string): Case {
  return {
    name: `${name}: host_not_allowed`,
    request: fixture(name),
    want: {
      decision: 'deny',
      reason: 'host_not_allowed',
      status: 403,
      client,
      set: [],
      remove: [],
    },
  }
}

/** The fixtures, each with the answer examples/policy.yaml gives it. */
export const FIXTURE_CASES: readonly Case[] = [
  allowedFixture('01-ipv4-direct-host', 'host_allowed', '198.51.100.23'),
  allowedFixture('02-ipv6-peer', 'host_allowed', '2001:db8:85a3::8a2e:370:7334'),
  allowedFixture('03-authority-with-port', 'host_allowed', '203.0.113.14'),
  allowedFixture('04-elb-healthcheck-node-ip-host', 'host_cidr', '10.0.3.77'),
  allowedFixture('05-k8s-probe-health-header', 'health_check', '10.0.12.34'),
  allowedFixture(
    '06-trusted-proxy-chain-xff',
    'host_allowed',
    '203.0.113.7',
    'default',
    TRUSTED_PEER,
  ),
  // The proxy sends only Forwarded, which the example does not trust: the client is the peer.
  allowedFixture('07-forwarded-rfc7239', 'host_allowed', '10.1.2.3', 'default', TRUSTED_PEER),
  allowedFixture('08-spoofed-client-ip-headers', 'host_allowed', '198.51.100.200'),
  allowedFixture('09-context-extensions-site', 'host_allowed', '203.0.113.50', 'blog'),
  // A mesh-internal name is not among the example's hosts.
  deniedFixture('10-istio-mtls-principal', '10.244.1.23'),
  allowedFixture('11-header-map-raw-values', 'host_allowed', '198.51.100.23'),
  allowedFixture('12-extra-fields-tls-metadata-body', 'host_allowed', '203.0.113.88'),
  deniedFixture('13-istio-docs-real-sample', '10.44.0.22'),
]

const exampleCases: CaseGroup = {
  policy: EXAMPLE,
  cases: [
    ...FIXTURE_CASES,
    {
      name: 'a shop request through the CDN and the internal load balancer',
      request: http({
        peer: '10.1.2.3',
        authority: 'web.internal:8080',
        headers: {
          'x-forwarded-for': '203.0.113.7, 10.1.9.9',
          'x-forwarded-host': 'shop.example.com',
        },
      }),
      want: {
        decision: 'allow',
        reason: 'host_allowed',
        client: '203.0.113.7',
        set: ['x-real-ip: 203.0.113.7'],
        remove: TRUSTED_PEER,
      },
    },
    {
      name: "the blog does not answer for the top level's hosts",
      request: http({ peer: '203.0.113.50', authority: 'www.example.com', site: 'blog' }),
      want: {
        decision: 'deny',
        reason: 'host_not_allowed',
        site: 'blog',
        status: 403,
        client: '203.0.113.50',
      },
    },
    {
      name: 'internal-api: an internal client, in dry run',
      request: http({
        peer: '10.2.0.5',
        authority: 'api.internal.example.com',
        site: 'internal-api',
      }),
      want: {
        decision: 'allow',
        reason: 'host_allowed',
        site: 'internal-api',
        mode: 'dry_run',
        client: '10.2.0.5',
      },
    },
    {
      name: 'internal-api: a client outside clientCidrs.allow is denied in dry run only',
      request: http({
        peer: '198.51.100.23',
        authority: 'api.internal.example.com',
        site: 'internal-api',
      }),
      want: {
        decision: 'deny',
        reason: 'client_not_allowed',
        site: 'internal-api',
        mode: 'dry_run',
        client: '198.51.100.23',
        set: ['x-real-ip: 198.51.100.23'],
        remove: UNTRUSTED_PEER,
      },
    },
    {
      name: "the probe's secret on another path is no health check",
      request: http({
        peer: '10.0.12.34',
        authority: '10.244.2.15:8080',
        headers: { 'x-health': 'secret' },
        path: '/admin/',
      }),
      want: { decision: 'deny', reason: 'host_not_allowed', status: 403, client: '10.0.12.34' },
    },
    {
      name: 'a wrong secret on the probe path is no health check',
      request: http({
        peer: '10.0.12.34',
        authority: '10.244.2.15:8080',
        headers: { 'x-health': 'Secret' },
        path: '/health-check/',
      }),
      want: { decision: 'deny', reason: 'host_not_allowed', status: 403, client: '10.0.12.34' },
    },
    {
      name: 'x-forwarded-host from an untrusted client is not believed',
      request: http({
        peer: '198.51.100.23',
        authority: 'evil.example',
        headers: { 'x-forwarded-host': 'www.example.com' },
      }),
      want: { decision: 'deny', reason: 'host_not_allowed', status: 403, client: '198.51.100.23' },
    },
    {
      name: 'an unknown site',
      request: http({ authority: 'www.example.com', site: 'no-such-site', peer: '198.51.100.23' }),
      want: { decision: 'deny', reason: 'unknown_site', status: 403, client: '198.51.100.23' },
    },
    {
      name: 'an invalid Host',
      request: http({ authority: 'www.example.com:x', peer: '198.51.100.23' }),
      want: { decision: 'deny', reason: 'invalid_host', status: 400, client: '198.51.100.23' },
    },
    {
      name: 'bytes that are not a CheckRequest',
      request: raw(Buffer.from('GET / HTTP/1.1\r\n\r\n')),
      want: { decision: 'deny', reason: 'invalid_request', status: 400 },
    },
  ],
}

export const ENVOY_CASES: readonly CaseGroup[] = [exampleCases]
