// The hostguard command in process: runCommand with captured output, as main.ts runs it.

import { runCommand } from '../../src/commands/cli.js'
import type { Signals } from '../../src/commands/serve.js'

export interface CommandRun {
  readonly code: number | undefined
  readonly stdout: string
  readonly stderr: string
}

// `serve` is not started in process here (tests start servers with test/support/server.ts):
// a command that reaches for the signals has gone further than its test meant.
const NO_SIGNALS: Signals = {
  onReload() {
    throw new Error('serve started in a command test')
  },
  onStop() {
    throw new Error('serve started in a command test')
  },
}

/** `hostguard ARGV...` in this process, with `env` as its environment (empty unless given). */
export async function hostguard(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CommandRun> {
  let stdout = ''
  let stderr = ''
  const io = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env,
  }
  const code = await runCommand([...argv], io, NO_SIGNALS)
  return { code, stdout, stderr }
}
