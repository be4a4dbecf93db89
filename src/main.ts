#!/usr/bin/env node
// The hostguard command: serve, validate, explain.

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

const { UsageError } = await import('./commands/args.js')

const USAGE = `usage:
  hostguard serve --policy FILE [--grpc-port 9000] [--http-port 9001] [--listen 0.0.0.0]
                  [--log-level info]            (LOG_LEVEL sets the default level)
                  [--grace-period 10]           seconds to drain and finish calls on SIGTERM
                  [--max-request-bytes 1048576] [--max-forwarded-hops 32] [--max-header-bytes 8192]
                  [--max-policy-bytes 16777216]  largest policy, secret or address file read
                  [--max-concurrent-streams 1024] [--request-timeout 10] [--preface-timeout 10]
                  [--kubeconfig FILE] [--cache-dir DIR] [--sync-wait 30]   for k8s: address sources
  hostguard validate [--format text|json] [--strict] [--skip-secrets] [--max-policy-bytes 16777216] FILE...
  hostguard explain --policy FILE [--json] [--max-policy-bytes 16777216] REQUEST.bin|REQUEST.json
  hostguard explain --policy FILE [--json] [--authority HOST] [--peer IP] [--header NAME=VALUE]...
                    [--path PATH] [--method METHOD] [--site NAME]
                    [--kubeconfig FILE] [--cache-dir DIR] [--sync-wait 10]
`

async function main(argv: string[]): Promise<number | undefined> {
  const [command, ...rest] = argv
  switch (command) {
    case 'serve':
      return (await import('./commands/serve.js')).serveCommand(rest, signals)
    case 'validate':
      return (await import('./commands/validate.js')).validateCommand(rest)
    case 'explain':
      return (await import('./commands/explain.js')).explainCommand(rest)
    case '--help':
    case 'help':
      process.stdout.write(USAGE)
      return 0
    default:
      throw new UsageError(
        command === undefined ? 'no command given' : `unknown command "${command}"`,
      )
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`hostguard: ${err.message}\n${USAGE}`)
      process.exitCode = 2
    } else {
      process.stderr.write(`hostguard: ${(err as Error).message}\n`)
      process.exitCode = 1
    }
  },
)
