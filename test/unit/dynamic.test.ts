import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { cachePath, loadCache, saveCache } from '../../src/dynamic/cache.js'
import { DEFAULT_KUBE_TIMINGS } from '../../src/dynamic/kube-timings.js'
import { nodeRanges } from '../../src/dynamic/node-addresses.js'
import { DynamicSources } from '../../src/dynamic/sources.js'
import { matchCidr, matchingRange } from '../../src/net/cidr.js'
import { formatIp, parseIp } from '../../src/net/ip.js'
import { parseAddressFile } from '../../src/policy/address-file.js'
import { sourcesOf } from '../../src/policy/address-list.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { type PolicyError, PolicyLoadError } from '../../src/policy/errors.js'
import { isLabelSelector } from '../../src/policy/label-selector.js'
import { parsePolicy } from '../../src/policy/load.js'

function errorsOf(run: () => unknown): string[] {
  try {
    run()
  } catch (err) {
    if (err instanceof PolicyLoadError) return err.errors.map((e: PolicyError) => e.message)
    throw err
  }
  throw new Error('no error')
}

const policy = (lists: string) =>
  parsePolicy(`version: 1\nallowedHosts: [www.example.com]\n${lists}`, '/etc/hg/p.yaml', {})

describe('dynamic sources in a policy', () => {
  it('reads k8s:nodes, the mapping form and files beside literal entries, each named from the policy text', () => {
    const spec = policy(
      'allowedCidrNets:\n  - 10.0.0.0/16\n  - k8s:nodes\n  - { k8s: nodes, labelSelector: "pool in (edge, ingress),!spot", addressTypes: [ExternalIP, InternalIP] }\n  - { file: ranges/lb.txt }\n',
    )
    const list = spec.top.allowedCidrNets
    expect(list?.ranges.map((r) => `${formatIp(r.ip)}/${r.prefix}`)).toEqual(['10.0.0.0/16'])
    expect(list?.sources).toEqual([
      { kind: 'k8s-nodes', name: 'k8s:nodes', labelSelector: '', addressTypes: ['InternalIP'] },
      {
        kind: 'k8s-nodes',
        name: 'k8s:nodes?labelSelector=pool in (edge, ingress),!spot&addressTypes=InternalIP,ExternalIP',
        labelSelector: 'pool in (edge, ingress),!spot',
        addressTypes: ['InternalIP', 'ExternalIP'],
      },
      { kind: 'file', name: 'file:ranges/lb.txt', path: '/etc/hg/ranges/lb.txt' },
    ])
  })

  it('makes one source of equal entries', () => {
    const spec = policy(
      'allowedCidrNets: [k8s:nodes, { k8s: nodes }, { k8s: nodes, addressTypes: [InternalIP] }]\n',
    )
    expect(spec.top.allowedCidrNets?.sources.map((s) => s.name)).toEqual(['k8s:nodes'])
  })

  it.each([
    ['{ k8s: pods }', 'allowedCidrNets[0].k8s: unknown Kubernetes source "pods" (known: nodes)'],
    [
      '{ k8s: nodes, addressTypes: [Hostname] }',
      'allowedCidrNets[0].addressTypes[0]: "Hostname" is not an IP address type',
    ],
    [
      '{ k8s: nodes, addressTypes: [] }',
      'allowedCidrNets[0].addressTypes: list at least one address type',
    ],
    [
      '{ k8s: nodes, labelSelector: "a=(b" }',
      'allowedCidrNets[0].labelSelector: "a=(b" is not a Kubernetes label selector',
    ],
    ['{ k8s: nodes, file: x.txt }', 'allowedCidrNets[0]: a dynamic source is {k8s: nodes'],
    [
      '{ file: x.txt, labelSelector: a }',
      'allowedCidrNets[0].labelSelector: labelSelector is for k8s: nodes',
    ],
    ['{ file: "" }', 'allowedCidrNets[0].file: the path is empty'],
    [
      '{ k8s: nodes, labelselector: a }',
      'allowedCidrNets[0].labelselector: unknown key "labelselector" (did you mean labelSelector?)',
    ],
    ['"k8s:node"', 'allowedCidrNets[0]: "k8s:node" is not an IP address or CIDR'],
  ])('refuses %s', (entry, message) => {
    const [error] = errorsOf(() => policy(`allowedCidrNets: [${entry}]\n`))
    expect(error).toContain(`/etc/hg/p.yaml:3:`)
    expect(error).toContain(message)
  })

  it('counts a site with only a dynamic source as allowing something', () => {
    expect(() =>
      parsePolicy('version: 1\nallowedHosts: []\nallowedCidrNets: [k8s:nodes]\n', 'p.yaml', {}),
    ).not.toThrow()
  })

  it.each([
    ['', true],
    ['node-role.kubernetes.io/edge', true],
    ['pool=edge,zone!=us-east-1a', true],
    ['pool==edge', true],
    ['!spot', true],
    ['pool in (a, b),tier notin (x)', true],
    ['example.com/weight>3', true],
    ['pool=', true],
    ['pool=(a', false],
    ['a,,b', false],
    ['a,', false],
    ['-bad', false],
    ['pool in ()', false],
    ['pool in (a b)', false],
    ['a=b=c', false],
  ])('label selector %j valid: %s', (selector, valid) => {
    expect(isLabelSelector(selector)).toBe(valid)
  })

  it('marks a source as widening when empty where it is trusted or denies', () => {
    const spec = parsePolicy(
      'version: 1\nallowedHosts: ["a.example"]\nallowedCidrNets: [k8s:nodes, { file: f.txt }]\nclientCidrs: { allow: [{ file: g.txt }] }\nsites:\n  s:\n    trustedProxies: [{ file: f.txt }]\n  t:\n    clientCidrs: { deny: [{ file: h.txt }] }\n',
      'p.yaml',
      {},
    )
    expect(Object.fromEntries([...sourcesOf(spec)].map(([name, s]) => [name, s.widens]))).toEqual({
      'k8s:nodes': false,
      'file:f.txt': true,
      'file:g.txt': false,
      'file:h.txt': true,
    })
  })
})

