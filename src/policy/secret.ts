// A health-check secret, `{env: NAME}` (optionally with `default:`) or `{file: PATH}`: read as
// bytes, never inline in the policy, and never echoed in a message.

import { randomBytes } from 'node:crypto'
import { resolve } from 'node:path'
import { isMap } from 'yaml'
import { FileReadError, readNamedFile } from './read.js'
import { entries, type LoadContext, report, string, type Value, warn } from './yaml-nodes.js'

/** Shorter is warned about: a placeholder left in place (k8s/base's `change-me`) or guessable. */
const MIN_SECRET_BYTES = 16

/** The secret's bytes; undefined (reported) when it is inline, not set, unreadable or empty. */
export function secret(ctx: LoadContext, node: Value, field: string): Buffer | undefined {
  const source = isMap(node) ? entries(ctx, node, field, ['env', 'file', 'default']) : undefined
  const env = source?.get('env')
  const file = source?.get('file')
  const fallback = source?.get('default')
  if (!source || (env === undefined) === (file === undefined) || (fallback && !env)) {
    report(
      ctx,
      'POLICY_SECRET_SOURCE',
      node,
      field,
      'give the secret as { env: VARIABLE } (optionally with default:) or { file: /path }, never inline',
    )
    return undefined
  }
  let value: Buffer | undefined
  if (env) {
    const name = string(ctx, env.value, `${field}.env`)
    if (name === undefined) return undefined
    const defaultValue = fallback ? string(ctx, fallback.value, `${field}.default`) : undefined
    if (ctx.read.skipSecrets) {
      // The default is in the file, and serve uses it whenever the variable is unset.
      if (defaultValue === undefined) return unreadSecret()
      const checkedDefault = checked(ctx, node, field, Buffer.from(defaultValue, 'utf8'))
      return checkedDefault === undefined ? undefined : unreadSecret()
    }
    const text = ctx.env[name] ?? defaultValue
    value = text === undefined ? undefined : Buffer.from(text, 'utf8')
    if (value === undefined) {
      report(
        ctx,
        'POLICY_SECRET_UNREADABLE',
        env.value,
        `${field}.env`,
        // The name is not echoed: it may be the secret itself, written in the wrong place.
        'the environment variable named here is not set',
      )
      return undefined
    }
  } else if (file) {
    const path = string(ctx, file.value, `${field}.file`)
    if (path === undefined) return undefined
    if (path.trim() === '') {
      report(ctx, 'POLICY_SECRET_UNREADABLE', file.value, `${field}.file`, 'the path is empty')
      return undefined
    }
    if (ctx.read.skipSecrets) return unreadSecret()
    try {
      // One trailing newline is dropped: `kubectl create secret --from-file` keeps the editor's.
      // Bytes as they are: a binary secret must not be decoded as UTF-8 (SPEC "Bounded work").
      value = withoutTrailingNewline(readNamedFile(resolve(ctx.baseDir, path), ctx.read))
    } catch (err) {
      if (!(err instanceof FileReadError)) throw err
      const reason = err.message
      report(
        ctx,
        'POLICY_SECRET_UNREADABLE',
        file.value,
        `${field}.file`,
        `cannot read ${path} (${reason})`,
      )
      return undefined
    }
  }
  return value === undefined ? undefined : checked(ctx, node, field, value)
}

/** The secret, or undefined when it is empty (reported); a short one is warned about. */
function checked(ctx: LoadContext, node: Value, field: string, value: Buffer): Buffer | undefined {
  if (value.length === 0) {
    report(
      ctx,
      'POLICY_SECRET_EMPTY',
      node,
      field,
      'the secret is empty, so an empty header would pass',
    )
    return undefined
  }
  if (value.length < MIN_SECRET_BYTES) {
    warn(
      ctx,
      'POLICY_WARN_SECRET_SHORT',
      node,
      field,
      `the secret is shorter than ${MIN_SECRET_BYTES} bytes: a placeholder, or short enough to guess (make one with: openssl rand -hex 16)`,
    )
  }
  return value
}

/**
 * What stands for a secret not read (`validate --skip-secrets`): random bytes, so that a policy
 * loaded this way opens nothing to any header should it ever answer a request.
 */
function unreadSecret(): Buffer {
  return randomBytes(32)
}

/** Drops one trailing LF or CRLF. */
function withoutTrailingNewline(bytes: Buffer): Buffer {
  let end = bytes.length
  if (bytes[end - 1] === 0x0a) end--
  if (end < bytes.length && bytes[end - 1] === 0x0d) end--
  return bytes.subarray(0, end)
}
