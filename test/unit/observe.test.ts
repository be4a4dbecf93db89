import { describe, expect, it } from 'vitest'
import { type DecisionMetrics, DecisionObserver, loggable } from '../../src/decision/observe.js'
import { check } from '../../src/grpc-authz/check.js'
import { policyFrom } from '../support/policy.js'
import { official } from '../support/protos.js'

describe('loggable', () => {
  it.each([
    ['www.example.com', 'www.example.com'],
    ['evil\r\n{"level":30,"msg":"forged"}', 'evil\\u000d\\u000a{"level":30,"msg":"forged"}'],
    ['a\u2028b', 'a\\u2028b'],
    ['\u001b[31mred', '\\u001b[31mred'],
    ['back\\slash', 'back\\u005cslash'],
    ['x'.repeat(300), `${'x'.repeat(256)}…`],
  ])('makes %j safe as %j', (value, expected) => {
    expect(loggable(value)).toBe(expected)
  })
})

function recorder() {
  const counts = new Map<string, number>()
  const durations: string[] = []
  const created: string[] = []
  const metrics: DecisionMetrics = {
    decisions: (site, decision, reason, mode, api) => {
      const key = `${site} ${decision} ${reason} ${mode} ${api}`
      created.push(key)
      return { inc: () => counts.set(key, (counts.get(key) ?? 0) + 1) }
    },
    duration: (decision) => ({ observe: () => durations.push(decision) }),
  }
  const lines: [string, object, string][] = []
  const log = {
    level: 'info',
    isLevelEnabled(level: string) {
      return level === 'info' || this.level === 'debug'
    },
    info: (fields: object, message: string) => lines.push(['info', fields, message]),
    debug: (fields: object, message: string) => lines.push(['debug', fields, message]),
  }
  return { counts, durations, created, metrics, lines, log }
}

const POLICY = policyFrom(
  'version: 1\nallowedHosts: [www.example.com]\nsites:\n  dry: { dryRun: true }\n',
)

function request(host: string, site?: string, path = '/a\u001b[2Jb?token=s3cret'): Buffer {
  return official.encodeRequest({
    attributes: {
      source: { address: { socket_address: { address: '198.51.100.7' } } },
      request: { http: { host, path, headers: { 'x-request-id': 'req-1\nforged' } } },
      ...(site ? { context_extensions: { site } } : {}),
    },
  })
}

