// Each command's options as one table: it parses the arguments, checks every value, and writes
// the command's usage, so the usage cannot list an option the parser does not take, or another
// default than the one applied.

import { parseArgs } from 'node:util'
import { DEFAULT_MAX_POLICY_BYTES } from '../policy/read.js'

/** A usage error: the command prints it with a pointer to its --help and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** Where a command writes, and the environment it reads: the process's own, or a test's. */
export interface CommandIo {
  readonly stdout: { write(text: string): unknown }
  readonly stderr: { write(text: string): unknown }
  readonly env: NodeJS.ProcessEnv
}

/** `--name`: true when given. */
interface FlagOption {
  readonly kind: 'flag'
  readonly help: string
}

/** `--name VALUE`, once, or again and again when `multiple`. */
interface TextOption {
  readonly kind: 'text'
  /** The value's placeholder in the usage: FILE, HOST. */
  readonly value: string
  readonly help: string
  readonly required?: true
  readonly multiple?: true
  readonly default?: string
  /** An environment variable that sets the default. */
  readonly env?: string
  readonly choices?: readonly string[]
}

/** `--name N`: a whole number within [min, max]; without a default, undefined unless given. */
interface WholeOption {
  readonly kind: 'whole'
  readonly value: string
  readonly help: string
  readonly default?: number
  readonly min: number
  readonly max: number
}

type OptionSpec = FlagOption | TextOption | WholeOption

export interface CommandSpec {
  readonly name: string
  /** What the command does, in one line. */
  readonly summary: string
  readonly options: Readonly<Record<string, OptionSpec>>
  /** Its positional arguments: their placeholder, and how many it takes. */
  readonly operands?: { readonly value: string; readonly min: number; readonly max: number }
  /** Paragraphs that follow the options in --help. */
  readonly notes?: readonly string[]
}

type ValueOf<O extends OptionSpec> = O extends FlagOption
  ? boolean
  : O extends WholeOption
    ? O extends { readonly default: number }
      ? number
      : number | undefined
    : O extends { readonly multiple: true }
      ? string[]
      : O extends { readonly required: true } | { readonly default: string }
        ? string
        : string | undefined

export interface Parsed<S extends CommandSpec> {
  readonly values: { readonly [K in keyof S['options']]: ValueOf<S['options'][K]> }
  readonly operands: readonly string[]
  /** The options given on the command line (not from a default or the environment). */
  readonly given: ReadonlySet<string>
}

/** `--max-policy-bytes` (serve, validate, explain). */
export const MAX_POLICY_BYTES_OPTION = {
  kind: 'whole',
  value: 'BYTES',
  default: DEFAULT_MAX_POLICY_BYTES,
  min: 1024,
  max: 1024 * 1024 * 1024,
  help: 'largest policy, {file} secret or address file read',
} as const satisfies WholeOption

/** -h and --help, anywhere before a `--`. */
export function asksForHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--')
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '-h' || a === '--help')
}

const quote = (text: string): string => JSON.stringify(text)

// C0 and C1 controls, DEL, and the Unicode line and paragraph separators: bytes from a request
// (a captured x-forwarded-for, a Host) or an argument must not move the operator's cursor or
// clear the screen (SPEC: explain escapes control characters in everything it prints).
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is its job
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g

/** One control character as a \uXXXX escape. */
export const escapeControl = (c: string): string =>
  `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`

/** The text with every control character, newlines too, written as a \uXXXX escape. */
export function escapeControls(text: string): string {
  return text.replace(CONTROL, escapeControl)
}

function wholeValue(
  option: WholeOption,
  flag: string,
  text: string | undefined,
): number | undefined {
  if (text === undefined) return option.default
  const n = Number(text)
  if (!/^[0-9]{1,10}$/.test(text) || n < option.min || n > option.max) {
    throw new UsageError(
      `${flag} wants a whole number from ${option.min} to ${option.max}, got ${quote(text)}`,
    )
  }
  return n
}

