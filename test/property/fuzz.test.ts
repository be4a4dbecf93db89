import { describe, expect, it } from 'vitest'
import { runFuzz } from '../../fuzz/fuzz.js'
import { REASONS } from '../../src/decision/types.js'

describe('differential fuzzing (a few thousand cases; npm run fuzz for more)', () => {
  it.each([1, 2])('check() and the reference evaluator agree, seed %i', (seed) => {
    const result = runFuzz(3000, seed)
    expect(result.failures).toEqual([])
    // The generators reach every reason, so the comparison covers every path.
    expect(Object.keys(result.reasons).sort()).toEqual([...REASONS].sort())
    expect(result.mutated).toBeGreaterThan(500)
  })
})
