// One browser's page request to www.example.com (allowed by examples/policy.yaml), as each
// proxy asks hostguard about it: the URL and node:http's rawHeaders (names as sent, values
// trimmed). Kept free of heavy imports: bench/noop-http-server.ts loads it too.

import type { Dialect } from '../src/http-authz/request.js'

/** The client as the proxy saw it: not a trusted proxy, so the client is the peer. */
export const PEER = '203.0.113.7'
export const AUTHORITY = 'www.example.com'
export const PATH = '/products/42?ref=home'

/** What a desktop Chrome sends for a same-site navigation over HTTP/1.1. */
export const BROWSER_HEADERS: readonly string[] = [
  'User-Agent',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  'Accept',
  'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8',
  'Accept-Encoding',
  'gzip, deflate, br, zstd',
  'Accept-Language',
  'en-GB,en;q=0.9',
  'Cookie',
  'sessionid=k3v9x0f2q8w1m7z4t6y5r2e8; csrftoken=Q2w3E4r5T6y7U8i9O0p1A2s3D4f5G6h7',
  'Referer',
  'https://www.example.com/products',
  'sec-ch-ua',
  '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
  'sec-ch-ua-mobile',
  '?0',
  'sec-ch-ua-platform',
  '"Linux"',
  'Sec-Fetch-Dest',
  'document',
  'Sec-Fetch-Mode',
  'navigate',
  'Sec-Fetch-Site',
  'same-origin',
  'Sec-Fetch-User',
  '?1',
  'Upgrade-Insecure-Requests',
  '1',
]

export interface AuthzRequest {
  readonly url: string
  readonly rawHeaders: readonly string[]
}

/**
 * Each dialect's request, with the headers its shipped configuration sets before the client's
 * (nginx auth_request with proxy_http_version 1.1 and an empty Connection; Caddy's forward_auth
 * adds its X-Forwarded-*; Traefik's forwardAuth its X-Forwarded-*, its peer last in
 * X-Forwarded-For; Envoy's http_service the original Host, path in the URL, its own hop in XFF).
 */
export const DIALECT_REQUESTS: Record<Dialect, AuthzRequest> = {
  nginx: {
    url: '/nginx/default',
    rawHeaders: [
      'Host',
      'hostguard',
      'X-Hostguard-Peer',
      PEER,
      'X-Hostguard-Authority',
      AUTHORITY,
      'X-Hostguard-Path',
      PATH,
      ...BROWSER_HEADERS,
    ],
  },
  caddy: {
    url: '/caddy/default',
    rawHeaders: [
      'Host',
      'hostguard:9003',
      'X-Hostguard-Peer',
      PEER,
      'X-Hostguard-Authority',
      AUTHORITY,
      'X-Hostguard-Path',
      PATH,
      'X-Forwarded-For',
      PEER,
      'X-Forwarded-Host',
      AUTHORITY,
      'X-Forwarded-Method',
      'GET',
      'X-Forwarded-Proto',
      'https',
      'X-Forwarded-Uri',
      PATH,
      ...BROWSER_HEADERS,
    ],
  },
  traefik: {
    url: '/traefik/default',
    rawHeaders: [
      'Host',
      'hostguard:9003',
      ...BROWSER_HEADERS,
      'X-Forwarded-For',
      PEER,
      'X-Forwarded-Host',
      AUTHORITY,
      'X-Forwarded-Method',
      'GET',
      'X-Forwarded-Port',
      '443',
      'X-Forwarded-Proto',
      'https',
      'X-Forwarded-Server',
      'traefik-5d8f7',
      'X-Forwarded-Uri',
      PATH,
      'X-Real-Ip',
      PEER,
    ],
  },
  envoy: {
    url: `/envoy/default${PATH}`,
    rawHeaders: [
      'host',
      AUTHORITY,
      ...BROWSER_HEADERS.map((v, i) => (i % 2 === 0 ? v.toLowerCase() : v)),
      'x-forwarded-for',
      PEER,
      'x-forwarded-proto',
      'https',
      'x-request-id',
      '4f1c2a8e-7b3d-4e51-9c0a-2d6f8b1e3a77',
      'x-hostguard-peer',
      PEER,
      'x-envoy-expected-rq-timeout-ms',
      '200',
    ],
  },
}
