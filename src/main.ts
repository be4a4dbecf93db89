#!/usr/bin/env node
// The hostguard command: serve, validate, explain.

import { UsageError } from './commands/args.js'
import { explainCommand } from './commands/explain.js'
import { serveCommand } from './commands/serve.js'
import { validateCommand } from './commands/validate.js'

const USAGE = `usage:
  hostguard serve --policy FILE [--grpc-port 9000] [--http-port 9001] [--listen 0.0.0.0]
                  [--log-level info]            (LOG_LEVEL sets the default level)
                  [--grace-period 10]           seconds to drain and finish calls on SIGTERM
                  [--max-request-bytes 1048576] [--max-forwarded-hops 32] [--max-header-bytes 8192]
                  [--max-concurrent-streams 1024] [--request-timeout 10] [--preface-timeout 10]
                  [--kubeconfig FILE] [--cache-dir DIR] [--sync-wait 30]   for k8s: address sources
  hostguard validate [--format text|json] [--strict] FILE...
  hostguard explain --policy FILE [--json] REQUEST.bin|REQUEST.json
  hostguard explain --policy FILE [--json] [--authority HOST] [--peer IP] [--header NAME=VALUE]...
                    [--path PATH] [--method METHOD] [--site NAME]
                    [--kubeconfig FILE] [--cache-dir DIR] [--sync-wait 10]
`

async function main(argv: string[]): Promise<number | undefined> {
  const [command, ...rest] = argv
  switch (command) {
    case 'serve':
      return serveCommand(rest)
    case 'validate':
      return validateCommand(rest)
    case 'explain':
      return explainCommand(rest)
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
