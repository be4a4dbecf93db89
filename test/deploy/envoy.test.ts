import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { message, officialRoot } from '../support/proto-json.js'
import { ROOT } from '../support/protos.js'

const root = officialRoot([
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
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

  it('fails closed to hostguard over gRPC v3 with a timeout', () => {
    expect(extAuthz(config)).toMatchObject({
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
      transport_api_version: 'V3',
      grpc_service: { envoy_grpc: { cluster_name: 'hostguard' }, timeout: '0.2s' },
      failure_mode_allow: false,
      status_on_error: { code: 'Forbidden' },
    })
    expect(extAuthz(config).allowed_headers).toBeUndefined()
  })

  it('health-checks the hostguard cluster over gRPC health, on HTTP/2, at port 9000', () => {
    const cluster = config.static_resources.clusters.find((c: Yaml) => c.name === 'hostguard')
    expect(cluster.health_checks[0].grpc_health_check.service_name).toBe(
      'envoy.service.auth.v3.Authorization',
    )
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

  it('logs the decision and reason hostguard puts in the dynamic metadata', () => {
    const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
    const format = hcm.access_log[0].typed_config.log_format.text_format_source.inline_string
    expect(format).toContain('%DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%')
    expect(format).toContain('%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision)%')
  })
})

describe('envoy/edge.yaml', () => {
  it('names the sites per virtual host with ExtAuthzPerRoute context_extensions', () => {
    const config = load('edge.yaml')
    const hosts =
      config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config
        .virtual_hosts
    const blog = hosts.find((h: Yaml) => h.name === 'blog')
    expect(
      blog.typed_per_filter_config['envoy.filters.http.ext_authz'].check_settings
        .context_extensions,
    ).toEqual({ site: 'blog' })
    const policy = parse(readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8'))
    expect(Object.keys(policy.sites)).toContain('blog')
  })
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