/** A FILE or DIR option: its value is a path. */
function namesPath(option: TextOption | WholeOption): boolean {
  return option.kind === 'text' && (option.value === 'FILE' || option.value === 'DIR')
}

function textValue(
  option: TextOption,
  flag: string,
  given: string | undefined,
  env: NodeJS.ProcessEnv,
): string | undefined {
  // An empty variable is an unset one: a Helm value or a Compose `LOG_LEVEL=` left empty.
  const fromEnv = option.env === undefined ? undefined : env[option.env] || undefined
  const value = given ?? fromEnv ?? option.default
  if (value === undefined) {
    if (option.required) throw new UsageError(`${flag} ${option.value} is required`)
    return undefined
  }
  if (option.choices && !option.choices.includes(value)) {
    const source = given === undefined && fromEnv !== undefined ? `${option.env}` : flag
    throw new UsageError(`${source} is one of ${option.choices.join(', ')}; got ${quote(value)}`)
  }
  return value
}

/**
 * The arguments read against the spec: every option known and given a value of its kind, at
 * most once unless it is `multiple`, and the operands counted. Any mistake throws UsageError
 * naming the option.
 */
export function parseCommand<S extends CommandSpec>(
  spec: S,
  args: string[],
  env: NodeJS.ProcessEnv,
): Parsed<S> {
  // Tokens only: node's own strict mode words its errors for programmers, and lets a repeated
  // option silently win.
  const { tokens } = parseArgs({
    args,
    options: Object.fromEntries(
      Object.entries(spec.options).map(([name, o]) => [
        name,
        { type: o.kind === 'flag' ? ('boolean' as const) : ('string' as const) },
      ]),
    ),
    strict: false,
    allowPositionals: true,
    tokens: true,
  })
  const given = new Map<string, string[]>()
  const operands: string[] = []
  for (const token of tokens) {
    if (token.kind === 'positional') operands.push(token.value)
    if (token.kind !== 'option') continue
    const option = Object.hasOwn(spec.options, token.name) ? spec.options[token.name] : undefined
    if (option === undefined) throw new UsageError(`unknown option ${quote(token.rawName)}`)
    const flag = `--${token.name}`
    if (option.kind === 'flag') {
      if (token.value !== undefined) throw new UsageError(`${flag} takes no value`)
    } else if (token.value === undefined || (token.value === '' && namesPath(option))) {
      // `--policy=` or `--policy ""`: no path is empty, so the value was forgotten.
      throw new UsageError(`${flag} wants a value: ${flag} ${option.value}`)
    } else if (!token.inlineValue && token.value.startsWith('-')) {
      // `--policy --json`: a forgotten value, not a file named --json.
      throw new UsageError(
        `${flag} wants a value (${option.value}), got the option ${quote(token.value)}; write ${flag}=${token.value} if that is the value`,
      )
    }
    const values = given.get(token.name) ?? []
    if (values.length > 0 && !(option.kind === 'text' && option.multiple)) {
      throw new UsageError(`${flag} is given more than once`)
    }
    values.push(token.value ?? '')
    given.set(token.name, values)
  }
  const values: Record<string, unknown> = {}
  for (const [name, option] of Object.entries(spec.options)) {
    const flag = `--${name}`
    const all = given.get(name)
    if (option.kind === 'flag') values[name] = all !== undefined
    else if (option.kind === 'whole') values[name] = wholeValue(option, flag, all?.[0])
    else if (option.multiple) values[name] = all ?? []
    else values[name] = textValue(option, flag, all?.[0], env)
  }
  const { operands: counted } = spec
  if (counted === undefined && operands.length > 0) {
    throw new UsageError(
      `unexpected argument ${quote(operands[0] ?? '')}: ${spec.name} takes only options`,
    )
  }
  if (counted !== undefined && operands.length < counted.min) {
    throw new UsageError(`no ${counted.value.replace(/\.\.\.$/, '')} given`)
  }
  if (counted !== undefined && operands.length > counted.max) {
    throw new UsageError(`takes at most ${counted.max} ${counted.value}, got ${operands.length}`)
  }
  return { values: values as Parsed<S>['values'], operands, given: new Set(given.keys()) }
}

