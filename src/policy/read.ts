// Reading the files a policy names (the policy, `{file}` secrets, address files) within SPEC's
// "Bounded work": a regular file after symlinks, of at most --max-policy-bytes. A FIFO would block
// the reader until something writes to it, and /dev/zero would grow a string until the process
// aborts, losing the last good policy.

import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs'
import { PolicyError, type PolicyErrorCode, PolicyLoadError } from './errors.js'

/** `--max-policy-bytes`: the largest policy, secret or address file read. */
export const DEFAULT_MAX_POLICY_BYTES = 16 * 1024 * 1024

/** Why a file cannot be read, as a short phrase for an error message. */
export class FileReadError extends Error {
  override name = 'FileReadError'
}

function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory'
  if (stats.isFIFO()) return 'a FIFO'
  if (stats.isCharacterDevice()) return 'a character device'
  if (stats.isBlockDevice()) return 'a block device'
  if (stats.isSocket()) return 'a socket'
  return 'not a regular file'
}

/**
 * The bytes of `file`, which must be a regular file (after symlinks) of at most `maxBytes`;
 * throws FileReadError saying why not (an errno code, the kind of file, or the size).
 */
export function readBoundedFile(file: string, maxBytes: number): Buffer {
  let fd: number
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (err) {
    throw new FileReadError((err as NodeJS.ErrnoException).code ?? 'unreadable')
  }
  try {
    const stats = fstatSync(fd)
    if (!stats.isFile()) throw new FileReadError(`${kindOf(stats)}, not a regular file`)
    if (stats.size > maxBytes)
      throw new FileReadError(`${stats.size} bytes, over --max-policy-bytes ${maxBytes}`)
    // Read to the end, not to the size fstat gave: the file may be growing; one byte more than
    // the bound is enough to know it is over.
    let chunk = Buffer.allocUnsafe(Math.min(maxBytes + 1, Math.max(stats.size, 4096) + 1))
    let length = 0
    for (;;) {
      if (length === chunk.length) {
        if (length > maxBytes) break
        const grown = Buffer.allocUnsafe(Math.min(maxBytes + 1, length * 2))
        chunk.copy(grown, 0, 0, length)
        chunk = grown
      }
      let read: number
      try {
        read = readSync(fd, chunk, length, chunk.length - length, null)
      } catch (err) {
        throw new FileReadError((err as NodeJS.ErrnoException).code ?? 'unreadable')
      }
      if (read === 0) break
      length += read
    }
    if (length > maxBytes)
      throw new FileReadError(`over --max-policy-bytes ${maxBytes} bytes (it grew while read)`)
    return chunk.subarray(0, length)
  } finally {
    closeSync(fd)
  }
}

/** How the files a policy names are read. */
export interface ReadOptions {
  /** `--max-policy-bytes` (DEFAULT_MAX_POLICY_BYTES). */
  readonly maxPolicyBytes?: number
  /** Called with each file read and its bytes (serve compares them with the last load's). */
  readonly onRead?: (file: string, bytes: Buffer) => void
  /**
   * `validate --skip-secrets`: a secret's source is checked (an environment variable's name, a
   * file's path) but not read, so neither whether it is set or readable, nor its length.
   */
  readonly skipSecrets?: boolean
}

/** A file the policy names (or the policy itself), reported to `onRead`. */
export function readNamedFile(file: string, options: ReadOptions): Buffer {
  const bytes = readBoundedFile(file, options.maxPolicyBytes ?? DEFAULT_MAX_POLICY_BYTES)
  options.onRead?.(file, bytes)
  return bytes
}

/** A file's text; throws PolicyLoadError with `code`, at its first line, when it cannot be read. */
export function readConfigFile(
  file: string,
  code: PolicyErrorCode,
  field: string,
  what: string,
  options: ReadOptions = {},
): string {
  try {
    return readNamedFile(file, options).toString('utf8')
  } catch (err) {
    if (!(err instanceof FileReadError)) throw err
    const at = { file, line: 1, col: 1, field }
    throw new PolicyLoadError([new PolicyError(code, at, `cannot read ${what} (${err.message})`)])
  }
}
