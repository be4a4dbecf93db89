// SPEC "Bounded work" at load: only regular files within --max-policy-bytes, and YAML aliases,
// sites and entries within bounds that no real policy reaches.

import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { readAddressFile } from '../../src/policy/address-file.js'
import { PolicyLoadError } from '../../src/policy/errors.js'
import { loadPolicyFile, parsePolicy } from '../../src/policy/load.js'
import { MAX_ENTRIES } from '../../src/policy/yaml-nodes.js'
import { skipLoudly } from '../support/system.js'

const dir = mkdtempSync(join(tmpdir(), 'hostguard-bounds-'))
const GOOD = 'version: 1\nallowedHosts: [a.example]\n'

function messages(load: () => unknown): string[] {
  try {
    load()
  } catch (err) {
    if (err instanceof PolicyLoadError) return err.errors.map((e) => e.message)
    throw err
  }
  throw new Error('loaded without errors')
}

const haveMkfifo = (() => {
  try {
    execFileSync('mkfifo', [join(dir, 'probe.fifo')])
    return true
  } catch {
    return false
  }
})()

/** A file of each kind that is not a regular file, as the policy, a secret and an address file. */
const kinds: [string, () => string, string][] = [
  [
    'a directory',
    () => {
      mkdirSync(join(dir, 'a-dir'), { recursive: true })
      return join(dir, 'a-dir')
    },
    'a directory, not a regular file',
  ],
  [
    'a symlink to /dev/zero',
    () => {
      const link = join(dir, `zero-${Math.random()}`)
      symlinkSync('/dev/zero', link)
      return link
    },
    'a character device, not a regular file',
  ],
  [
    'a file over --max-policy-bytes',
    () => {
      const big = join(dir, 'big.yaml')
      writeFileSync(big, `${GOOD}# ${'x'.repeat(2048)}\n`)
      return big
    },
    'bytes, over --max-policy-bytes 1024',
  ],
]
if (haveMkfifo)
  kinds.push([
    'a FIFO (nothing writes to it)',
    () => {
      const fifo = join(dir, `fifo-${Math.random()}`)
      execFileSync('mkfifo', [fifo])
      return fifo
    },
    'a FIFO, not a regular file',
  ])

describe('files a policy reads', () => {
  skipLoudly(!haveMkfifo, 'mkfifo is missing: the FIFO cases do not run')

  it.each(kinds)('refuses %s as the policy, naming it and why', (_, make, why) => {
    const file = make()
    const [message] = messages(() => loadPolicyFile(file, {}, { maxPolicyBytes: 1024 }))
    expect(message).toContain(`${file}:1:1 (file): cannot read the policy file (`)
    expect(message).toContain(why)
    expect(message).toContain('[POLICY_FILE_UNREADABLE]')
  })

  it.each(kinds)('refuses %s as a {file} secret', (_, make, why) => {
    const file = make()
    const policy = `version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-h, value: { file: ${file} }, paths: [/h] }\n`
    const [message] = messages(() => parsePolicy(policy, 'p.yaml', {}, { maxPolicyBytes: 1024 }))
    expect(message).toContain(`cannot read ${file} (`)
    expect(message).toContain(why)
    expect(message).toContain('[POLICY_SECRET_UNREADABLE]')
  })

  it.each(kinds)('refuses %s as an address file', (_, make, why) => {
    const file = make()
    const [message] = messages(() => readAddressFile(file, 'file:x', { maxPolicyBytes: 1024 }))
    expect(message).toContain(
      `${file}:1:1 (address file): cannot read the address file of file:x (`,
    )
    expect(message).toContain(why)
  })

  it('reads a regular file through a symlink, up to the bound exactly', () => {
    const file = join(dir, 'exact.yaml')
    writeFileSync(file, GOOD.padEnd(1024, '#'))
    symlinkSync(file, join(dir, 'exact-link.yaml'))
    expect(() =>
      loadPolicyFile(join(dir, 'exact-link.yaml'), {}, { maxPolicyBytes: 1024 }),
    ).not.toThrow()
  })
})

describe('YAML aliases and policy size', () => {
  it('refuses 16,000 aliases in a 64 KB file at once', () => {
    const text = `version: 1\nh: &h a.example\nallowedHosts: [${Array(16_000).fill('*h').join(', ')}]\n`
    expect(text.length).toBeLessThan(65_536)
    expect(messages(() => parsePolicy(text, 'p.yaml', {}))).toEqual([
      `p.yaml:3:${16 + 1000 * 4} (document): more than 1000 YAML aliases; write the lists out, or share fewer of them [POLICY_YAML_ALIASES]`,
    ])
  })

  it('refuses 2,000 sites that inherit an aliased 1,000-entry list (their aliases are over the cap)', () => {
    const list = Array.from({ length: 1000 }, (_, i) => `h${i}.example`).join(', ')
    const sites = Array.from({ length: 2000 }, (_, i) => `  s${i}: { allowedHosts: *hosts }\n`)
    const text = `version: 1\nallowedHosts: &hosts [${list}]\nsites:\n${sites.join('')}`
    expect(messages(() => parsePolicy(text, 'p.yaml', {}))).toEqual([
      'p.yaml:1004:26 (document): more than 1000 YAML aliases; write the lists out, or share fewer of them [POLICY_YAML_ALIASES]',
    ])
  })

  it('counts an aliased list at each use against the entries in all', () => {
    const list = Array.from({ length: 1000 }, (_, i) => `h${i}.example`).join(', ')
    const sites = Array.from({ length: 200 }, (_, i) => `  s${i}: { allowedHosts: *hosts }\n`)
    const text = `version: 1\nallowedHosts: &hosts [${list}]\nsites:\n${sites.join('')}`
    const found = messages(() => parsePolicy(text, 'p.yaml', {}))
    expect(found).toHaveLength(1)
    expect(found[0]).toMatch(
      new RegExp(
        `sites\\.s\\d+\\.allowedHosts: the policy has more than ${MAX_ENTRIES} list and mapping entries .*\\[POLICY_TOO_MANY_ENTRIES\\]$`,
      ),
    )
  })

  it('still reads a policy that shares a list by alias a few times', () => {
    const text =
      'version: 1\nallowedHosts: [a.example]\ntrustedProxies: &lb [10.0.0.0/8]\nsites:\n  x: { trustedProxies: *lb }\n  y: { trustedProxies: *lb }\n'
    const spec = parsePolicy(text, 'p.yaml', {})
    expect(spec.sites.get('y')?.trustedProxies?.ranges).toHaveLength(1)
  })

  it('refuses an address file of more than 100,000 entries, naming the line', () => {
    const file = join(dir, 'many.txt')
    writeFileSync(file, '10.0.0.1\n'.repeat(MAX_ENTRIES + 1))
    expect(messages(() => readAddressFile(file, 'file:many.txt'))).toEqual([
      `${file}:${MAX_ENTRIES + 1}:1 (address file): more than ${MAX_ENTRIES} entries in one address file [POLICY_TOO_MANY_ENTRIES]`,
    ])
  })
})
