import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { explain } from '../../src/commands/explain.js'
import { type CommandRun, hostguard as run } from '../support/cli.js'
import { FIXTURES, ROOT } from '../support/protos.js'

const MAIN = join(ROOT, 'dist', 'main.js')

/** `hostguard ARGS...` in process, with an empty environment. */
const hostguard = (...args: string[]): Promise<CommandRun> => run(args)
const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')
const FIXTURE_NAMES = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.bin'))
  .map((f) => f.slice(0, -4))
const fixture = (name: string, ext: string): string => join(FIXTURES, `${name}.${ext}`)

/** Runs the built command; resolves with its exit code and output, whatever the code. */
async function spawnHostguard(...args: string[]): Promise<CommandRun> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [MAIN, ...args], {
      // The example's demo secret comes from its env default, whatever this shell has set.
      env: {},
    })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

const dir = mkdtempSync(join(tmpdir(), 'hostguard-commands-'))
const GOOD = join(dir, 'good.yaml')
const RISKY = join(dir, 'risky.yaml')
const BAD = join(dir, 'bad.yaml')
writeFileSync(GOOD, 'version: 1\nallowedHosts: [www.example.com]\n')
writeFileSync(RISKY, 'version: 1\nallowedHosts: ["*"]\n')
writeFileSync(
  BAD,
  'version: 1\nallowedHosts: [www.example.com:443]\ntrustedProxies: [10.0.0.1/8]\n',
)

describe('hostguard validate', () => {
  it('exits 0 and prints no error for valid files', async () => {
    const r = await hostguard('validate', GOOD, EXAMPLE)
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(
      `${EXAMPLE}:20:10 healthCheck.value: warning: the secret is shorter than 16 bytes: a placeholder, or short enough to guess (make one with: openssl rand -hex 16) [POLICY_WARN_SECRET_SHORT]\n` +
        `${EXAMPLE}:36:13 sites.internal-api.dryRun: warning: denials are logged and counted but answered as allowed [POLICY_WARN_DRY_RUN]\n`,
    )
    expect(r.stderr).toBe(`${GOOD}: valid\n${EXAMPLE}: valid (2 warning(s))\n`)
  })

  it('checks the shipped policy without its Secret with --skip-secrets, and --strict too', async () => {
    const K8S = join(ROOT, 'k8s', 'base', 'policy.yaml')
    const plain = await hostguard('validate', K8S)
    expect(plain.code).toBe(1)
    expect(plain.stdout).toContain('[POLICY_SECRET_UNREADABLE]')
    const skipped = await hostguard('validate', '--skip-secrets', '--strict', K8S)
    expect(skipped).toEqual({ code: 0, stdout: '', stderr: `${K8S}: valid\n` })
    // Everything but the secret's readability is still checked.
    const bad = join(dir, 'bad-secret.yaml')
    writeFileSync(
      bad,
      'version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-h, value: hunter2, paths: [/h] }\n',
    )
    const refused = await hostguard('validate', '--skip-secrets', bad)
    expect(refused.code).toBe(1)
    expect(refused.stdout).toContain('[POLICY_SECRET_SOURCE]')
  })

  it('exits 1 with one file:line:col field: message [CODE] line per error', async () => {
    const r = await hostguard('validate', GOOD, BAD)
    expect(r.code).toBe(1)
    expect(r.stdout.trim().split('\n')).toEqual([
      `${BAD}:2:16 allowedHosts[0]: "www.example.com:443" never matches: the port is removed from the Host before matching; use "www.example.com" [POLICY_HOST_PATTERN_PORT]`,
      `${BAD}:3:18 trustedProxies[0]: "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8? [POLICY_CIDR_HOST_BITS]`,
    ])
  })

  it('prints JSON for CI pipelines', async () => {
    const r = await hostguard('validate', '--format', 'json', BAD, RISKY)
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout)).toEqual({
      valid: false,
      files: [
        {
          file: BAD,
          valid: false,
          errors: [
            expect.objectContaining({
              code: 'POLICY_HOST_PATTERN_PORT',
              line: 2,
              col: 16,
              field: 'allowedHosts[0]',
            }),
            expect.objectContaining({
              code: 'POLICY_CIDR_HOST_BITS',
              line: 3,
              col: 18,
              field: 'trustedProxies[0]',
            }),
          ],
          warnings: [],
        },
        {
          file: RISKY,
          valid: true,
          errors: [],
          warnings: [expect.objectContaining({ code: 'POLICY_WARN_ANY_HOST', line: 2, col: 16 })],
        },
      ],
    })
  })

  it('makes warnings errors with --strict', async () => {
    expect((await hostguard('validate', RISKY)).code).toBe(0)
    const strict = await hostguard('validate', '--strict', RISKY)
    expect(strict.code).toBe(1)
    expect(strict.stdout).toContain('warning: any Host is allowed')
  })

  it('exits 2 on a usage error', async () => {
    expect(await hostguard('validate')).toEqual({
      code: 2,
      stdout: '',
      stderr:
        'hostguard validate: no FILE given\nrun "hostguard validate --help" for its options\n',
    })
  })
})

