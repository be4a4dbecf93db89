// Reading the files a policy names (the policy, `{file}` secrets, address files) within SPEC's
// "Bounded work": a regular file after symlinks, of at most --max-policy-bytes. A FIFO would block
// the reader until something writes to it, and /dev/zero would grow a string until the process
// aborts, losing the last good policy.

import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs'

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
