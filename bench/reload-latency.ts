// Check latency while the 10,000-host + 10,000-CIDR policy reloads in a loop, against none, in
// one run. check() is called on the main thread on an open-loop schedule (one call every
// INTERVAL_US), and each call's latency is counted from when it was due, not from when it ran:
// a main thread stalled by a reload (the swap, a message from the load worker) delays every call
// due meanwhile, as it would delay the Checks Envoy sends. A third phase reloads on the main
// thread itself (loadPolicyFile and compilePolicy called in place, as before the load worker),
// for scale.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_LIMITS } from '../src/decision/types.js'
import { check } from '../src/grpc-authz/check.js'
import { compilePolicy } from '../src/policy/compile.js'
import { loadPolicyFile } from '../src/policy/load.js'
import { PolicyLoader } from '../src/policy/loader.js'
import { DEFAULT_MAX_POLICY_BYTES } from '../src/policy/read.js'
import { PolicyStore } from '../src/policy/store.js'
import { FIXTURES } from '../test/support/protos.js'
import { policyOfSize } from './inprocess.js'

const INTERVAL_US = 200

export const PHASES = ['no reload', 'reloading', 'reloading on the main thread'] as const
export type Phase = (typeof PHASES)[number]

export interface LatencyRow {
  readonly phase: Phase
  readonly calls: number
  readonly reloads: number
  readonly p50Us: number
  readonly p99Us: number
  readonly p999Us: number
  readonly maxUs: number
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
}

/** Lets the thread sleep: a server waiting for calls uses no CPU (a spinning loop would). */
const sleeper = new Int32Array(new SharedArrayBuffer(4))

/**
 * Calls check() every INTERVAL_US for `ms`, sleeping until a call is due and yielding to the
 * event loop (where the load worker's messages arrive) between due calls.
 */
async function schedule(ms: number, call: () => void): Promise<Float64Array> {
  const latencies: number[] = []
  const start = performance.now()
  let due = start
  const interval = INTERVAL_US / 1000
  while (due - start < ms) {
    const now = performance.now()
    while (due <= now && due - start < ms) {
      call()
      latencies.push(performance.now() - due)
      due += interval
    }
    const wait = due - performance.now()
    if (wait > 0) Atomics.wait(sleeper, 0, 0, wait)
    await new Promise((resolve) => setImmediate(resolve))
  }
  return Float64Array.from(latencies).sort()
}

/** Rounds of `ms` each, alternating no reload and reloading in a loop. */
export async function reloadLatencyBench(rounds: number, ms: number): Promise<LatencyRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'hostguard-reload-latency-'))
  const file = join(dir, 'policy.yaml')
  writeFileSync(file, policyOfSize(10_000))
  const request = readFileSync(join(FIXTURES, '01-ipv4-direct-host.bin'))
  const loader = new PolicyLoader()
  const store = new PolicyStore()
  const load = async (): Promise<void> => {
    const loaded = await loader.load({
      file,
      env: {},
      limits: DEFAULT_LIMITS,
      maxPolicyBytes: DEFAULT_MAX_POLICY_BYTES,
      force: true,
    })
    if (loaded) store.swap(loaded.policy)
  }
  await load()
  const call = (): void => {
    const policy = store.current
    if (policy) check(policy, request)
  }
  await schedule(Math.min(ms, 1000), call) // warm-up
  const rows: LatencyRow[] = []
  try {
    for (let round = 0; round < rounds; round++) {
      for (const phase of PHASES) {
        let reloads = 0
        let stop = false
        const inPlace = async (): Promise<void> => {
          while (!stop) {
            store.swap(compilePolicy(loadPolicyFile(file, {})))
            reloads++
            await new Promise((resolve) => setImmediate(resolve))
          }
        }
        const inWorker = async (): Promise<void> => {
          while (!stop) {
            await load()
            reloads++
          }
        }
        const reloading =
          phase === 'reloading' ? inWorker() : phase === 'no reload' ? Promise.resolve() : inPlace()
        const sorted = await schedule(ms, call)
        stop = true
        await reloading
        rows.push({
          phase,
          calls: sorted.length,
          reloads,
          p50Us: quantile(sorted, 0.5) * 1000,
          p99Us: quantile(sorted, 0.99) * 1000,
          p999Us: quantile(sorted, 0.999) * 1000,
          maxUs: (sorted.at(-1) ?? Number.NaN) * 1000,
        })
      }
    }
  } finally {
    await loader.close()
    rmSync(dir, { recursive: true, force: true })
  }
  return rows
}
