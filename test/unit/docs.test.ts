import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { POLICY_ERROR_CODES, POLICY_WARNING_CODES } from '../../src/policy/errors.js'
import { ROOT } from '../support/protos.js'

describe('docs/errors.md', () => {
  const documented = [
    ...readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8').matchAll(/^### (\S+)$/gm),
  ].map((m) => m[1])

  it('documents every error and warning code the loader has, and no other', () => {
    expect([...documented].sort()).toEqual([...POLICY_ERROR_CODES, ...POLICY_WARNING_CODES].sort())
  })
})
