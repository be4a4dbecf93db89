import { type ParseArgsConfig, parseArgs } from 'node:util'
import { DEFAULT_MAX_POLICY_BYTES } from '../policy/read.js'

/** A usage error: main prints it with the usage text and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

type Options = NonNullable<ParseArgsConfig['options']>

/** node:util parseArgs, strict, with its errors turned into UsageError. */
export function parse<T extends Options>(args: string[], options: T, positionals: boolean) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: positionals })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

/** A whole number flag within [min, max]. */
export function whole(
  value: string | undefined,
  fallback: number,
  flag: string,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!/^[0-9]{1,10}$/.test(value) || n < min || n > max) {
    throw new UsageError(`${flag} wants a whole number from ${min} to ${max}, got "${value}"`)
  }
  return n
}

/** `--max-policy-bytes` (serve, validate, explain): from 1 KiB to 1 GiB. */
export function maxPolicyBytes(value: string | undefined): number {
  return whole(value, DEFAULT_MAX_POLICY_BYTES, '--max-policy-bytes', 1024, 1024 * 1024 * 1024)
}
