#!/usr/bin/env node
// The hostguard command: signals first, then src/commands/cli.ts runs the command named.

import { constants } from 'node:os'
import type { Signals } from './commands/serve.js'

// Signal handlers first, before the commands' modules are even loaded: a SIGHUP's default action
// ends the process (exit 129), and start-up (loading grpc-js, the first policy load) takes a
// while. Until `serve` takes them over, a SIGHUP is kept for it and SIGTERM/SIGINT exit at once.
let onReload: (() => void) | undefined
let reloadAsked = false
let onStop: ((signal: NodeJS.Signals) => void) | undefined
process.on('SIGHUP', () => {
  if (onReload) onReload()
  else reloadAsked = true
})
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (onStop) onStop(signal)
    else process.exit(128 + constants.signals[signal])
  })
}
const signals: Signals = {
  onReload(handler) {
    onReload = handler
    if (reloadAsked) {
      reloadAsked = false
      handler()
    }
  },
  onStop(handler) {
    onStop = handler
  },
}

const { runCommand } = await import('./commands/cli.js')
const code = await runCommand(process.argv.slice(2), process, signals)
if (code !== undefined) process.exitCode = code
