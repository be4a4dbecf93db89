import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { skipWithoutEnvoy, withGoogleGrpc } from '../support/envoy.js'
import { ENVOY, ENVOY_VERSION } from '../support/envoy-bin.js'
import { message, officialRoot } from '../support/proto-json.js'
import { ROOT } from '../support/protos.js'

const root = officialRoot([
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/filters/network/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
])
const Bootstrap = root.lookupType('envoy.config.bootstrap.v3.Bootstrap')

// biome-ignore lint/suspicious/noExplicitAny: Envoy configuration as YAML gives it
type Yaml = any

function load(file: string): Yaml {
  return parse(readFileSync(join(ROOT, 'envoy', file), 'utf8'))
}

function errorsOf(config: unknown): string[] {
  const errors: string[] = []
  message(root, Bootstrap, config, 'bootstrap', errors)
  return errors
}

function extAuthz(config: Yaml): Yaml {
  const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
  return hcm.http_filters.find((f: Yaml) => f.name === 'envoy.filters.http.ext_authz').typed_config
}

describe.each(['edge.yaml', 'sidecar.yaml'])('envoy/%s', (file) => {
  const config = load(file)

  it('is an envoy.config.bootstrap.v3.Bootstrap under the official protos, Anys included', () => {
    expect(errorsOf(config)).toEqual([])
  })

  it("fails closed to hostguard over gRPC v3 with a timeout, with 503 rather than a deny's 403", () => {
    expect(extAuthz(config)).toMatchObject({
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
      transport_api_version: 'V3',
      grpc_service: { envoy_grpc: { cluster_name: 'hostguard' }, timeout: '0.2s' },
      failure_mode_allow: false,
      status_on_error: { code: 'ServiceUnavailable' },
    })
    expect(extAuthz(config).allowed_headers).toBeUndefined()
  })

  it("keeps the shipped policies' health-check secret from the app", () => {
    const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    for (const policy of ['k8s/base/policy.yaml', 'examples/policy.yaml']) {
      const header = parse(readFileSync(join(ROOT, policy), 'utf8')).healthCheck.header
      expect(hcm.route_config.request_headers_to_remove, policy).toContain(header)
    }
  })

  it('drops headers with underscores, which CGI-style apps read as the hyphenated ones', () => {
    const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    expect(hcm.common_http_protocol_options.headers_with_underscores_action).toBe('DROP_HEADER')
  })

  it('bounds the Checks in flight to the hostguard cluster within its stream cap', () => {
    const cluster = config.static_resources.clusters.find((c: Yaml) => c.name === 'hostguard')
    expect(cluster.circuit_breakers.thresholds).toEqual([
      { max_requests: 1024, max_pending_requests: 1024 },
    ])
    expect(cluster.connect_timeout).toBe('0.25s')
  })

  it('health-checks the hostguard cluster over gRPC health, on HTTP/2, at port 9000', () => {
    const cluster = config.static_resources.clusters.find((c: Yaml) => c.name === 'hostguard')
    expect(cluster.health_checks[0].grpc_health_check.service_name).toBe(
      'envoy.service.auth.v3.Authorization',
    )
    // Every 2s from the start: Envoy's default until the first Check is one check a minute.
    expect(cluster.health_checks[0]).toMatchObject({ interval: '2s', no_traffic_interval: '2s' })
    expect(
      cluster.typed_extension_protocol_options[
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions'
      ].explicit_http_config,
    ).toEqual({ http2_protocol_options: {} })
    expect(
      cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
        .port_value,
    ).toBe(9000)
  })

  it('logs what hostguard puts in the dynamic metadata', () => {
    const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    const format = hcm.access_log[0].typed_config.log_format.text_format_source.inline_string
    for (const key of ['decision', 'reason', 'site', 'mode', 'client'])
      expect(format).toContain(`%DYNAMIC_METADATA(envoy.filters.http.ext_authz:${key})%`)
  })
})