describe('DecisionObserver', () => {
  it('resolves every site and reason once, when the policy is prepared', () => {
    const r = recorder()
    new DecisionObserver(r.metrics, r.log, ['grpc']).prepare(POLICY)
    expect(r.created).toHaveLength(2 * 11)
    expect(r.created).toContain('dry deny host_not_allowed dry_run grpc')
    expect(r.created).toContain('dry deny invalid_request enforce grpc')
    expect(r.created).toContain('default allow host_allowed enforce grpc')
  })

  it('exports the series of every front end served, and counts each decision under its api', () => {
    const r = recorder()
    const observer = new DecisionObserver(r.metrics, r.log, ['grpc', 'http'])
    observer.prepare(POLICY)
    expect(r.created).toHaveLength(2 * 2 * 11)
    expect(r.created).toContain('default deny host_not_allowed enforce http')
    observer.observe(check(POLICY, request('www.example.com')), 0.001, 'http')
    expect(r.counts).toEqual(new Map([['default allow host_allowed enforce http', 1]]))
  })

  it('counts, times and logs a deny with its peer and the escaped host, path and request id', () => {
    const r = recorder()
    const observer = new DecisionObserver(r.metrics, r.log, ['grpc'])
    observer.prepare(POLICY)
    observer.observe(check(POLICY, request('evil.example\r\nx')), 0.00002, 'grpc')
    expect(r.counts).toEqual(new Map([['default deny invalid_host enforce grpc', 1]]))
    expect(r.durations).toEqual(['deny'])
    expect(r.lines).toEqual([
      [
        'info',
        {
          decision: 'deny',
          reason: 'invalid_host',
          site: 'default',
          mode: 'enforce',
          api: 'grpc',
          status: 400,
          client: '198.51.100.7',
          peer: '198.51.100.7',
          host: 'evil.example\\u000d\\u000ax',
          // Without the query string, which may hold a secret.
          path: '/a\\u001b[2Jb',
          requestId: 'req-1\\u000aforged',
          durationMs: 0.02,
        },
        'deny',
      ],
    ])
  })

  it('logs a dry-run deny as such, and allows only at debug level', () => {
    const r = recorder()
    const observer = new DecisionObserver(r.metrics, r.log, ['grpc'])
    observer.observe(check(POLICY, request('evil.example', 'dry')), 0.001, 'grpc')
    observer.observe(check(POLICY, request('www.example.com')), 0.001, 'grpc')
    expect(r.lines.map(([level, , message]) => `${level} ${message}`)).toEqual([
      'info dry-run deny',
    ])
    r.log.level = 'debug'
    observer.observe(check(POLICY, request('www.example.com')), 0.001, 'grpc')
    expect(r.lines.map(([level, , message]) => `${level} ${message}`)).toEqual([
      'info dry-run deny',
      'debug allow',
    ])
    expect(r.counts.get('dry deny host_not_allowed dry_run grpc')).toBe(1)
    expect(r.counts.get('default allow host_allowed enforce grpc')).toBe(2)
  })

  it('logs the peer the chain was walked from beside the client it named', () => {
    const r = recorder()
    const policy = policyFrom(
      'version: 1\nallowedHosts: [www.example.com]\ntrustedProxies: [10.0.0.0/8]\n',
    )
    const bytes = official.encodeRequest({
      attributes: {
        source: { address: { socket_address: { address: '10.0.0.5' } } },
        request: {
          http: { host: 'evil.example', headers: { 'x-forwarded-for': '203.0.113.9' } },
        },
      },
    })
    new DecisionObserver(r.metrics, r.log, ['grpc']).observe(check(policy, bytes), 0.001, 'grpc')
    expect(r.lines[0]?.[1]).toMatchObject({ client: '203.0.113.9', peer: '10.0.0.5' })
  })

  it('logs at most 256 characters of each value a client chose, however long', () => {
    const r = recorder()
    const long = `${'\u00e9'.repeat(200_000)}\n`
    const bytes = official.encodeRequest({
      attributes: {
        source: { address: { socket_address: { address: long } } },
        request: { http: { host: long, path: `/${long}`, headers: { 'x-request-id': long } } },
      },
    })
    new DecisionObserver(r.metrics, r.log, ['grpc']).observe(check(POLICY, bytes), 0.001, 'grpc')
    const fields = r.lines[0]?.[1] as Record<string, unknown>
    const cut = `${'\\u00e9'.repeat(256)}…`
    expect(fields).toMatchObject({ reason: 'invalid_host', host: cut, peer: cut, requestId: cut })
    expect(fields['path']).toBe(`/${'\\u00e9'.repeat(255)}…`)
  })

  it('never logs x-request-id when a site of the policy takes its health-check secret from it', () => {
    const r = recorder()
    const policy = policyFrom(
      'version: 1\nallowedHosts: [www.example.com]\nsites:\n  probes:\n    healthCheck: { header: x-request-id, value: { env: SECRET } }\n',
      { SECRET: 'req-1\nforged' },
    )
    r.log.level = 'debug'
    const observer = new DecisionObserver(r.metrics, r.log, ['grpc'])
    observer.prepare(policy)
    // A probe sent to the wrong site, and one answered by its own.
    observer.observe(check(policy, request('evil.example')), 0.001, 'grpc')
    observer.observe(check(policy, request('evil.example', 'probes')), 0.001, 'grpc')
    expect(r.lines.map(([, fields]) => fields)).toEqual([
      expect.objectContaining({ site: 'default', decision: 'deny', requestId: undefined }),
      expect.objectContaining({ site: 'probes', reason: 'health_check', requestId: undefined }),
    ])
    // Without prepare(): the site's own secret still keeps it out.
    const unprepared = recorder()
    unprepared.log.level = 'debug'
    new DecisionObserver(unprepared.metrics, unprepared.log, ['grpc']).observe(
      check(policy, request('evil.example', 'probes')),
      0.001,
      'grpc',
    )
    expect(unprepared.lines[0]?.[1]).toMatchObject({ site: 'probes', requestId: undefined })
  })
})