/** How an option reads in the synopsis: `--policy FILE`, `[--grpc-port 9000]`, `[--json]`. */
function synopsisOf(name: string, option: OptionSpec): string {
  const shown =
    option.kind === 'flag'
      ? `--${name}`
      : `--${name} ${option.kind === 'whole' ? (option.default ?? option.value) : (option.choices?.join('|') ?? option.default ?? option.value)}`
  if (option.kind === 'text' && option.required) return shown
  return option.kind === 'text' && option.multiple ? `[${shown}]...` : `[${shown}]`
}

const WIDTH = 100

// Joins words that wrap() keeps on one line: "default 32", "1 to 1000".
const KEEP = '\u00a0'

function defaultOf(option: OptionSpec): string | undefined {
  if (option.kind === 'whole') {
    const range = `${option.min}${KEEP}to${KEEP}${option.max}`
    return option.default === undefined ? `off; ${range}` : `${option.default}; ${range}`
  }
  if (option.kind !== 'text') return undefined
  const parts = [
    option.default,
    option.env === undefined ? undefined : `${option.env} sets it`,
  ].filter((p) => p !== undefined)
  return parts.length > 0 ? parts.join('; ') : undefined
}

/** `text` in lines of at most 100 columns, each after `indent` spaces but the first. */
function wrap(text: string, first: number, indent: number): string {
  const lines: string[] = []
  let line = ''
  let room = WIDTH - first
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > room) {
      lines.push(line)
      line = word
      room = WIDTH - indent
    } else {
      line = line === '' ? word : `${line} ${word}`
    }
  }
  lines.push(line)
  return lines.join(`\n${' '.repeat(indent)}`).replaceAll(KEEP, ' ')
}

/**
 * `hostguard NAME` and every option with its default, after `prefix` ("usage: "), wrapped to 100
 * columns under the first option.
 */
export function synopsis(spec: CommandSpec, prefix = ''): string {
  const head = `${prefix}hostguard ${spec.name}`
  const names = Object.keys(spec.options)
  const required = names.filter((n) => {
    const o = spec.options[n]
    return o?.kind === 'text' && o.required
  })
  const words = [...required, ...names.filter((n) => !required.includes(n))].map((n) =>
    synopsisOf(n, spec.options[n] as OptionSpec),
  )
  if (spec.operands)
    words.push(spec.operands.min === 0 ? `[${spec.operands.value}]` : spec.operands.value)
  const text = words.map((w) => w.replaceAll(' ', KEEP)).join(' ')
  return `${head} ${wrap(text, head.length + 1, head.length + 1)}`
}

/** `hostguard NAME --help`: the synopsis, what it does, and each option with its default. */
export function help(spec: CommandSpec): string {
  const rows = Object.entries(spec.options).map(([name, option]) => {
    const left = option.kind === 'flag' ? `--${name}` : `--${name} ${option.value}`
    const extra = [
      option.kind === 'text' && option.required ? 'required' : undefined,
      option.kind === 'text' && option.multiple ? 'repeatable' : undefined,
      option.kind === 'text' && option.choices ? `one of ${option.choices.join(', ')}` : undefined,
      defaultOf(option) && `default${KEEP}${defaultOf(option)}`,
    ].filter(Boolean)
    return [left, extra.length > 0 ? `${option.help} (${extra.join('; ')})` : option.help]
  })
  rows.push(['-h, --help', 'print this help and exit'])
  const width = Math.max(...rows.map(([left = '']) => left.length)) + 4
  const table = rows.map(
    ([left = '', right = '']) => `  ${left.padEnd(width - 2)}${wrap(right, width, width)}`,
  )
  return [
    synopsis(spec, 'usage: '),
    '',
    wrap(`${spec.summary}.`, 0, 0),
    '',
    'options:',
    ...table,
    ...(spec.notes ?? []).flatMap((note) => ['', wrap(note, 0, 0)]),
    '',
  ].join('\n')
}
