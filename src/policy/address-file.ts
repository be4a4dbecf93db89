// A file of addresses and ranges, one per line, `#` starting a comment: published ranges (a CDN's,
// a cloud load balancer's) that a CronJob syncs into a ConfigMap. Entries use the policy's syntax.

import type { CidrRange } from '../net/cidr.js'
import { parseCidrEntry } from './cidr-entry.js'
import { PolicyError, PolicyLoadError } from './errors.js'
import { type ReadOptions, readConfigFile } from './read.js'
import { MAX_ENTRIES } from './yaml-nodes.js'

/** The ranges of an address file's text; throws PolicyLoadError naming every bad line. */
export function parseAddressFile(text: string, file: string, sourceName: string): CidrRange[] {
  const ranges: CidrRange[] = []
  const errors: PolicyError[] = []
  const lines = text.split('\n')
  for (const [i, raw] of lines.entries()) {
    const hash = raw.indexOf('#')
    const content = hash < 0 ? raw : raw.slice(0, hash)
    const entry = content.trim()
    if (entry === '') continue
    const line = i + 1
    if (ranges.length + errors.length >= MAX_ENTRIES) {
      const at = { file, line, col: 1, field: '(address file)' }
      const detail = `more than ${MAX_ENTRIES} entries in one address file`
      errors.push(new PolicyError('POLICY_TOO_MANY_ENTRIES', at, detail))
      break
    }
    const result = parseCidrEntry(entry)
    if ('range' in result) {
      ranges.push({ ...result.range, origin: `${sourceName} line ${line}` })
    } else {
      const at = { file, line, col: content.indexOf(entry) + 1, field: '(address file)' }
      errors.push(new PolicyError(result.code, at, result.detail))
    }
  }
  if (errors.length > 0) throw new PolicyLoadError(errors)
  return ranges
}

/** Reads and parses an address file; throws PolicyLoadError when it is unreadable or bad. */
export function readAddressFile(
  file: string,
  sourceName: string,
  options: ReadOptions = {},
): CidrRange[] {
  const text = readConfigFile(
    file,
    'POLICY_ADDRESS_FILE_UNREADABLE',
    '(address file)',
    `the address file of ${sourceName}`,
    options,
  )
  return parseAddressFile(text, file, sourceName)
}
