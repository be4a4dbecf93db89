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

const SIXTEEN_BYTES = '0123456789abcdef'

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
  const warningsOf = (yaml: string, env: NodeJS.ProcessEnv = { S: SIXTEEN_BYTES }) =>
    parsePolicy(yaml, 'p.yaml', env).warnings.map(
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
    [
      'POLICY_WARN_CLIENT_ALLOW_EMPTY',
      'version: 1\nallowedHosts: [a.example]\nclientCidrs: { allow: [], deny: [10.0.0.0/8] }\n',
      '3:23 clientCidrs.allow',
    ],
    [
      'POLICY_WARN_SECRET_SHORT',
      'version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-h, value: { env: UNSET, default: change-me }, paths: [/h] }\n',
      '3:36 healthCheck.value',
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

  it('warns about an empty clientCidrs.allow wherever it is written, not one with a source', () => {
    expect(
      warningsOf(
        'version: 1\nallowedHosts: [a.example]\nsites:\n  closed:\n    clientCidrs: { allow: [] }\n',
      ),
    ).toEqual(['POLICY_WARN_CLIENT_ALLOW_EMPTY 5:27 sites.closed.clientCidrs.allow'])
    for (const allow of ['[k8s:nodes]', '[{ file: ranges.txt }]', '[10.0.0.0/8]']) {
      expect(
        warningsOf(`version: 1\nallowedHosts: [a.example]\nclientCidrs: { allow: ${allow} }\n`),
      ).toEqual([])
    }
  })

  it('warns about a secret under 16 bytes, from the environment or a file, without showing it', () => {
    const yaml =
      'version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-h, value: { env: S }, paths: [/h] }\n'
    const short = parsePolicy(yaml, 'p.yaml', { S: 'hunter2-hunter2' }).warnings
    expect(short.map((w) => w.code)).toEqual(['POLICY_WARN_SECRET_SHORT'])
    expect(short[0]?.message).not.toContain('hunter2')
    expect(short[0]?.message).not.toContain('15')
    expect(warningsOf(yaml, { S: SIXTEEN_BYTES })).toEqual([])
    // The trailing newline a file keeps is not counted.
    writeFileSync(join(dir, 'short-secret'), `${SIXTEEN_BYTES.slice(1)}\n`)
    writeFileSync(join(dir, 'long-secret'), `${SIXTEEN_BYTES}\n`)
    const fileYaml = (name: string) =>
      `version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-h, value: { file: ${name} }, paths: [/h] }\n`
    writeFileSync(join(dir, 'short.yaml'), fileYaml('short-secret'))
    writeFileSync(join(dir, 'long.yaml'), fileYaml('long-secret'))
    expect(loadPolicyFile(join(dir, 'short.yaml'), {}).warnings.map((w) => w.code)).toEqual([
      'POLICY_WARN_SECRET_SHORT',
    ])
    expect(loadPolicyFile(join(dir, 'long.yaml'), {}).warnings).toEqual([])
  })

  it('warns about the example policy only for its dry-run site and its demo secret', () => {
    const example = readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8')
    const codes = (env: NodeJS.ProcessEnv) =>
      parsePolicy(example, 'examples/policy.yaml', env).warnings.map((w) => w.code)
    expect(codes({})).toEqual(['POLICY_WARN_SECRET_SHORT', 'POLICY_WARN_DRY_RUN'])
    expect(codes({ HEALTH_CHECK_HEADER_VALUE: SIXTEEN_BYTES })).toEqual(['POLICY_WARN_DRY_RUN'])
  })

  it('has no warning for the shipped Kubernetes policies', () => {
    for (const file of ['k8s/base/policy.yaml', 'k8s/overlays/k8s-nodes/policy.yaml']) {
      expect(loadPolicyFile(join(ROOT, file), {}, { skipSecrets: true }).warnings).toEqual([])
    }
  })
})

describe('loading without reading secrets (validate --skip-secrets)', () => {
  const K8S_BASE = join(ROOT, 'k8s', 'base', 'policy.yaml')

  it('loads the shipped policy whose secret file is not mounted here', () => {
    expect(() => loadPolicyFile(K8S_BASE, {})).toThrow(/POLICY_SECRET_UNREADABLE/)
    const spec = loadPolicyFile(K8S_BASE, {}, { skipSecrets: true })
    expect(spec.top.healthCheck?.header).toBe('x-health')
  })

  it('reads no file and no variable, and puts 32 random bytes where the secret would be', () => {
    const read: string[] = []
    const yaml = (value: string) =>
      `version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-h, value: ${value}, paths: [/h] }\n`
    writeFileSync(join(dir, 'skip-file.yaml'), yaml('{ file: empty }'))
    const spec = loadPolicyFile(
      join(dir, 'skip-file.yaml'),
      {},
      {
        skipSecrets: true,
        onRead: (file) => read.push(file),
      },
    )
    expect(read).toEqual([join(dir, 'skip-file.yaml')])
    const secret = spec.top.healthCheck?.secret
    expect(secret?.length).toBe(32)
    writeFileSync(join(dir, 'skip-env.yaml'), yaml('{ env: NOT_SET }'))
    const other = loadPolicyFile(join(dir, 'skip-env.yaml'), {}, { skipSecrets: true })
    expect(other.top.healthCheck?.secret.length).toBe(32)
    expect(other.top.healthCheck?.secret.equals(secret ?? Buffer.alloc(0))).toBe(false)
  })

  it('still checks how each secret is given', () => {
    const codes = (value: string) => {
      writeFileSync(
        join(dir, 'skip-bad.yaml'),
        `version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-h, value: ${value}, paths: [/h] }\n`,
      )
      try {
        loadPolicyFile(join(dir, 'skip-bad.yaml'), {}, { skipSecrets: true })
      } catch (err) {
        if (err instanceof PolicyLoadError) return err.errors.map((e) => `${e.code} ${e.at.field}`)
        throw err
      }
      return []
    }
    expect(codes('hunter2')).toEqual(['POLICY_SECRET_SOURCE healthCheck.value'])
    expect(codes('{ env: 12 }')).toEqual(['POLICY_TYPE healthCheck.value.env'])
    expect(codes('{ file: "" }')).toEqual(['POLICY_SECRET_UNREADABLE healthCheck.value.file'])
    expect(codes('{ file: x, default: y }')).toEqual(['POLICY_SECRET_SOURCE healthCheck.value'])
  })

  it("still checks an env secret's inline default, which serve uses when the variable is unset", () => {
    const load = (value: string, skipSecrets: boolean) => {
      writeFileSync(
        join(dir, 'skip-default.yaml'),
        `version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-h, value: ${value}, paths: [/h] }\n`,
      )
      try {
        const spec = loadPolicyFile(join(dir, 'skip-default.yaml'), {}, { skipSecrets })
        return spec.warnings.map((w) => `${w.code} ${w.at.field}`)
      } catch (err) {
        if (err instanceof PolicyLoadError) return err.errors.map((e) => `${e.code} ${e.at.field}`)
        throw err
      }
    }
    for (const value of ['{ env: NOT_SET, default: "" }', '{ env: NOT_SET, default: change-me }'])
      expect(load(value, true)).toEqual(load(value, false))
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
