// A health-check secret, `{env: NAME}` (optionally with `default:`) or `{file: PATH}`: read as
// bytes, never inline in the policy, and never echoed in a message.

import { resolve } from 'node:path'
import { isMap } from 'yaml'
import { FileReadError, readNamedFile } from './read.js'
import { entries, type LoadContext, report, string, type Value } from './yaml-nodes.js'

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
  if (!value || value.length === 0) {
    report(
      ctx,
      'POLICY_SECRET_EMPTY',
      node,
      field,
      'the secret is empty, so an empty header would pass',
    )
    return undefined
  }
  return value
}

/** Drops one trailing LF or CRLF. */
function withoutTrailingNewline(bytes: Buffer): Buffer {
  let end = bytes.length
  if (bytes[end - 1] === 0x0a) end--
  if (end < bytes.length && bytes[end - 1] === 0x0d) end--
  return bytes.subarray(0, end)
}
