// The last known addresses of a Kubernetes source, kept in `--cache-dir`, so that a restart
// during an API outage starts with them instead of an empty set.

import { createHash } from 'node:crypto'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { CidrRange } from '../net/cidr.js'
import { formatIp } from '../net/ip.js'
import { parseCidrEntry } from '../policy/cidr-entry.js'

interface CacheFile {
  readonly version: 1
  readonly source: string
  readonly savedAt: string
  readonly addresses: readonly { readonly cidr: string; readonly origin: string | undefined }[]
}

/** One file a source; the name is hashed because source names hold `/`, `?` and spaces. */
export function cachePath(dir: string, sourceName: string): string {
  const hash = createHash('sha256').update(sourceName).digest('hex').slice(0, 16)
  return join(dir, `hostguard-source-${hash}.json`)
}

/** Writes atomically (temporary file, then rename), so a crash never leaves half a cache. */
export function saveCache(dir: string, sourceName: string, ranges: readonly CidrRange[]): void {
  const content: CacheFile = {
    version: 1,
    source: sourceName,
    savedAt: new Date().toISOString(),
    addresses: ranges.map((r) => ({ cidr: `${formatIp(r.ip)}/${r.prefix}`, origin: r.origin })),
  }
  const path = cachePath(dir, sourceName)
  const temporary = `${path}.${process.pid}.tmp`
  writeFileSync(temporary, `${JSON.stringify(content, null, 1)}\n`)
  renameSync(temporary, path)
}

/**
 * The cached ranges of a source: undefined when there is no cache file; throws an Error saying
 * what is wrong when the file is not one this source wrote.
 */
export function loadCache(dir: string, sourceName: string): CidrRange[] | undefined {
  const path = cachePath(dir, sourceName)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new Error(`cannot read ${path}: ${(err as Error).message}`)
  }
  const bad = (why: string): Error => new Error(`${path} is not a usable cache: ${why}`)
  let content: Partial<CacheFile>
  try {
    content = JSON.parse(text) as Partial<CacheFile>
  } catch (err) {
    throw bad((err as Error).message)
  }
  if (content.version !== 1 || content.source !== sourceName || !Array.isArray(content.addresses))
    throw bad(`it is not version 1 of the cache of ${sourceName}`)
  return content.addresses.map((entry, i) => {
    const result = parseCidrEntry(String(entry?.cidr))
    if (!('range' in result)) throw bad(`addresses[${i}]: ${result.detail}`)
    const origin = typeof entry.origin === 'string' ? `${entry.origin} (cached)` : undefined
    return origin === undefined ? result.range : { ...result.range, origin }
  })
}