describe('compiling with dynamic addresses', () => {
  const spec = policy(
    'allowedCidrNets: [10.0.0.0/16, k8s:nodes]\nclientCidrs: { deny: [{ file: deny.txt }] }\nsites:\n  blog: { allowedHosts: [blog.example.com] }\n',
  )
  const node = {
    ip: parseIp('192.0.2.7') ?? { family: 4 as const, value: 0 },
    prefix: 32,
    origin: 'k8s:nodes → node n1',
  }

  it('adds the source addresses to the literal ones and names their origin', () => {
    const policyWith = compilePolicy(spec, undefined, new Map([['k8s:nodes', [node]]]))
    const ip = parseIp('192.0.2.7')
    if (!ip) throw new Error('test address')
    expect(matchCidr(policyWith.top.allowedCidrNets, ip)).toBe(true)
    expect(matchingRange(policyWith.top.allowedCidrNets, ip)).toBe(
      'k8s:nodes → node n1 (192.0.2.7/32)',
    )
    expect(matchCidr(compilePolicy(spec).top.allowedCidrNets, ip)).toBe(false)
  })

  it('recompiles only the lists whose sources changed, sharing them between sites', () => {
    const deny = [{ ...node, origin: 'file:deny.txt line 1' }]
    const first = compilePolicy(
      spec,
      undefined,
      new Map([
        ['k8s:nodes', [node]],
        ['file:deny.txt', deny],
      ]),
    )
    const second = compilePolicy(
      spec,
      undefined,
      new Map([
        ['k8s:nodes', []],
        ['file:deny.txt', deny],
      ]),
    )
    expect(second.top.clientDeny).toBe(first.top.clientDeny)
    expect(second.top.allowedHosts).toBe(first.top.allowedHosts)
    expect(second.top.allowedCidrNets).not.toBe(first.top.allowedCidrNets)
    expect(second.sites.get('blog')?.allowedCidrNets).toBe(second.top.allowedCidrNets)
  })
})