describe('hostguard explain', () => {
  // Its decisions on every fixture and SPEC case are the case suite's (test/cases/explain.test.ts
  // and server.test.ts hold explain() and the server to the same answers); here, the command.
  it('prints the same for a fixture from .bin and from .json: what explain() found', async () => {
    for (const name of FIXTURE_NAMES) {
      const want = await explain(EXAMPLE, readFileSync(fixture(name, 'bin')), { syncWaitMs: 0 }, {})
      for (const ext of ['bin', 'json']) {
        const r = await hostguard('explain', '--policy', EXAMPLE, '--json', fixture(name, ext))
        expect(r.code, `${name}.${ext} ${r.stderr}`).toBe(0)
        expect(JSON.parse(r.stdout), `${name}.${ext}`).toEqual(want)
      }
    }
  })

  it('explains a request given as flags, with the chain it walked and the rule that decided', async () => {
    const r = await hostguard(
      'explain',
      '--policy',
      EXAMPLE,
      '--json',
      '--authority',
      'web.internal:8080',
      '--peer',
      '10.1.2.3',
      '--header',
      'x-forwarded-for=203.0.113.7, 10.1.9.9',
      '--header',
      'x-forwarded-host=shop.example.com',
    )
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({
      decision: 'allow',
      reason: 'host_allowed',
      client: '203.0.113.7',
      chain: { header: 'x-forwarded-for', entries: ['10.1.2.3', '10.1.9.9', '203.0.113.7'] },
      rule: 'allowedHosts "shop.example.com" matches "shop.example.com"',
      set: [{ name: 'x-real-ip', value: '203.0.113.7' }],
    })
  })

  it('escapes control characters a client sent, in text and in JSON', async () => {
    const hostile = '\u001b[2J\u001b[H203.0.113.7\u009b31m\u2028'
    const args = ['explain', '--policy', EXAMPLE, '--authority', 'shop.example.com']
    const flags = [...args, '--peer', '10.1.2.3', '--header', `x-forwarded-for=${hostile}`]
    const text = await hostguard(...flags)
    const json = await hostguard(...flags, '--json')
    for (const r of [text, json]) {
      expect(r.code).toBe(0)
      const controls = [...r.stdout].filter((c) => {
        const code = c.charCodeAt(0)
        return (code < 0x20 && c !== '\n') || (code >= 0x7f && code <= 0x9f) || code === 0x2028
      })
      expect(controls).toEqual([])
    }
    expect(text.stdout).toContain('\\u001b[2J\\u001b[H203.0.113.7\\u009b31m\\u2028')
    expect(JSON.parse(json.stdout).chain.entries).toContain(hostile)
  })

  it('prints human text by default', async () => {
    const r = await hostguard(
      'explain',
      '--policy',
      EXAMPLE,
      '--authority',
      '10.0.12.34',
      '--peer',
      '10.0.3.77',
    )
    expect(r.stdout).toContain('reason   host_cidr\n')
    expect(r.stdout).toContain('rule     allowedCidrNets 10.0.0.0/16 holds "10.0.12.34"\n')
  })

  it('says that a request without --peer has no peer address', async () => {
    const r = await hostguard('explain', '--policy', EXAMPLE, '--authority', 'www.example.com')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('client   (unknown: the request has no peer address)\n')
    expect(r.stdout).toContain('chain    no peer address\n')
  })

  it('says why a peer in a request file is no client', async () => {
    const file = join(dir, 'bad-peer.json')
    writeFileSync(
      file,
      JSON.stringify({
        attributes: {
          source: { address: { socket_address: { address: '1.2.3' } } },
          request: { http: { host: 'www.example.com' } },
        },
      }),
    )
    const r = await hostguard('explain', '--policy', EXAMPLE, file)
    expect(r.stdout).toContain('client   (unknown: the peer "1.2.3" is not an IP address)\n')
    expect(r.stdout).toContain('chain    the peer 1.2.3\n')
  })

  it('shows the status a dry-run deny would have when enforced', async () => {
    const args = ['explain', '--policy', EXAMPLE, '--site', 'internal-api']
    const flags = [...args, '--authority', 'evil.example', '--peer', '10.0.0.9']
    const text = await hostguard(...flags)
    expect(text.stdout).toContain('decision deny (answered allow: dry run)\n')
    expect(text.stdout).toContain('status   - (dry run: enforced, the answer would be 403)\n')
    const json = JSON.parse((await hostguard(...flags, '--json')).stdout)
    expect(json).toMatchObject({ decision: 'deny', answer: 'allow', status: null, denyStatus: 403 })
  })

  it.each(['1.2.3', '10.0.0.1:443', '[2001:db8::1]', '010.0.0.1', 'localhost'])(
    'rejects --peer %s, naming it, with exit 2',
    async (peer) => {
      const r = await hostguard('explain', '--policy', EXAMPLE, '--authority', 'a', '--peer', peer)
      expect(r.code).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr).toContain(
        `hostguard explain: --peer wants an IP address such as 203.0.113.7 or 2001:db8::7 (no port, no brackets), got ${JSON.stringify(peer)}\n`,
      )
    },
  )

  it('rejects a request file it cannot read as a CheckRequest, saying which forms it reads', async () => {
    const txtpb = fixture(FIXTURE_NAMES[0] ?? '', 'txtpb')
    const forms =
      "explain reads a CheckRequest as .bin (protobuf bytes) or .json (proto JSON with the proto's field names)"
    const bare = join(dir, 'request')
    writeFileSync(bare, readFileSync(fixture(FIXTURE_NAMES[0] ?? '', 'bin')))
    const write = (name: string, text: string) => {
      writeFileSync(join(dir, name), text)
      return join(dir, name)
    }
    const camel = write(
      'camel.json',
      JSON.stringify({
        attributes: {
          source: { address: { socketAddress: { address: '203.0.113.7' } } },
          request: { http: { host: 'www.example.com' } },
        },
      }),
    )
    const directory = join(dir, 'directory.bin')
    mkdirSync(directory)
    for (const [file, message] of [
      [txtpb, `${txtpb}: ${forms}, not .txtpb`],
      [bare, `${bare}: ${forms}, not a file without an extension`],
      [
        camel,
        `${camel}: fields are named as in the proto: attributes.source.address.socketAddress is socket_address`,
      ],
      [write('list.json', '[]'), `${join(dir, 'list.json')}: a CheckRequest is a JSON object`],
      [write('broken.json', '{"attributes":'), `${join(dir, 'broken.json')}: not JSON: `],
      [
        write('wrong.json', '{"attributes": 5}'),
        `${join(dir, 'wrong.json')}: not a CheckRequest: .envoy.service.auth.v3.CheckRequest.attributes: object expected`,
      ],
      [join(dir, 'missing.bin'), `${join(dir, 'missing.bin')}: cannot read the request (ENOENT)`],
      [directory, `${directory}: cannot read the request (a directory, not a regular file)`],
    ] as const) {
      const r = await hostguard('explain', '--policy', EXAMPLE, file)
      expect(r.code, file).toBe(2)
      expect(r.stdout, file).toBe('')
      expect(r.stderr, file).toContain(`hostguard explain: ${message}`)
    }
  })

  it('says which keys of a JSON request it did not read', async () => {
    const typo = join(dir, 'typo.json')
    writeFileSync(
      typo,
      JSON.stringify({
        attributes: {
          request: { http: { host: 'www.example.com', hedaers: { x: '1' }, '\u009b2J': 1 } },
        },
      }),
    )
    const r = await hostguard('explain', '--policy', EXAMPLE, typo)
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('reason   host_allowed\n')
    expect(r.stderr).toBe(
      `hostguard explain: ${typo}: not read, hostguard reads no such field: attributes.request.http.hedaers, attributes.request.http.\\u009b2J\n`,
    )
  })

  it('takes a request file or request flags, not both, and one of them', async () => {
    const file = fixture(FIXTURE_NAMES[0] ?? '', 'bin')
    // --path / is its default, but given: a request flag all the same.
    const both = await hostguard('explain', '--policy', EXAMPLE, '--path', '/', file)
    expect(both.code).toBe(2)
    expect(both.stderr).toContain('give a request file or request flags, not both')
    const neither = await hostguard('explain', '--policy', EXAMPLE)
    expect(neither.code).toBe(2)
    expect(neither.stderr).toContain('give a request: a .bin or .json CheckRequest, or flags')
  })

  it('exits 1 with the policy errors', async () => {
    const bad = await hostguard('explain', '--policy', BAD, '--authority', 'a')
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain('[POLICY_HOST_PATTERN_PORT]')
  })
})

