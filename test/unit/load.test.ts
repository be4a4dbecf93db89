import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { POLICY_ERROR_CODES, type PolicyError, PolicyLoadError } from '../../src/policy/errors.js'
import { loadPolicyFile, parsePolicy } from '../../src/policy/load.js'
import { ROOT } from '../support/protos.js'

function errorsOf(yaml: string, env: NodeJS.ProcessEnv = {}): PolicyError[] {
  try {
    parsePolicy(yaml, 'p.yaml', env)
  } catch (err) {
    if (err instanceof PolicyLoadError) return [...err.errors]
    throw err
  }
  throw new Error('the policy loaded without errors')
}

const dir = mkdtempSync(join(tmpdir(), 'hostguard-load-'))
writeFileSync(join(dir, 'secret'), 's3cret\n')
writeFileSync(join(dir, 'empty'), '')

// One case per error code: the policy, and where the error must point (line:col and field).
const CASES: [string, string, string, string][] = [
  ['POLICY_YAML_SYNTAX', 'version: 1\nallowedHosts: [a.example\n', '3:1', '(document)'],
  ['POLICY_NOT_A_MAPPING', '- version\n', '1:1', '(document)'],
  ['POLICY_VERSION', 'version: 2\nallowedHosts: ["*"]\n', '1:10', 'version'],
  [
    'POLICY_UNKNOWN_KEY',
    'version: 1\nallowedHosts: ["*"]\nallowedHost: [x]\n',
    '3:1',
    'allowedHost',
  ],
  ['POLICY_TYPE', 'version: 1\nallowedHosts: ["*"]\ndryRun: "yes"\n', '3:9', 'dryRun'],
  ['POLICY_REQUIRED', 'version: 1\ndryRun: false\n', '1:1', 'allowedHosts'],
  [
    'POLICY_SOURCE_INVALID',
    'version: 1\nallowedHosts: ["*"]\nallowedCidrNets: [{ k8s: pods }]\n',
    '3:26',
    'allowedCidrNets[0].k8s',
  ],
  [
    'POLICY_CIDR_INVALID',
    'version: 1\nallowedHosts: ["*"]\ntrustedProxies: [010.0.0.1]\n',
    '3:18',
    'trustedProxies[0]',
  ],
  [
    'POLICY_CIDR_HOST_BITS',
    'version: 1\nallowedHosts: ["*"]\nallowedCidrNets:\n  - 10.0.0.0/8\n  - 10.0.0.1/8\n',
    '5:5',
    'allowedCidrNets[1]',
  ],
  [
    'POLICY_CIDR_MAPPED_PREFIX',
    'version: 1\nallowedHosts: ["*"]\ntrustedProxies: ["::ffff:10.0.0.0/8"]\n',
    '3:18',
    'trustedProxies[0]',
  ],
  [
    'POLICY_HOST_PATTERN_EMPTY',
    'version: 1\nallowedHosts: [a.example, ""]\n',
    '2:27',
    'allowedHosts[1]',
  ],
  [
    'POLICY_HOST_PATTERN_INVALID',
    'version: 1\nallowedHosts: [under_score.example]\n',
    '2:16',
    'allowedHosts[0]',
  ],
  [
    'POLICY_HOST_PATTERN_WILDCARD',
    'version: 1\nallowedHosts: ["*.example.io"]\n',
    '2:16',
    'allowedHosts[0]',
  ],
  [
    'POLICY_HOST_PATTERN_PORT',
    'version: 1\nallowedHosts: [example.com:8000]\n',
    '2:16',
    'allowedHosts[0]',
  ],
  [
    'POLICY_HOST_PATTERN_IPV6_UNBRACKETED',
    'version: 1\nallowedHosts: ["2001:db8::1"]\n',
    '2:16',
    'allowedHosts[0]',
  ],
  [
    'POLICY_HOST_PATTERN_TRAILING_DOT',
    'version: 1\nallowedHosts: [example.com.]\n',
    '2:16',
    'allowedHosts[0]',
  ],
  [
    'POLICY_HEADER_NAME_INVALID',
    'version: 1\nallowedHosts: ["*"]\nclientIpHeader: "x real ip"\n',
    '3:17',
    'clientIpHeader',
  ],
  [
    'POLICY_TRUSTED_HEADER_UNKNOWN',
    'version: 1\nallowedHosts: ["*"]\ntrustedHeaders: [x-original-for]\n',
    '3:18',
    'trustedHeaders[0]',
  ],
  [
    'POLICY_TRUSTED_HEADER_CONFLICT',
    'version: 1\nallowedHosts: ["*"]\ntrustedHeaders: [x-forwarded-for, x-real-ip]\n',
    '3:35',
    'trustedHeaders[1]',
  ],
  [
    'POLICY_SITE_NAME_INVALID',
    'version: 1\nallowedHosts: ["*"]\nsites:\n  default: { dryRun: true }\n',
    '4:3',
    'sites.default',
  ],
  [
    'POLICY_SITE_ALLOWS_NOTHING',
    'version: 1\nallowedHosts: ["*"]\nsites:\n  blog:\n    allowedHosts: []\n',
    '5:5',
    'sites.blog',
  ],
  [
    'POLICY_SECRET_SOURCE',
    'version: 1\nallowedHosts: ["*"]\nhealthCheck:\n  header: x-health\n  value: hunter2\n',
    '5:10',
    'healthCheck.value',
  ],
  [
    'POLICY_SECRET_UNREADABLE',
    'version: 1\nallowedHosts: ["*"]\nhealthCheck:\n  header: x-health\n  value: { env: NOT_SET }\n',
    '5:17',
    'healthCheck.value.env',
  ],
  [
    'POLICY_SECRET_EMPTY',
    `version: 1\nallowedHosts: ["*"]\nhealthCheck:\n  header: x-health\n  value: { file: ${join(dir, 'empty')} }\n`,
    '5:10',
    'healthCheck.value',
  ],
  [
    'POLICY_HEALTH_PATH_INVALID',
    'version: 1\nallowedHosts: ["*"]\nhealthCheck:\n  header: x-health\n  value: { env: S }\n  paths: [health]\n',
    '6:11',
    'healthCheck.paths[0]',
  ],
  [
    'POLICY_DENY_STATUS',
    'version: 1\nallowedHosts: ["*"]\ndeny: { status: 200 }\n',
    '3:17',
    'deny.status',
  ],
  [
    'POLICY_YAML_ALIASES',
    `version: 1\nh: &h a.example\nallowedHosts: [${Array(1001).fill('*h').join(', ')}]\n`,
    `3:${16 + 1000 * 4}`,
    '(document)',
  ],
  [
    'POLICY_TOO_MANY_SITES',
    `version: 1\nallowedHosts: ["*"]\nsites:\n${Array.from({ length: 1001 }, (_, i) => `  s${i}: {}\n`).join('')}`,
    '4:3',
    'sites',
  ],
  [
    'POLICY_TOO_MANY_ENTRIES',
    `version: 1\nallowedHosts: [${Array(100_001).fill('a.example').join(', ')}]\n`,
    '2:15',
    'allowedHosts',
  ],
]

