// In-process figures: check() per Envoy fixture against the library baseline (bench/baseline.ts,
// held to check()'s answers by test/cases/baseline.test.ts) on the same bytes, and decision time
// against policy size. tinybench times batches of BATCH calls, so that the timer's
// own cost does not swamp a call of a few microseconds.

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { GCProfiler } from 'node:v8'
import { Bench } from 'tinybench'
import { LineCounter, parseDocument } from 'yaml'
import type { CompiledPolicy } from '../src/decision/types.js'
import { check } from '../src/grpc-authz/check.js'
import { compilePolicy } from '../src/policy/compile.js'
import { parsePolicy } from '../src/policy/load.js'
import { FIXTURES, ROOT } from '../test/support/protos.js'
import { baselinePipeline } from './baseline.js'

const BATCH = 100

export interface Row {
  readonly name: string
  /** Median time per call, in nanoseconds. */
  readonly nsPerOp: number
  readonly opsPerSecond: number
  /** Bytes allocated on the V8 heap per call. */
  readonly heapBytesPerOp: number
}

declare const gc: (() => void) | undefined

/**
 * Heap bytes one call allocates: the heap's growth over a run of calls plus what each collection
 * during the run freed (a scavenge frees what the run allocated, so the growth alone hides up to a
 * young generation's worth: 16 MiB over 20,000 calls is 840 B a call).
 */
export function heapPerOp(fn: () => void, calls: number): number {
  if (typeof gc !== 'function') return Number.NaN
  gc()
  const collections = new GCProfiler()
  collections.start()
  const before = process.memoryUsage().heapUsed
  for (let i = 0; i < calls; i++) fn()
  const after = process.memoryUsage().heapUsed
  let freed = 0
  for (const { beforeGC, afterGC } of collections.stop().statistics)
    freed += beforeGC.heapStatistics.usedHeapSize - afterGC.heapStatistics.usedHeapSize
  return Math.max(0, (after - before + freed) / calls)
}

export async function measure(
  tasks: Record<string, () => void>,
  timeMs: number,
  heapCalls = 20_000,
): Promise<Row[]> {
  const bench = new Bench({ time: timeMs, warmupTime: Math.min(200, timeMs / 2) })
  for (const [name, fn] of Object.entries(tasks)) {
    bench.add(name, () => {
      for (let i = 0; i < BATCH; i++) fn()
    })
  }
  await bench.run()
  return bench.tasks.map((task) => {
    // biome-ignore lint/suspicious/noExplicitAny: tinybench's result type is a union by state
    const result = task.result as any
    const nsPerOp = (result.latency.p50 * 1e6) / BATCH
    const fn = tasks[task.name] ?? (() => {})
    return {
      name: task.name,
      nsPerOp,
      opsPerSecond: 1e9 / nsPerOp,
      heapBytesPerOp: heapCalls > 0 ? heapPerOp(fn, heapCalls) : Number.NaN,
    }
  })
}

export interface FixtureRows {
  readonly fixture: string
  readonly hostguard: Row
  readonly baseline: Row
}

export async function fixturesBench(timeMs: number): Promise<FixtureRows[]> {
  const text = readFileSync(join(ROOT, 'examples', 'policy.yaml'), 'utf8')
  const policy = compilePolicy(parsePolicy(text, 'examples/policy.yaml', {}))
  const baseline = baselinePipeline(text)
  const out: FixtureRows[] = []
  for (const file of readdirSync(FIXTURES).filter((f) => f.endsWith('.bin'))) {
    const bytes = readFileSync(join(FIXTURES, file))
    const [hostguard, library] = await measure(
      { hostguard: () => check(policy, bytes), baseline: () => baseline(bytes) },
      timeMs,
    )
    if (hostguard && library)
      out.push({ fixture: file.replace(/\.bin$/, ''), hostguard, baseline: library })
  }
  return out
}

/** A policy of n host patterns (half `.suffix`) and n CIDRs (half IPv6). */
export function policyOfSize(n: number): string {
  const hosts: string[] = ['www.example.com']
  const cidrs: string[] = ['10.0.0.0/16']
  for (let i = 1; i < n; i++) {
    hosts.push(i % 2 === 0 ? `app-${i}.example.com` : `.tenant-${i}.example.net`)
    cidrs.push(
      i % 2 === 0
        ? `172.${16 + ((i >> 16) & 15)}.${(i >> 8) & 255}.${i & 255}/32`
        : `2001:db8:${(i >> 4).toString(16)}:${(i & 15).toString(16)}00::/56`,
    )
  }
  return `version: 1\ntrustedProxies: [10.1.0.0/16]\nallowedHosts:\n${hosts.map((h) => `  - "${h}"`).join('\n')}\nallowedCidrNets:\n${cidrs.map((c) => `  - "${c}"`).join('\n')}\n`
}

export interface ScaleRow {
  readonly entries: number
  readonly decision: Row
  /** parse + validate + compile, in milliseconds (median of a few). */
  readonly compileMs: number
  /** yaml's parseDocument alone on the same text, alternated with the above (median). */
  readonly yamlMs: number
}

export async function scaleBench(timeMs: number, sizes: readonly number[]): Promise<ScaleRow[]> {
  const requests = [
    '01-ipv4-direct-host',
    '04-elb-healthcheck-node-ip-host',
    '10-istio-mtls-principal',
  ].map((f) => readFileSync(join(FIXTURES, `${f}.bin`)))
  const out: ScaleRow[] = []
  for (const n of sizes) {
    const text = policyOfSize(n)
    const times: number[] = []
    const yamlTimes: number[] = []
    let policy: CompiledPolicy | undefined
    for (let i = 0; i < 5; i++) {
      let started = performance.now()
      policy = compilePolicy(parsePolicy(text, `policy-${n}.yaml`, {}))
      times.push(performance.now() - started)
      // The floor under a reload: the YAML library's parse, which parsePolicy starts with.
      started = performance.now()
      parseDocument(text, { lineCounter: new LineCounter(), prettyErrors: false })
      yamlTimes.push(performance.now() - started)
    }
    times.sort((a, b) => a - b)
    yamlTimes.sort((a, b) => a - b)
    const compiled = policy as CompiledPolicy
    let k = 0
    const [decision] = await measure(
      { [`${n} entries`]: () => check(compiled, requests[k++ % requests.length] as Buffer) },
      timeMs,
    )
    if (decision)
      out.push({
        entries: n,
        decision,
        compileMs: times[2] ?? Number.NaN,
        yamlMs: yamlTimes[2] ?? Number.NaN,
      })
  }
  return out
}
