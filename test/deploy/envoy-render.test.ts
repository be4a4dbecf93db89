import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { parseAddress, renderBootstrap } from '../../envoy/render.js'
import { ROOT } from '../support/protos.js'

// biome-ignore lint/suspicious/noExplicitAny: Envoy configuration as YAML gives it
type Yaml = any

const read = (file: string) => readFileSync(join(ROOT, 'envoy', file), 'utf8')
const socketsOf = (config: Yaml, cluster: string) =>
  config.static_resources.clusters
    .find((c: Yaml) => c.name === cluster)
    .load_assignment.endpoints.flatMap((e: Yaml) =>
      e.lb_endpoints.map((l: Yaml) => l.endpoint.address.socket_address),
    )

describe('renderBootstrap', () => {
  const source = read('edge.yaml')
  const rendered = renderBootstrap(source, 'edge.yaml', {
    clusters: new Map([
      [
        'hostguard',
        [
          { address: '127.0.0.1', port: 9100 },
          { address: '127.0.0.1', port: 9102 },
        ],
      ],
      ['app', [{ address: '::1', port: 8100 }]],
    ]),
    listeners: new Map([['edge', { address: '127.0.0.1', port: 0 }]]),
    admin: { port: 0 },
  })
  const config = parse(rendered)

  it('replaces every endpoint of a named cluster with the given ones, in order', () => {
    expect(socketsOf(config, 'hostguard')).toEqual([
      { address: '127.0.0.1', port_value: 9100 },
      { address: '127.0.0.1', port_value: 9102 },
    ])
    expect(socketsOf(config, 'app')).toEqual([{ address: '::1', port_value: 8100 }])
  })

  it("sets a listener's address and port, and the admin port without its address", () => {
    expect(config.static_resources.listeners[0].address.socket_address).toEqual({
      address: '127.0.0.1',
      port_value: 0,
    })
    expect(config.admin.address.socket_address).toEqual({ address: '127.0.0.1', port_value: 0 })
  })

  it('leaves everything else as shipped, comments included', () => {
    const original = parse(source)
    original.static_resources.listeners[0].address = config.static_resources.listeners[0].address
    original.admin = config.admin
    for (const c of original.static_resources.clusters)
      c.load_assignment = config.static_resources.clusters.find(
        (r: Yaml) => r.name === c.name,
      ).load_assignment
    expect(config).toEqual(original)
    const comments = (text: string) => text.split('\n').filter((l) => l.trim().startsWith('#'))
    expect(comments(rendered)).toEqual(comments(source))
  })

  it('changes nothing without options', () => {
    expect(parse(renderBootstrap(source, 'edge.yaml', {}))).toEqual(parse(source))
  })

  it.each([
    [
      { clusters: new Map([['nope', [{ address: '1.2.3.4', port: 1 }]]]) },
      /no cluster named "nope" \(it has: app, hostguard\)/,
    ],
    [
      { listeners: new Map([['outbound', { port: 1 }]]) },
      /no listener named "outbound" \(it has: inbound\)/,
    ],
    [
      { clusters: new Map([['app', [{ address: 'app', port: 1 }]]]) },
      /cluster app is STATIC in sidecar.yaml: "app" must be an IP address/,
    ],
    [{ clusters: new Map([['app', []]]) }, /cluster app: no endpoints given/],
  ])('names what it cannot do (%#)', (options, error) => {
    expect(() => renderBootstrap(read('sidecar.yaml'), 'sidecar.yaml', options)).toThrow(error)
  })
})

describe('parseAddress', () => {
  it.each([
    ['127.0.0.1:9000', false, { address: '127.0.0.1', port: 9000 }],
    ['hostguard:9000', false, { address: 'hostguard', port: 9000 }],
    ['[::1]:9000', false, { address: '::1', port: 9000 }],
    ['8080', true, { port: 8080 }],
    ['0.0.0.0:0', true, { address: '0.0.0.0', port: 0 }],
  ])('reads %s', (text, portOnly, want) => {
    expect(parseAddress(text, 'x', portOnly)).toEqual(want)
  })

  it.each([['8080'], ['::1:9000'], ['host:65536'], ['host:'], ['host:x']])(
    'refuses %s as HOST:PORT',
    (text) => {
      expect(() => parseAddress(text, '--cluster')).toThrow(/--cluster: .* is not HOST:PORT/)
    },
  )
})

describe('renderBootstrap on a cluster health-checked on another port (http-service.yaml)', () => {
  const source = read('http-service.yaml')
  const healthPorts = (options: Parameters<typeof renderBootstrap>[2]) =>
    parse(renderBootstrap(source, 'http-service.yaml', options))
      .static_resources.clusters.find((c: Yaml) => c.name === 'hostguard')
      .load_assignment.endpoints[0].lb_endpoints.map(
        (l: Yaml) => l.endpoint.health_check_config?.port_value,
      )

  it("keeps the shipped endpoint's health-check port on every new endpoint", () => {
    const endpoints = [
      { address: '10.0.0.1', port: 9002 },
      { address: '10.0.0.2', port: 9002 },
    ]
    expect(healthPorts({ clusters: new Map([['hostguard', endpoints]]) })).toEqual([9001, 9001])
  })

  it("sets an endpoint's own health-check port when given", () => {
    const endpoints = [{ address: '127.0.0.1', port: 40000, healthCheckPort: 40001 }]
    expect(healthPorts({ clusters: new Map([['hostguard', endpoints]]) })).toEqual([40001])
  })

  it('adds none where the shipped endpoint has none', () => {
    const rendered = parse(
      renderBootstrap(read('edge.yaml'), 'edge.yaml', {
        clusters: new Map([['hostguard', [{ address: '127.0.0.1', port: 1 }]]]),
      }),
    )
    expect(socketsOf(rendered, 'hostguard')).toEqual([{ address: '127.0.0.1', port_value: 1 }])
    expect(
      rendered.static_resources.clusters.find((c: Yaml) => c.name === 'hostguard').load_assignment
        .endpoints[0].lb_endpoints[0].endpoint,
    ).not.toHaveProperty('health_check_config')
  })
})
