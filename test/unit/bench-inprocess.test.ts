import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { expect, test } from 'vitest'
import { heapPerOp } from '../../bench/inprocess.js'

// The bench runs with --expose-gc; a test worker does not, so it sets the flag and takes gc from a
// context made after it.
setFlagsFromString('--expose-gc')
Object.assign(globalThis, { gc: runInNewContext('gc') })

test('heapPerOp counts what each call allocates when the run is longer than the young generation', () => {
  const sink: number[][] = []
  const bytes = heapPerOp(() => {
    sink[0] = new Array<number>(1000).fill(0)
  }, 20_000)
  // 1000 elements of 8 bytes and the array's headers, 20,000 times: 160 MB, more than any
  // young generation, so the heap's growth alone would come out far short (under 1000).
  expect(bytes).toBeGreaterThanOrEqual(8000)
  expect(bytes).toBeLessThan(8600)
})
