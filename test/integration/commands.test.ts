import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Client } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import { callCheck, checkClient } from '../support/grpc.js'
import { FIXTURES, type Message, official, ROOT } from '../support/protos.js'
import { startServer } from '../support/server.js'

const MAIN = join(ROOT, 'dist', 'main.js')
const EXAMPLE = join(ROOT, 'examples', 'policy.yaml')
const FIXTURE_NAMES = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.bin'))
  .map((f) => f.slice(0, -4))

// The example's demo secret comes from its env default, whatever this shell has set.
const { HEALTH_CHECK_HEADER_VALUE: _unset, ...ENV } = process.env

/** Runs the built command; resolves with its exit code and output, whatever the code. */
async function hostguard(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [MAIN, ...args], {
      env: ENV,
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
    const r = await hostguard('validate')
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('usage:')
  })
})

describe('hostguard explain', () => {
  let running: Running
  let client: Client
  beforeAll(async () => {
    running = await startServer(EXAMPLE)
    client = checkClient(running.grpcPort)
  })
  afterAll(async () => {
    client.close()
    await running.stop()
  })

  async function serverAnswer(bytes: Buffer): Promise<Message> {
    return official.decodeResponse(await callCheck(client, bytes))
  }

  it('agrees with the server on every Envoy fixture, from .bin and from .json', {
    timeout: 60_000,
  }, async () => {
    const explained = await Promise.all(
      FIXTURE_NAMES.flatMap((name) =>
        ['bin', 'json'].map((ext) =>
          hostguard('explain', '--policy', EXAMPLE, '--json', join(FIXTURES, `${name}.${ext}`)),
        ),
      ),
    )
    for (const [i, name] of FIXTURE_NAMES.entries()) {
      const fromBin = explained[2 * i]
      const fromJson = explained[2 * i + 1]
      expect(fromBin?.code, name).toBe(0)
      const e = JSON.parse(fromBin?.stdout ?? '')
      expect(JSON.parse(fromJson?.stdout ?? ''), name).toEqual(e)
      const answer = await serverAnswer(readFileSync(join(FIXTURES, `${name}.bin`)))
      const meta = Object.fromEntries(
        Object.entries(answer.dynamic_metadata.fields).map(([k, v]) => [
          k,
          (v as Message).stringValue,
        ]),
      )
      expect(
        { decision: e.decision, reason: e.reason, site: e.site, mode: e.mode, client: e.client },
        name,
      ).toEqual({
        decision: meta['decision'],
        reason: meta['reason'],
        site: meta['site'],
        mode: meta['mode'],
        client: meta['client'] ?? null,
      })
      expect(e.answer, name).toBe(answer.ok_response ? 'allow' : 'deny')
      expect(e.set, name).toEqual(
        (answer.ok_response?.headers ?? []).map((h: Message) => ({
          name: h.header.key,
          value: h.header.value,
        })),
      )
      expect(e.remove, name).toEqual(answer.ok_response?.headers_to_remove ?? [])
      expect(e.status, name).toBe(answer.denied_response ? 403 : null)
      expect(e.rule, name).toEqual(expect.any(String))
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

  it('exits 1 with the policy errors, and 2 without a request', async () => {
    const bad = await hostguard('explain', '--policy', BAD, '--authority', 'a')
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain('[POLICY_HOST_PATTERN_PORT]')
    expect((await hostguard('explain', '--policy', EXAMPLE)).code).toBe(2)
  })
})