describe('policy errors', () => {
  it('has one case below for every error code but the unreadable files', () => {
    const covered = new Set(CASES.map(([code]) => code))
    expect(POLICY_ERROR_CODES.filter((c) => !covered.has(c))).toEqual([
      'POLICY_FILE_UNREADABLE',
      'POLICY_ADDRESS_FILE_UNREADABLE',
    ])
  })

  it.each(CASES)('%s points at the line, column and field', (code, yaml, lineCol, field) => {
    const errors = errorsOf(yaml, { S: 'x' })
    expect(errors.map((e) => `${e.code} ${e.at.line}:${e.at.col} ${e.at.field}`)).toContain(
      `${code} ${lineCol} ${field}`,
    )
  })

  it('formats each error as file:line:col field: message [CODE]', () => {
    const [error] = errorsOf('version: 1\nallowedHosts: ["*"]\ntrustedProxies: [10.0.0.1/8]\n')
    expect(error?.message).toBe(
      'p.yaml:3:18 trustedProxies[0]: "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8? [POLICY_CIDR_HOST_BITS]',
    )
  })

  it('suggests the IPv4 range a mapped range with a short prefix names, never an IPv6 one', () => {
    const [error] = errorsOf(
      'version: 1\nallowedHosts: ["*"]\ntrustedProxies: ["::ffff:10.0.0.0/8"]\n',
    )
    expect(error?.code).toBe('POLICY_CIDR_MAPPED_PREFIX')
    expect(error?.detail).toContain('did you mean 10.0.0.0/8 (or ::ffff:10.0.0.0/104)?')
    expect(error?.detail).not.toMatch(/::\/\d/)
  })

  it.each(['::ffff:10.1.0.0/8', '::ffff:10.0.0.0/0', '::ffff:10.1.2.3/1'])(
    'suggests nothing for %s, where the IPv4 range would be wider than the address written',
    (entry) => {
      const [error] = errorsOf(`version: 1\nallowedHosts: ["*"]\ntrustedProxies: ["${entry}"]\n`)
      expect(error?.code).toBe('POLICY_CIDR_MAPPED_PREFIX')
      expect(error?.detail).not.toContain('did you mean')
    },
  )

  it('names no range for a mapped prefix between 33 and 95', () => {
    const [error] = errorsOf('version: 1\nallowedHosts: ["*"]\ntrustedProxies: ["::ffff:0:0/64"]\n')
    expect(error?.code).toBe('POLICY_CIDR_MAPPED_PREFIX')
    expect(error?.detail).not.toContain('did you mean')
  })

  it('reports every error at once, in file order', () => {
    const errors = errorsOf(
      'version: 1\nallowedHosts: ["*.a.example", b.example:80]\ntrustedProxies: [0x0a.0.0.1, "fd00::1/8"]\nsites:\n  blog:\n    dryrun: true\n',
    )
    expect(errors.map((e) => e.code)).toEqual([
      'POLICY_HOST_PATTERN_WILDCARD',
      'POLICY_HOST_PATTERN_PORT',
      'POLICY_CIDR_INVALID',
      'POLICY_CIDR_HOST_BITS',
      'POLICY_UNKNOWN_KEY',
    ])
    expect(errors[1]?.detail).toContain('use "b.example"')
    expect(errors[3]?.detail).toContain('fd00::/8')
    expect(errors[4]?.detail).toContain('did you mean dryRun?')
  })

  it.each([
    '010.0.0.1',
    '0x0a.0.0.1',
    '167772161',
    '10.1',
    'fe80::1%eth0',
    '10.0.0.0/33',
    '::/129',
    '10.0.0.0/08',
    'k8s:pods',
  ])('rejects %s as an address or range', (entry) => {
    const errors = errorsOf(
      `version: 1\nallowedHosts: ["*"]\nclientCidrs: { deny: ["${entry}"] }\n`,
    )
    expect(errors.map((e) => e.code)).toEqual(['POLICY_CIDR_INVALID'])
  })

  it('suggests the IPv4-mapped network in its own form', () => {
    const [error] = errorsOf(
      'version: 1\nallowedHosts: ["*"]\ntrustedProxies: ["::ffff:10.0.0.1/104"]\n',
    )
    expect(error?.detail).toContain('did you mean ::ffff:10.0.0.0/104?')
  })

  it('rejects a pattern or header name that only lower-cases to ASCII', () => {
    const errors = errorsOf(
      'version: 1\nallowedHosts: ["\u212Aexample.com"]\nclientIpHeader: "x-\u212A"\n',
    )
    expect(errors.map((e) => e.code)).toEqual([
      'POLICY_HOST_PATTERN_INVALID',
      'POLICY_HEADER_NAME_INVALID',
    ])
  })

  it('rejects two trusted host headers', () => {
    const errors = errorsOf(
      'version: 1\nallowedHosts: ["*"]\ntrustedHeaders: [x-forwarded-host, forwarded]\n',
    )
    expect(errors.map((e) => e.code)).toEqual(['POLICY_TRUSTED_HEADER_CONFLICT'])
  })

  it('reports a file that cannot be read', () => {
    try {
      loadPolicyFile(join(dir, 'missing.yaml'))
      expect.unreachable()
    } catch (err) {
      expect((err as PolicyLoadError).errors.map((e) => e.message)).toEqual([
        `${join(dir, 'missing.yaml')}:1:1 (file): cannot read the policy file (ENOENT) [POLICY_FILE_UNREADABLE]`,
      ])
    }
  })
})