describe('address files', () => {
  it('reads one entry a line, with # comments and blank lines, each range naming its line', () => {
    const ranges = parseAddressFile(
      '# LB ranges\n\n  192.0.2.0/24   # east\n2001:db8::/32\n198.51.100.7\n',
      'lb.txt',
      'file:lb.txt',
    )
    expect(ranges.map((r) => `${formatIp(r.ip)}/${r.prefix} ${r.origin}`)).toEqual([
      '192.0.2.0/24 file:lb.txt line 3',
      '2001:db8::/32 file:lb.txt line 4',
      '198.51.100.7/32 file:lb.txt line 5',
    ])
  })

  it('names every bad line with its line and column', () => {
    expect(
      errorsOf(() =>
        parseAddressFile('192.0.2.0/24\n  10.0.0.1/8\n010.1.1.1 # old\n', 'lb.txt', 'file:lb.txt'),
      ),
    ).toEqual([
      'lb.txt:2:3 (address file): "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8? [POLICY_CIDR_HOST_BITS]',
      'lb.txt:3:1 (address file): "010.1.1.1" is not an IP address or CIDR (IPv4 is four decimal parts 0-255 without leading zeros; IPv6 has no zone id) [POLICY_CIDR_INVALID]',
    ])
  })
})

describe('the cache of a Kubernetes source', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hostguard-cache-unit-'))
  const name = 'k8s:nodes?labelSelector=pool=edge'

  it('gives back what was saved, marked as cached', () => {
    const nodes = [
      {
        metadata: { name: 'n1' },
        status: {
          addresses: [
            { type: 'InternalIP', address: '10.0.0.2' },
            { type: 'Hostname', address: 'n1' },
            { type: 'ExternalIP', address: '203.0.113.2' },
          ],
        },
      },
      {
        metadata: { name: 'n2' },
        status: {
          addresses: [
            { type: 'InternalIP', address: 'fd00::2' },
            { type: 'InternalIP', address: 'not-an-ip' },
          ],
        },
      },
    ]
    const ranges = nodeRanges(nodes, ['InternalIP'], name)
    expect(ranges.map((r) => `${formatIp(r.ip)}/${r.prefix} ${r.origin}`)).toEqual([
      `10.0.0.2/32 ${name} → node n1`,
      `fd00::2/128 ${name} → node n2`,
    ])
    saveCache(dir, name, ranges)
    expect(loadCache(dir, name)?.map((r) => r.origin)).toEqual([
      `${name} → node n1 (cached)`,
      `${name} → node n2 (cached)`,
    ])
    expect(loadCache(dir, 'k8s:nodes')).toBeUndefined()
  })

  it('refuses a file that is not this source cache', () => {
    writeFileSync(cachePath(dir, 'k8s:nodes'), '{"version":1,"source":"other","addresses":[]}')
    expect(() => loadCache(dir, 'k8s:nodes')).toThrow(
      /is not a usable cache: it is not version 1 of the cache of k8s:nodes/,
    )
    writeFileSync(
      cachePath(dir, 'k8s:nodes'),
      '{"version":1,"source":"k8s:nodes","addresses":[{"cidr":"10.0.0.1/8"}]}',
    )
    expect(() => loadCache(dir, 'k8s:nodes')).toThrow(
      /addresses\[0\]: "10.0.0.1\/8" has host bits set/,
    )
    writeFileSync(cachePath(dir, 'k8s:nodes'), '{"version":')
    expect(() => loadCache(dir, 'k8s:nodes')).toThrow(/is not a usable cache/)
  })
})

describe('the addresses of the running sources', () => {
  it('are a new map after a change only: serve recompiles the policy on a new one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-sources-unit-'))
    writeFileSync(join(dir, 'lb.txt'), '10.0.0.0/8\n')
    const sources = new DynamicSources({
      log: pino({ level: 'silent' }),
      metrics: { setAddresses() {}, countError() {}, forget() {} },
      kubeconfig: undefined,
      cacheDir: undefined,
      syncWaitMs: 1000,
      timings: DEFAULT_KUBE_TIMINGS,
      onChange() {},
      onReadinessChange() {},
    })
    const wanted = sourcesOf(
      parsePolicy(
        'version: 1\nallowedHosts: [a.example]\nallowedCidrNets: [{ file: lb.txt }]\n',
        join(dir, 'p.yaml'),
        {},
      ),
    )
    try {
      const none = sources.addresses()
      sources.update(new Map())
      expect(sources.addresses()).toBe(none)
      sources.update(wanted)
      const one = sources.addresses()
      expect(one).not.toBe(none)
      expect([...one.keys()]).toEqual(['file:lb.txt'])
      sources.update(wanted)
      expect(sources.addresses()).toBe(one)
      sources.update(new Map())
      expect(sources.addresses().size).toBe(0)
    } finally {
      sources.stop()
    }
  })
})
