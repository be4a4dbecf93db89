import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { type CommandSpec, help, parseCommand, synopsis } from '../../src/commands/args.js'
import { usage } from '../../src/commands/cli.js'
import { EXPLAIN } from '../../src/commands/explain.js'
import { SERVE } from '../../src/commands/serve.js'
import { VALIDATE } from '../../src/commands/validate.js'
import { hostguard } from '../support/cli.js'
import { ROOT } from '../support/protos.js'

const COMMANDS = [SERVE, VALIDATE, EXPLAIN]

const SPEC = {
  name: 'demo',
  summary: 'A command for these tests',
  options: {
    policy: { kind: 'text', value: 'FILE', required: true, help: 'the policy' },
    json: { kind: 'flag', help: 'JSON' },
    header: { kind: 'text', value: 'NAME=VALUE', multiple: true, help: 'a header' },
    level: {
      kind: 'text',
      value: 'LEVEL',
      default: 'info',
      env: 'DEMO_LEVEL',
      choices: ['info', 'debug'],
      help: 'the level',
    },
    port: { kind: 'whole', value: 'PORT', default: 9000, min: 0, max: 65535, help: 'a port' },
  },
  operands: { value: 'FILE...', min: 0, max: 2 },
} as const satisfies CommandSpec

const parse = (args: string[], env: NodeJS.ProcessEnv = {}) => parseCommand(SPEC, args, env)

describe('parseCommand', () => {
  it('reads every option by its kind, with the defaults for those not given', () => {
    const { values, operands, given } = parse([
      '--policy',
      'p.yaml',
      '--header',
      'a=1',
      '--header=b=2',
      '--json',
      'x',
    ])
    expect(values).toEqual({
      policy: 'p.yaml',
      json: true,
      header: ['a=1', 'b=2'],
      level: 'info',
      port: 9000,
    })
    expect(operands).toEqual(['x'])
    expect([...given].sort()).toEqual(['header', 'json', 'policy'])
  })

  it('takes the default from the environment variable, the flag over it', () => {
    expect(parse(['--policy', 'p'], { DEMO_LEVEL: 'debug' }).values.level).toBe('debug')
    expect(parse(['--policy', 'p', '--level', 'info'], { DEMO_LEVEL: 'debug' }).values.level).toBe(
      'info',
    )
  })

  it.each([
    [['--policy', 'p', '--bogus'], 'unknown option "--bogus"'],
    [['--policy', 'p', '-x'], 'unknown option "-x"'],
    [['--port', '1'], '--policy FILE is required'],
    [['--policy'], '--policy wants a value: --policy FILE'],
    [
      ['--policy', '--json'],
      '--policy wants a value (FILE), got the option "--json"; write --policy=--json if that is the value',
    ],
    [['--policy', 'a', '--policy', 'b'], '--policy is given more than once'],
    // No file is named "": an empty value for a FILE is a forgotten one (else: ENOENT, file "").
    [['--policy='], '--policy wants a value: --policy FILE'],
    [['--policy', ''], '--policy wants a value: --policy FILE'],
    [['--policy', 'p', '--json=yes'], '--json takes no value'],
    [['--policy', 'p', '--level', 'verbose'], '--level is one of info, debug; got "verbose"'],
    [
      ['--policy', 'p', '--port', '65536'],
      '--port wants a whole number from 0 to 65535, got "65536"',
    ],
    [
      ['--policy', 'p', '--port', '0x10'],
      '--port wants a whole number from 0 to 65535, got "0x10"',
    ],
    [['--policy', 'p', 'a', 'b', 'c'], 'takes at most 2 FILE..., got 3'],
  ])('rejects %j: %s', (args, message) => {
    expect(() => parse(args)).toThrow(message)
  })

  it('names an argument a command without operands was given', () => {
    const spec = { name: 'demo', summary: 'A command', options: {} } as const satisfies CommandSpec
    expect(() => parseCommand(spec, ['x.yaml'], {})).toThrow(
      'unexpected argument "x.yaml": demo takes only options',
    )
  })

  it('takes an empty environment variable for an unset one', () => {
    expect(parse(['--policy', 'p'], { DEMO_LEVEL: '' }).values.level).toBe('info')
    expect(parseCommand(SERVE, ['--policy', 'p'], { LOG_LEVEL: '' }).values['log-level']).toBe(
      'info',
    )
  })

  it('names the environment variable when its value is not a choice', () => {
    expect(() => parse(['--policy', 'p'], { DEMO_LEVEL: 'verbose' })).toThrow(
      'DEMO_LEVEL is one of info, debug; got "verbose"',
    )
  })

  it('takes an empty value for an option that names no path', () => {
    expect(parse(['--policy', 'p', '--header=', '--header', '']).values.header).toEqual(['', ''])
    // explain's empty Host is a request worth asking about; its FILE and DIR options refuse "".
    const explain = (args: string[]) => parseCommand(EXPLAIN, ['--policy', 'p', ...args], {})
    expect(explain(['--authority', '']).values.authority).toBe('')
    expect(() => explain(['--cache-dir='])).toThrow('--cache-dir wants a value: --cache-dir DIR')
    expect(() => explain(['--kubeconfig', ''])).toThrow(
      '--kubeconfig wants a value: --kubeconfig FILE',
    )
  })

  it('takes a value that starts with a dash when written --name=value', () => {
    expect(parse(['--policy=--json']).values.policy).toBe('--json')
  })

  it('reads what follows -- as operands', () => {
    expect(parse(['--policy', 'p', '--', '--json']).operands).toEqual(['--json'])
  })
})