describe('policy warnings', () => {
  const warningsOf = (yaml: string) =>
    parsePolicy(yaml, 'p.yaml', { S: 'x' }).warnings.map(
      (w) => `${w.code} ${w.at.line}:${w.at.col} ${w.at.field}`,
    )

  it.each([
    [
      'POLICY_WARN_TRUSTS_ANY_PROXY',
      'version: 1\nallowedHosts: [a.example]\ntrustedProxies: [10.0.0.0/8, "::/0"]\n',
      '3:30 trustedProxies[1]',
    ],
    [
      'POLICY_WARN_ANY_HOST',
      'version: 1\nallowedHosts: [a.example, "*"]\n',
      '2:27 allowedHosts[1]',
    ],
    [
      'POLICY_WARN_DRY_RUN',
      'version: 1\nallowedHosts: [a.example]\nsites:\n  new:\n    dryRun: true\n',
      '5:13 sites.new.dryRun',
    ],
    [
      'POLICY_WARN_HEALTH_CHECK_ANY_PATH',
      'version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-h, value: { env: S } }\n',
      '3:14 healthCheck',
    ],
  ])('%s points at the setting', (code, yaml, where) => {
    expect(warningsOf(yaml)).toEqual([`${code} ${where}`])
  })

  it.each([
    ['0.0.0.0/0', ['POLICY_WARN_TRUSTS_ANY_PROXY 3:18 trustedProxies[0]']],
    ['"::ffff:0:0/96"', ['POLICY_WARN_TRUSTS_ANY_PROXY 3:18 trustedProxies[0]']],
    ['0.0.0.0/1, 128.0.0.0/1', ['POLICY_WARN_TRUSTS_ANY_PROXY 3:17 trustedProxies']],
    ['"::/1", "8000::/1"', ['POLICY_WARN_TRUSTS_ANY_PROXY 3:17 trustedProxies']],
    ['"::/1"', []],
    ['"::/8", 10.0.0.0/8', []],
  ])('warns when trustedProxies [%s] holds a whole family', (list, expected) => {
    expect(
      warningsOf(`version: 1\nallowedHosts: [a.example]\ntrustedProxies: [${list}]\n`),
    ).toEqual(expected)
  })

  it('does not warn about "*" when clientCidrs.allow guards the site', () => {
    expect(
      warningsOf('version: 1\nallowedHosts: ["*"]\nclientCidrs: { allow: [10.0.0.0/8] }\n'),
    ).toEqual([])
    expect(
      warningsOf(
        'version: 1\nallowedHosts: [a.example]\nclientCidrs: { allow: [10.0.0.0/8] }\nsites:\n  x: { allowedHosts: ["*"] }\n',
      ),
    ).toEqual([])
    expect(
      warningsOf(
        'version: 1\nallowedHosts: [a.example]\nclientCidrs: { allow: [10.0.0.0/8] }\nsites:\n  x: { allowedHosts: ["*"], clientCidrs: null }\n',
      ),
    ).toEqual(['POLICY_WARN_ANY_HOST 5:23 sites.x.allowedHosts[0]'])
  })

  it('has no warning for the example policy but its dry-run site', () => {
    const example = readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8')
    expect(parsePolicy(example, 'examples/policy.yaml', {}).warnings.map((w) => w.code)).toEqual([
      'POLICY_WARN_DRY_RUN',
    ])
  })
})

