// The hostguard command line: which command runs, its --help, the top-level usage and --version.
// Each command's module is loaded only when it runs (serve's loads grpc-js); the usage loads all.

import { readFileSync } from 'node:fs'
import {
  asksForHelp,
  type CommandIo,
  type CommandSpec,
  escapeControls,
  help,
  type Parsed,
  parseCommand,
  synopsis,
  UsageError,
} from './args.js'
import type { Signals } from './serve.js'

/** The package's version, read where the built file is, so it is the installed one's. */
function version(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
  return String(manifest.version)
}

async function specs(): Promise<readonly CommandSpec[]> {
  const [serve, validate, explain] = await Promise.all([
    import('./serve.js'),
    import('./validate.js'),
    import('./explain.js'),
  ])
  return [serve.SERVE, validate.VALIDATE, explain.EXPLAIN]
}

/** `hostguard --help`: what each command does, and its synopsis. */
export async function usage(): Promise<string> {
  const commands = await specs()
  const width = Math.max(...commands.map((c) => c.name.length)) + 3
  return [
    `hostguard ${version()}: Envoy ext_authz service for Host, client address and health-check rules`,
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'usage:',
    ...commands.map((c) => synopsis(c, '  ')),
    '',
    "hostguard COMMAND --help   a command's options, what each does and its default",
    'hostguard --version        the version',
    '',
  ].join('\n')
}

/** Parses `args` for `spec` and runs the command, or prints its help when asked. */
async function invoke<S extends CommandSpec>(
  spec: S,
  args: string[],
  io: CommandIo,
  run: (parsed: Parsed<S>) => Promise<number | undefined> | number | undefined,
): Promise<number | undefined> {
  if (asksForHelp(args)) {
    io.stdout.write(help(spec))
    return 0
  }
  return run(parseCommand(spec, args, io.env))
}

async function dispatch(
  command: string | undefined,
  args: string[],
  io: CommandIo,
  signals: Signals,
): Promise<number | undefined> {
  switch (command) {
    case 'serve': {
      const { SERVE, serveCommand } = await import('./serve.js')
      return invoke(SERVE, args, io, (parsed) => serveCommand(parsed, signals))
    }
    case 'validate': {
      const { VALIDATE, validateCommand } = await import('./validate.js')
      return invoke(VALIDATE, args, io, (parsed) => validateCommand(parsed, io))
    }
    case 'explain': {
      const { EXPLAIN, explainCommand } = await import('./explain.js')
      return invoke(EXPLAIN, args, io, (parsed) => explainCommand(parsed, io))
    }
    case 'help':
    case '-h':
    case '--help': {
      // `hostguard help serve` is `hostguard serve --help`.
      const [of] = args
      if (of !== undefined && command === 'help') return dispatch(of, ['--help'], io, signals)
      io.stdout.write(await usage())
      return 0
    }
    case '--version':
      io.stdout.write(`${version()}\n`)
      return 0
    default:
      throw new UsageError(
        command === undefined ? 'no command given' : `unknown command ${JSON.stringify(command)}`,
      )
  }
}

const COMMANDS = new Set(['serve', 'validate', 'explain'])

/**
 * Runs `hostguard ARGV...`. Resolves with the exit code: 0 done, 1 failed (a bad policy, an
 * unmet `explain --expect`), 2 a usage error; undefined while `serve` serves.
 */
export async function runCommand(
  argv: string[],
  io: CommandIo,
  signals: Signals,
): Promise<number | undefined> {
  const [command, ...args] = argv
  try {
    return await dispatch(command, args, io, signals)
  } catch (err) {
    // An argument or a request file may carry control characters: escaped, as explain's output.
    const message = escapeControls((err as Error).message)
    if (!(err instanceof UsageError)) {
      io.stderr.write(`hostguard: ${message}\n`)
      return 1
    }
    if (command !== undefined && COMMANDS.has(command)) {
      io.stderr.write(
        `hostguard ${command}: ${message}\nrun "hostguard ${command} --help" for its options\n`,
      )
    } else {
      io.stderr.write(`hostguard: ${message}\n\n${await usage()}`)
    }
    return 2
  }
}