describe('hostguard explain --expect', () => {
  const allowed = ['explain', '--policy', EXAMPLE, '--authority', 'www.example.com']
  const allowedFrom = [...allowed, '--peer', '203.0.113.7']
  const dryRunDeny = [
    ...['explain', '--policy', EXAMPLE, '--site', 'internal-api'],
    ...['--authority', 'evil.example', '--peer', '10.0.0.9'],
  ]

  it.each([
    [allowedFrom, 'allow'],
    [allowedFrom, 'allow:host_allowed'],
    [['explain', '--policy', EXAMPLE, '--authority', 'evil.example'], 'deny:host_not_allowed'],
    // Dry run answers allow; --expect checks the decision, which enforcing would answer.
    [dryRunDeny, 'deny'],
    [dryRunDeny, 'deny:host_not_allowed'],
  ])('%j --expect %s: exit 0, the explanation printed', async (args, expected) => {
    const r = await hostguard(...args, '--expect', expected)
    expect(r.code).toBe(0)
    expect(r.stdout).toBe((await hostguard(...args)).stdout)
    expect(r.stderr).toBe('')
  })

  it.each([
    [allowedFrom, 'deny', 'expected deny, but the decision is allow:host_allowed'],
    [
      allowedFrom,
      'allow:host_cidr',
      'expected allow:host_cidr, but the decision is allow:host_allowed',
    ],
    [
      dryRunDeny,
      'allow',
      'expected allow, but the decision is deny:host_not_allowed (answered allow: dry run)',
    ],
  ])('%j --expect %s: exit 1, saying what the decision is', async (args, expected, message) => {
    const r = await hostguard(...args, '--expect', expected)
    expect(r.code).toBe(1)
    expect(r.stdout).toBe((await hostguard(...args)).stdout)
    expect(r.stderr).toBe(`hostguard explain: ${message}\n`)
  })

  it.each([
    [
      'yes',
      '--expect is allow or deny, optionally with a reason (deny:host_not_allowed); got "yes"',
    ],
    ['deny:', '--expect "deny:": "" is not a reason; the reasons are unknown_site, health_check,'],
    ['deny:nope', '--expect "deny:nope": "nope" is not a reason; the reasons are unknown_site,'],
    [
      'deny:host_allowed',
      '--expect deny:host_allowed never matches: host_allowed is an allow reason',
    ],
    [
      'allow:host_not_allowed',
      '--expect allow:host_not_allowed never matches: host_not_allowed is a deny reason',
    ],
  ])('rejects --expect %s with exit 2', async (expected, message) => {
    const r = await hostguard(...allowed, '--expect', expected)
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr).toContain(`hostguard explain: ${message}`)
  })
})

