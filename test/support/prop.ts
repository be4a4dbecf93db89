import fc from 'fast-check'
import { it } from 'vitest'

/** A vitest test that checks a fast-check property (100 runs unless told). */
export function prop<T extends [unknown, ...unknown[]]>(
  name: string,
  arbitraries: { [K in keyof T]: fc.Arbitrary<T[K]> },
  check: (...args: T) => void,
  numRuns = 100,
): void {
  it(name, () => {
    fc.assert(fc.property(...arbitraries, check), { numRuns })
  })
}
