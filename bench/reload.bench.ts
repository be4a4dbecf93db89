// How long a reload takes (read, parse, validate, compile, then the swap) for policies of 10,
// 1,000 and 10,000 host patterns and as many CIDRs (v4 and v6), side by side in one process.
// Run: npm run bench:micro -- bench/reload.bench.ts

import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bench, describe } from 'vitest'
import { PolicyStore } from '../src/policy/store.js'
import { policyFile } from '../test/support/policy.js'

/** A policy with `n` host patterns (half exact, half `.suffix`) and `n` CIDRs (half v4, half v6). */
function policyText(n: number): string {
  const hosts: string[] = []
  const cidrs: string[] = []
  for (let i = 0; i < n; i++) {
    hosts.push(i % 2 === 0 ? `app-${i}.example.com` : `.tenant-${i}.example.net`)
    cidrs.push(
      i % 2 === 0
        ? `10.${(i >> 8) & 255}.${i & 255}.0/24`
        : `2001:db8:${(i >> 4).toString(16)}:${(i & 15).toString(16)}00::/56`,
    )
  }
  return `version: 1\nallowedHosts:\n${hosts.map((h) => `  - "${h}"`).join('\n')}\nallowedCidrNets:\n${cidrs.map((c) => `  - "${c}"`).join('\n')}\n`
}

const dir = mkdtempSync(join(tmpdir(), 'hostguard-reload-bench-'))
const store = new PolicyStore()

describe('reload: read, parse, validate, compile, swap', () => {
  for (const n of [10, 1_000, 10_000]) {
    const file = join(dir, `policy-${n}.yaml`)
    writeFileSync(file, policyText(n))
    bench(
      `${n} hosts + ${n} CIDRs`,
      () => {
        store.swap(policyFile(file))
      },
      { iterations: n >= 10_000 ? 10 : 50, time: 0 },
    )
  }
})