describe('hostguard explain --dialect', () => {
  const nginx = (...headers: string[]) => [
    ...['explain', '--policy', EXAMPLE, '--dialect', 'nginx', '--json'],
    ...headers.flatMap((h) => ['--header', h]),
  ]

  it('decides an HTTP authorization request as the listener does, with its answer headers', async () => {
    const r = await hostguard(
      ...nginx('X-Hostguard-Peer=203.0.113.7', 'X-Hostguard-Authority=blog.example.com'),
      '--site',
      'blog',
    )
    expect(r.code).toBe(0)
    const e = JSON.parse(r.stdout)
    expect(e).toMatchObject({
      decision: 'allow',
      reason: 'host_allowed',
      site: 'blog',
      status: null,
    })
    expect(e.set).toContainEqual({ name: 'x-hostguard-client', value: '203.0.113.7' })
  })

  it("answers nginx's deny 403 and names the intended status", async () => {
    const r = await hostguard(...nginx('x-hostguard-peer=203.0.113.7', 'x-hostguard-authority=a b'))
    const e = JSON.parse(r.stdout)
    expect(e).toMatchObject({ reason: 'invalid_host', status: 403, denyStatus: 400 })
    expect(e.set).toContainEqual({ name: 'x-hostguard-status', value: '400' })
  })

  it('says which header a proxy failed to set, and never allows the request', async () => {
    const r = await hostguard(
      ...['explain', '--policy', EXAMPLE, '--dialect', 'traefik'],
      ...['--header', 'x-forwarded-for=203.0.113.7', '--expect', 'deny:invalid_request'],
    )
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('rule     the traefik proxy sent no x-forwarded-host header')
  })

  it("appends Envoy's --path to the URL, as http_service does", async () => {
    const r = await hostguard(
      ...[
        'explain',
        '--policy',
        EXAMPLE,
        '--dialect',
        'envoy',
        '--json',
        '--path',
        '/health-check/',
      ],
      ...['--header', 'x-hostguard-peer=203.0.113.7', '--header', 'host=10.9.9.9'],
      ...['--header', 'x-health=secret'],
    )
    expect(JSON.parse(r.stdout)).toMatchObject({ reason: 'health_check' })
  })

  it.each([
    [
      ['--peer', '203.0.113.7'],
      'give them with --header (x-hostguard-peer, x-hostguard-authority, x-hostguard-path), not --peer',
    ],
    [['--path', '/x'], 'not --path'],
  ])('refuses %j with --dialect nginx: exit 2', async (extra, message) => {
    const r = await hostguard('explain', '--policy', EXAMPLE, '--dialect', 'nginx', ...extra)
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(message)
  })

  it('refuses a dialect it does not know, listing those it does', async () => {
    const r = await hostguard('explain', '--policy', EXAMPLE, '--dialect', 'apache')
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('--dialect is one of nginx, caddy, traefik, envoy; got "apache"')
  })
})

describe('the built command (dist/main.js)', () => {
  it('exits 0 after --help, with the usage the command has in process', async () => {
    const r = await spawnHostguard('--help')
    expect(r).toEqual({ ...(await hostguard('--help')), code: 0 })
  })

  it("prints package.json's version from any working directory", async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
    const { stdout } = await promisify(execFile)(process.execPath, [MAIN, '--version'], {
      cwd: tmpdir(),
    })
    expect(stdout).toBe(`${version}\n`)
  })

  it('exits 1 when explain --expect is not met', async () => {
    const r = await spawnHostguard(
      ...['explain', '--policy', EXAMPLE, '--authority', 'www.example.com', '--expect', 'deny'],
    )
    expect(r.code).toBe(1)
    expect(r.stdout).toContain('decision allow\n')
    expect(r.stderr).toBe(
      'hostguard explain: expected deny, but the decision is allow:host_allowed\n',
    )
  })

  it('exits 2 on a usage error', async () => {
    const r = await spawnHostguard('serve', '--policy', EXAMPLE, '--bogus')
    expect(r).toEqual({
      code: 2,
      stdout: '',
      stderr:
        'hostguard serve: unknown option "--bogus"\nrun "hostguard serve --help" for its options\n',
    })
  })
})