describe('envoy/edge.yaml', () => {
  const config = load('edge.yaml')
  const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
  const siteOf = (holder: Yaml) =>
    holder.typed_per_filter_config['envoy.filters.http.ext_authz'].check_settings.context_extensions
      .site

  it('names the sites per virtual host and per route, each a site of examples/policy.yaml', () => {
    const hosts = hcm.route_config.virtual_hosts
    expect(siteOf(hosts.find((h: Yaml) => h.name === 'blog'))).toBe('blog')
    const www = hosts.find((h: Yaml) => h.name === 'www')
    const admin = www.routes.find((r: Yaml) => r.match.prefix === '/admin')
    expect(admin.match.case_sensitive).toBe(false)
    expect(siteOf(admin)).toBe('admin')
    const policy = parse(readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8'))
    expect(Object.keys(policy.sites)).toEqual(expect.arrayContaining(['blog', 'admin']))
  })

  it('normalises paths before routing, so that a route and its site see one spelling', () => {
    expect(hcm).toMatchObject({
      normalize_path: true,
      merge_slashes: true,
      path_with_escaped_slashes_action: 'UNESCAPE_AND_REDIRECT',
    })
  })
})

describe('envoy/tcp.yaml', () => {
  const config = load('tcp.yaml')
  const [authz, proxy] = config.static_resources.listeners[0].filter_chains[0].filters

  it('is a Bootstrap under the official protos, but for two tcp_proxy fields newer than them', () => {
    // @grpc/grpc-js-xds 1.14.1's protos predate upstream_connect_mode and max_early_data_bytes
    // (Envoy 1.35); Envoy itself validates them (envoy --mode validate below).
    const older = structuredClone(config)
    const olderProxy = older.static_resources.listeners[0].filter_chains[0].filters[1].typed_config
    delete olderProxy.upstream_connect_mode
    delete olderProxy.max_early_data_bytes
    expect(errorsOf(older)).toEqual([])
  })

  it('asks hostguard before tcp_proxy, fails closed, and dials only allowed connections', () => {
    expect(authz.typed_config).toMatchObject({
      '@type': 'type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz',
      transport_api_version: 'V3',
      grpc_service: { envoy_grpc: { cluster_name: 'hostguard' }, timeout: '0.2s' },
      failure_mode_allow: false,
    })
    expect(proxy.typed_config).toMatchObject({
      upstream_connect_mode: 'ON_DOWNSTREAM_DATA',
      max_early_data_bytes: 16384,
    })
  })

  it('health-checks the hostguard cluster as edge.yaml does', () => {
    const hostguard = (c: Yaml) =>
      c.static_resources.clusters.find((x: Yaml) => x.name === 'hostguard')
    const { load_assignment: _, ...tcp } = hostguard(config)
    const { load_assignment: __, ...edge } = hostguard(load('edge.yaml'))
    expect(tcp).toEqual(edge)
  })
})

describe('envoy/http-service.yaml', () => {
  const config = load('http-service.yaml')
  const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
  const filter = extAuthz(config)
  const perRoute = (holder: Yaml) =>
    holder.typed_per_filter_config['envoy.filters.http.ext_authz'].check_settings.http_service
  const www = hcm.route_config.virtual_hosts.find((h: Yaml) => h.name === 'www')
  const overrides: [string, Yaml][] = [
    ['admin', perRoute(www.routes.find((r: Yaml) => r.match.prefix === '/admin'))],
    ['blog', perRoute(hcm.route_config.virtual_hosts.find((h: Yaml) => h.name === 'blog'))],
  ]

  it('is a Bootstrap under the official protos, but for the per-route http_service newer than them', () => {
    // @grpc/grpc-js-xds 1.14.1's protos predate CheckSettings.http_service; Envoy itself
    // validates it (envoy --mode validate below, which refuses a misspelt field in it).
    const older = structuredClone(config)
    const olderHcm = older.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    for (const host of olderHcm.route_config.virtual_hosts)
      for (const holder of [host, ...host.routes])
        delete holder.typed_per_filter_config?.['envoy.filters.http.ext_authz'].check_settings
          .http_service
    expect(errorsOf(older)).toEqual([])
  })

  it("asks hostguard's top level over HTTP with a timeout, and fails closed with 503", () => {
    expect(filter).toMatchObject({
      http_service: {
        server_uri: { cluster: 'hostguard', timeout: '0.2s' },
        path_prefix: '/envoy/default',
      },
      failure_mode_allow: false,
      status_on_error: { code: 'ServiceUnavailable' },
    })
    expect(filter.grpc_service).toBeUndefined()
  })

  it('sets x-hostguard-peer from the connection, forwards x-real-ip, keeps the deny for the client', () => {
    const { authorization_request: request, authorization_response: response } = filter.http_service
    expect(request.headers_to_add).toEqual([
      { key: 'x-hostguard-peer', value: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%' },
    ])
    expect(response.allowed_upstream_headers.patterns).toEqual([{ exact: 'x-real-ip' }])
    expect(response.allowed_client_headers.patterns).toEqual(
      expect.arrayContaining([{ exact: 'content-type' }, { prefix: 'x-hostguard-' }]),
    )
  })

  it.each(overrides)("site %s: the filter's http_service but for its path_prefix", (site, http) => {
    expect(http).toEqual({ ...filter.http_service, path_prefix: `/envoy/${site}` })
    const policy = parse(readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8'))
    expect(Object.keys(policy.sites)).toContain(site)
  })

  it('sends the headers the shipped policies read: their trustedHeaders and health-check header', () => {
    const sent = filter.allowed_headers.patterns.map((p: Yaml) => p.exact)
    for (const file of [
      'k8s/base/policy.yaml',
      'examples/policy.yaml',
      'test/e2e/http-service.policy.yaml',
    ]) {
      const policy = parse(readFileSync(join(ROOT, file), 'utf8'))
      expect(sent, file).toEqual(
        expect.arrayContaining([...(policy.trustedHeaders ?? []), policy.healthCheck.header]),
      )
    }
  })

  it('removes the health-check secret, drops underscore headers, normalises paths as edge.yaml', () => {
    const edge =
      load('edge.yaml').static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    for (const key of [
      'use_remote_address',
      'normalize_path',
      'merge_slashes',
      'path_with_escaped_slashes_action',
      'common_http_protocol_options',
    ])
      expect(hcm[key], key).toEqual(edge[key])
    expect(hcm.route_config.request_headers_to_remove).toEqual(
      edge.route_config.request_headers_to_remove,
    )
  })

  it('speaks HTTP/1.1 to the hostguard cluster, closing idle connections before hostguard does', () => {
    const cluster = config.static_resources.clusters.find((c: Yaml) => c.name === 'hostguard')
    const options =
      cluster.typed_extension_protocol_options[
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions'
      ]
    expect(options.explicit_http_config).toEqual({ http_protocol_options: {} })
    expect(options.common_http_protocol_options.idle_timeout).toBe('60s')
  })

  it("health-checks the hostguard cluster on /readyz at hostguard's HTTP port, 9001", () => {
    const cluster = config.static_resources.clusters.find((c: Yaml) => c.name === 'hostguard')
    expect(cluster.health_checks[0]).toMatchObject({
      http_health_check: { path: '/readyz' },
      interval: '2s',
      no_traffic_interval: '2s',
    })
    const [endpoint] = cluster.load_assignment.endpoints[0].lb_endpoints
    expect(endpoint.endpoint.health_check_config).toEqual({ port_value: 9001 })
    expect(endpoint.endpoint.address.socket_address.port_value).toBe(9002)
  })
})

describe('envoy --mode validate', () => {
  skipWithoutEnvoy('envoy --mode validate on the shipped files')
  const files = readdirSync(join(ROOT, 'envoy')).filter((f) => f.endsWith('.yaml'))

  it.skipIf(ENVOY === undefined)('runs Envoy 1.40', () => {
    expect(ENVOY_VERSION).toMatch(/\/1\.40\.\d+\//)
  })

  it.skipIf(ENVOY === undefined).each(files)('accepts envoy/%s', (file) => {
    const run = spawnSync(
      ENVOY ?? '',
      [
        '--mode',
        'validate',
        '-c',
        join(ROOT, 'envoy', file),
        '--disable-hot-restart',
        '-l',
        'error',
      ],
      { encoding: 'utf8' },
    )
    expect(run.stderr + run.stdout).toContain(`configuration '${join(ROOT, 'envoy', file)}' OK`)
    expect(run.status).toBe(0)
  })

  // grpc-clients.test.ts runs edge.yaml on Envoy's other gRPC client, the Google C++ one.
  it.skipIf(ENVOY === undefined).each(['edge.yaml', 'sidecar.yaml', 'tcp.yaml'])(
    'accepts envoy/%s switched to google_grpc',
    (file) => {
      const dir = mkdtempSync(join(tmpdir(), 'hostguard-envoy-validate-'))
      const switched = join(dir, file)
      const source = readFileSync(join(ROOT, 'envoy', file), 'utf8')
      const config = withGoogleGrpc(source, file, '127.0.0.1:9000')
      expect(config).not.toContain('envoy_grpc')
      expect(config).toContain(
        'google_grpc: { target_uri: 127.0.0.1:9000, stat_prefix: hostguard }',
      )
      writeFileSync(switched, config)
      const run = spawnSync(
        ENVOY ?? '',
        ['--mode', 'validate', '-c', switched, '--disable-hot-restart', '-l', 'error'],
        { encoding: 'utf8' },
      )
      expect(run.stderr + run.stdout).toContain(`configuration '${switched}' OK`)
      expect(run.status).toBe(0)
    },
  )

  it.skipIf(ENVOY === undefined)(
    'refuses a misspelt field in the per-route http_service of http-service.yaml',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'hostguard-envoy-validate-'))
      const damaged = join(dir, 'http-service.yaml')
      const source = readFileSync(join(ROOT, 'envoy', 'http-service.yaml'), 'utf8')
      expect(source).toContain('path_prefix: /envoy/blog')
      writeFileSync(damaged, source.replace('path_prefix: /envoy/blog', 'path_prefx: /envoy/blog'))
      const run = spawnSync(
        ENVOY ?? '',
        ['--mode', 'validate', '-c', damaged, '--disable-hot-restart'],
        {
          encoding: 'utf8',
        },
      )
      // Envoy's message spaces its words unevenly.
      expect(run.stderr).toMatch(
        /check_settings\.http_service:[^']*no\s+such\s+field:\s+'path_prefx'/,
      )
      expect(run.status).not.toBe(0)
    },
  )

  it.skipIf(ENVOY === undefined)(
    'refuses a shipped file with one value Envoy does not know',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'hostguard-envoy-validate-'))
      const damaged = join(dir, 'edge.yaml')
      writeFileSync(
        damaged,
        readFileSync(join(ROOT, 'envoy', 'edge.yaml'), 'utf8').replace(
          'code: ServiceUnavailable',
          'code: Unavailable',
        ),
      )
      const run = spawnSync(
        ENVOY ?? '',
        ['--mode', 'validate', '-c', damaged, '--disable-hot-restart'],
        {
          encoding: 'utf8',
        },
      )
      expect(run.stderr).toContain('Unavailable')
      expect(run.status).not.toBe(0)
    },
  )
})

describe('the strict checker', () => {
  it.each([
    [
      'a misspelt field',
      (c: Yaml) => (extAuthz(c).failure_mode_alow = false),
      'failure_mode_alow: no such field',
    ],
    ['a wrong type', (c: Yaml) => (extAuthz(c).failure_mode_allow = 'no'), 'expected bool'],
    [
      'a bad duration',
      (c: Yaml) => (extAuthz(c).grpc_service.timeout = '200ms'),
      'expected a duration',
    ],
    [
      'an unknown enum value',
      (c: Yaml) => (extAuthz(c).transport_api_version = 'V4'),
      'expected one of',
    ],
    [
      'an unknown @type',
      (c: Yaml) => (extAuthz(c)['@type'] = 'type.googleapis.com/envoy.Nope'),
      'unknown @type',
    ],
    ['two members of a oneof', (c: Yaml) => (extAuthz(c).http_service = {}), 'in the same oneof'],
  ])('fails on %s', (_, damage, error) => {
    const config = load('edge.yaml')
    damage(config)
    expect(errorsOf(config).join('\n')).toContain(error)
  })
})
