// `hostguard validate [--format text|json] [--strict] [--skip-secrets] FILE…`: the same loader
// and compiler as serve, for CI pipelines and pre-commit hooks. --skip-secrets is for a CI job
// that has the policy but not the Secret it names: each secret's source is checked, not read.

import { readAddressFile } from '../policy/address-file.js'
import { sourcesOf } from '../policy/address-list.js'
import { compilePolicy } from '../policy/compile.js'
import { type PolicyError, PolicyLoadError } from '../policy/errors.js'
import { loadPolicyFile } from '../policy/load.js'
import { type CommandIo, type CommandSpec, MAX_POLICY_BYTES_OPTION, type Parsed } from './args.js'

interface FileResult {
  readonly file: string
  readonly valid: boolean
  readonly errors: readonly PolicyError[]
  readonly warnings: readonly PolicyError[]
}

interface ValidateOptions {
  readonly strict: boolean
  readonly maxPolicyBytes: number
  readonly skipSecrets: boolean
}

function validateFile(file: string, options: ValidateOptions, env: NodeJS.ProcessEnv): FileResult {
  const { strict, ...read } = options
  try {
    const spec = loadPolicyFile(file, env, read)
    // Address files are read as serve reads them; Kubernetes sources are not contacted.
    const errors: PolicyError[] = []
    for (const { source } of sourcesOf(spec).values()) {
      if (source.kind !== 'file') continue
      try {
        readAddressFile(source.path, source.name, read)
      } catch (err) {
        if (!(err instanceof PolicyLoadError)) throw err
        errors.push(...err.errors)
      }
    }
    if (errors.length > 0) throw new PolicyLoadError(errors)
    compilePolicy(spec)
    return {
      file,
      valid: !strict || spec.warnings.length === 0,
      errors: [],
      warnings: spec.warnings,
    }
  } catch (err) {
    if (!(err instanceof PolicyLoadError)) throw err
    return { file, valid: false, errors: err.errors, warnings: [] }
  }
}

function asJson(e: PolicyError) {
  return {
    code: e.code,
    file: e.at.file,
    line: e.at.line,
    col: e.at.col,
    field: e.at.field,
    message: e.detail,
  }
}

export const VALIDATE = {
  name: 'validate',
  summary:
    'Check policy files as serve loads them, for CI and pre-commit hooks; exit 1 on an error',
  options: {
    format: {
      kind: 'text',
      value: 'FORMAT',
      default: 'text',
      choices: ['text', 'json'],
      help: 'text: one file:line:col line per mistake; json: one document for pipelines',
    },
    strict: { kind: 'flag', help: 'warnings fail the file too' },
    'skip-secrets': {
      kind: 'flag',
      help: "check each secret's source (its form, variable name or file path) without reading it: for CI without the Secret",
    },
    'max-policy-bytes': MAX_POLICY_BYTES_OPTION,
  },
  operands: { value: 'FILE...', min: 1, max: Number.POSITIVE_INFINITY },
  notes: [
    'Address files are read as serve reads them; Kubernetes sources are not contacted. Exit 0 when every file is valid, 1 otherwise.',
  ],
} as const satisfies CommandSpec

/** Exit code: 0 when every file is valid, 1 otherwise. */
export function validateCommand(
  { values, operands }: Parsed<typeof VALIDATE>,
  io: CommandIo,
): number {
  const options = {
    strict: values.strict,
    maxPolicyBytes: values['max-policy-bytes'],
    skipSecrets: values['skip-secrets'],
  }
  const results = operands.map((file) => validateFile(file, options, io.env))
  const valid = results.every((r) => r.valid)
  if (values.format === 'json') {
    const files = results.map((r) => ({
      file: r.file,
      valid: r.valid,
      errors: r.errors.map(asJson),
      warnings: r.warnings.map(asJson),
    }))
    io.stdout.write(`${JSON.stringify({ valid, files }, null, 2)}\n`)
  } else {
    for (const r of results) {
      for (const e of [...r.errors, ...r.warnings]) io.stdout.write(`${e.message}\n`)
      const counts = [
        r.errors.length && `${r.errors.length} error(s)`,
        r.warnings.length && `${r.warnings.length} warning(s)`,
      ].filter(Boolean)
      io.stderr.write(
        `${r.file}: ${r.valid ? 'valid' : 'invalid'}${counts.length ? ` (${counts.join(', ')})` : ''}\n`,
      )
    }
  }
  return valid ? 0 : 1
}