describe('usage', () => {
  it('lists every option in the synopsis and in --help, with its default', () => {
    for (const spec of COMMANDS) {
      const text = help(spec)
      for (const [name, option] of Object.entries(spec.options)) {
        expect(synopsis(spec), `${spec.name} --${name}`).toContain(`--${name}`)
        const row = text.split('\n').find((l) => l.startsWith(`  --${name} `))
        expect(row, `${spec.name} --${name}`).toBeDefined()
        if (option.kind === 'whole') {
          expect(text.replace(/\s+/g, ' '), `${spec.name} --${name}`).toContain(
            `default ${option.default ?? 'off'}; ${option.min} to ${option.max}`,
          )
        }
      }
      expect(text.split('\n').every((l) => l.length <= 100)).toBe(true)
    }
  })

  it("README's synopsis is the commands' own", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const block = /## Running it\n\n```sh\n([^`]*)```/.exec(readme)?.[1]
    expect(block).toBe(`${COMMANDS.map((c) => synopsis(c)).join('\n')}\n`)
  })

  it("docs/operations.md's flag tables name serve's options and their defaults", () => {
    const docs = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8')
    const rows = [...docs.matchAll(/^\| `--([a-z-]+)` +\| ([^|]+?) +\|/gm)]
    expect(rows.length).toBeGreaterThan(0)
    for (const [, name = '', written = ''] of rows) {
      const option = (SERVE.options as Record<string, CommandSpec['options'][string]>)[name]
      expect(option?.kind, name).toBe('whole')
      const [, n = '', unit] = /^([0-9]+)(?: (MiB|s))?$/.exec(written) ?? []
      const value = Number(n) * (unit === 'MiB' ? 1024 * 1024 : 1)
      expect(option?.kind === 'whole' && option.default, `--${name} ${written}`).toBe(value)
    }
  })
})

describe('hostguard', () => {
  it.each([['--help'], ['-h'], ['help']])(
    '%s prints what each command does and exits 0',
    async (arg) => {
      const r = await hostguard([arg])
      expect(r.code).toBe(0)
      for (const spec of COMMANDS) {
        expect(r.stdout).toContain(`  ${spec.name}`)
        expect(r.stdout).toContain(spec.summary)
        expect(r.stdout).toContain(synopsis(spec, '  '))
      }
      expect(r.stderr).toBe('')
    },
  )

  it.each(
    COMMANDS.flatMap((spec) => [
      [spec.name, '--help'],
      [spec.name, '-h'],
      ['help', spec.name],
    ]),
  )("%s %s prints the command's help and exits 0", async (...argv) => {
    const r = await hostguard(argv)
    const spec = COMMANDS.find((c) => argv.includes(c.name)) as CommandSpec
    expect(r).toEqual({ code: 0, stdout: help(spec), stderr: '' })
  })

  it('prints help for --help among other options, even a bad one', async () => {
    const r = await hostguard(['serve', '--policy', 'p.yaml', '--bogus', '--help'])
    expect(r).toEqual({ code: 0, stdout: help(SERVE), stderr: '' })
  })

  it("--version prints package.json's version", async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
    expect(await hostguard(['--version'])).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' })
  })

  it('names the unknown option and the command, and exits 2', async () => {
    const r = await hostguard(['validate', '--bogus', 'p.yaml'])
    expect(r).toEqual({
      code: 2,
      stdout: '',
      stderr:
        'hostguard validate: unknown option "--bogus"\nrun "hostguard validate --help" for its options\n',
    })
  })

  it('escapes control characters of an argument it names', async () => {
    const r = await hostguard(['validate', '--\u001b[2J\u009b31m', 'p.yaml'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('unknown option "--\\u001b[2J\\u009b31m"')
    expect([...r.stderr].filter((c) => c === '\u001b' || c === '\u009b')).toEqual([])
  })

  it('lists the log levels for an unknown one, from the flag or from LOG_LEVEL', async () => {
    const levels = 'trace, debug, info, warn, error, fatal, silent'
    const flag = await hostguard(['serve', '--policy', 'p.yaml', '--log-level', 'verbose'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain(`--log-level is one of ${levels}; got "verbose"`)
    const env = await hostguard(['serve', '--policy', 'p.yaml'], { LOG_LEVEL: 'verbose' })
    expect(env.code).toBe(2)
    expect(env.stderr).toContain(`LOG_LEVEL is one of ${levels}; got "verbose"`)
  })

  it('prints the usage for an unknown command or none, and exits 2', async () => {
    for (const [argv, message] of [
      [['-x'], 'hostguard: unknown command "-x"'],
      [[], 'hostguard: no command given'],
      [['help', 'bogus'], 'hostguard: unknown command "bogus"'],
    ] as const) {
      const r = await hostguard(argv)
      expect(r.code, message).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr).toBe(`${message}\n\n${await usage()}`)
    }
  })
})
