import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { REASONS } from '../../src/decision/types.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { parsePolicy } from '../../src/policy/load.js'
import { ROOT } from '../support/protos.js'

const doc = readFileSync(join(ROOT, 'docs', 'policy.md'), 'utf8')
const examples = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] ?? '')

describe('docs/policy.md', () => {
  it('stands alone: lists every reason, and points at nothing outside the repository', () => {
    const listed = /^The reasons are a closed set[^:]*:([\s\S]*?)\n\n/m.exec(doc)?.[1] ?? ''
    expect([...listed.matchAll(/`(\w+)`/g)].map((m) => m[1])).toEqual([...REASONS])
    expect(doc).not.toMatch(/SPEC|shared folder|\.\.\/shared/)
  })

  it('has its worked examples', () => {
    expect(examples.length).toBeGreaterThanOrEqual(7)
  })

  it.each(examples.map((text, i) => [i + 1, text]))('example %i is a valid policy', (_, text) => {
    // Secret files named in the examples do not exist here: the file source is swapped for env.
    // (Address files, `{ file: … }` in an address list, are only read when serving.)
    const yaml = String(text).replace(/value: \{ file: [^}]+\}/, 'value: { env: DOC_SECRET }')
    expect(() =>
      compilePolicy(parsePolicy(yaml, 'docs/policy.md', { DOC_SECRET: 'x' })),
    ).not.toThrow()
  })
})
