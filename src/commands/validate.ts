// `hostguard validate [--format text|json] [--strict] [--skip-secrets] FILE…`: the same loader
// and compiler as serve, for CI pipelines and pre-commit hooks. --skip-secrets is for a CI job
// that has the policy but not the Secret it names: each secret's source is checked, not read.

import { readAddressFile } from '../policy/address-file.js'
import { sourcesOf } from '../policy/address-list.js'
import { compilePolicy } from '../policy/compile.js'
import { type PolicyError, PolicyLoadError } from '../policy/errors.js'
import { loadPolicyFile } from '../policy/load.js'
import { maxPolicyBytes, parse, UsageError } from './args.js'

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

function validateFile(file: string, options: ValidateOptions): FileResult {
  const { strict, ...read } = options
  try {
    const spec = loadPolicyFile(file, process.env, read)
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

/** Exit code: 0 when every file is valid, 1 otherwise. */
export function validateCommand(args: string[]): number {
  const { values, positionals } = parse(
    args,
    {
      format: { type: 'string', default: 'text' },
      strict: { type: 'boolean', default: false },
      'max-policy-bytes': { type: 'string' },
      'skip-secrets': { type: 'boolean', default: false },
    },
    true,
  )
  if (values.format !== 'text' && values.format !== 'json')
    throw new UsageError(`--format is text or json, not "${values.format}"`)
  if (positionals.length === 0) throw new UsageError('name at least one policy file')
  const options = {
    strict: values.strict,
    maxPolicyBytes: maxPolicyBytes(values['max-policy-bytes']),
    skipSecrets: values['skip-secrets'],
  }
  const results = positionals.map((file) => validateFile(file, options))
  const valid = results.every((r) => r.valid)
  if (values.format === 'json') {
    const files = results.map((r) => ({
      file: r.file,
      valid: r.valid,
      errors: r.errors.map(asJson),
      warnings: r.warnings.map(asJson),
    }))
    process.stdout.write(`${JSON.stringify({ valid, files }, null, 2)}\n`)
  } else {
    for (const r of results) {
      for (const e of [...r.errors, ...r.warnings]) process.stdout.write(`${e.message}\n`)
      const counts = [
        r.errors.length && `${r.errors.length} error(s)`,
        r.warnings.length && `${r.warnings.length} warning(s)`,
      ].filter(Boolean)
      process.stderr.write(
        `${r.file}: ${r.valid ? 'valid' : 'invalid'}${counts.length ? ` (${counts.join(', ')})` : ''}\n`,
      )
    }
  }
  return valid ? 0 : 1
}