describe('policy loading', () => {
  it('accepts 0.0.0.0/0 and ::/0', () => {
    const spec = parsePolicy(
      'version: 1\nallowedHosts: ["*"]\ntrustedProxies: [0.0.0.0/0, "::/0"]\n',
      'p.yaml',
      {},
    )
    expect(spec.top.trustedProxies?.ranges.map((r) => r.prefix)).toEqual([0, 0])
  })

  it('reads a JSON policy', () => {
    const spec = parsePolicy('{"version": 1, "allowedHosts": ["WWW.Example.com"]}', 'p.json', {})
    expect(spec.top.allowedHosts).toEqual(['www.example.com'])
  })

  it('reads a secret file relative to the policy, dropping one trailing newline', () => {
    writeFileSync(
      join(dir, 'p.yaml'),
      'version: 1\nallowedHosts: ["*"]\nhealthCheck: { header: X-Health, value: { file: secret } }\n',
    )
    const spec = loadPolicyFile(join(dir, 'p.yaml'), {})
    expect(spec.top.healthCheck?.secret.toString()).toBe('s3cret')
    expect(spec.top.healthCheck?.header).toBe('x-health')
  })

  it('uses an env default only when the variable is unset', () => {
    const yaml =
      'version: 1\nallowedHosts: ["*"]\nhealthCheck: { header: x-health, value: { env: H, default: demo } }\n'
    expect(parsePolicy(yaml, 'p.yaml', {}).top.healthCheck?.secret.toString()).toBe('demo')
    expect(parsePolicy(yaml, 'p.yaml', { H: 'real' }).top.healthCheck?.secret.toString()).toBe(
      'real',
    )
  })

  it('lets a site switch an inherited block off with null', () => {
    const spec = parsePolicy(
      'version: 1\nallowedHosts: ["*"]\nclientIpHeader: x-real-ip\nsites:\n  open:\n    clientIpHeader: null\n',
      'p.yaml',
      {},
    )
    expect(spec.sites.get('open')?.clientIpHeader).toBeNull()
  })
})

describe('error messages never echo a value that may be a secret', () => {
  it.each([
    [
      'a number written as the env name',
      'healthCheck: { header: x-h, value: { env: 739164028551 } }',
    ],
    [
      'a secret written as the env name',
      'healthCheck: { header: x-h, value: { env: s3cr3t-739164 } }',
    ],
    ['a secret written inline', 'healthCheck: { header: x-h, value: s3cr3t-739164 }'],
    ['a number where a list belongs', 'trustedProxies: 739164028551'],
  ])('%s', (_, yaml) => {
    const messages = errorsOf(`version: 1\nallowedHosts: [a.example]\n${yaml}\n`).map(
      (e) => e.message,
    )
    expect(messages.length).toBeGreaterThan(0)
    for (const m of messages) {
      expect(m).not.toContain('739164')
    }
  })
})
