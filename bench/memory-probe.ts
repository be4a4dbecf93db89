// npm run bench:memory's window into the servers that have no /metrics (the no-op, the bare
// process): on SIGUSR2, one JSON line on stdout with what hostguard's prom-client default metrics
// read. A server imports it only when HOSTGUARD_BENCH_MEMORY=1, so that without the variable it
// loads nothing more; node:v8 is part of the binary, and is read only when asked.

import { getHeapSpaceStatistics, type HeapSpaceInfo } from 'node:v8'

export interface MemoryReport {
  readonly memory: NodeJS.MemoryUsage
  readonly spaces: readonly HeapSpaceInfo[]
}

process.on('SIGUSR2', () => {
  const report: MemoryReport = { memory: process.memoryUsage(), spaces: getHeapSpaceStatistics() }
  process.stdout.write(`${JSON.stringify(report)}\n`)
})
