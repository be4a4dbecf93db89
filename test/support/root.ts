// The repository's paths, in a module of their own: protos.ts loads the Envoy protos with
// proto-loader when imported (about 20 MiB of RSS), which a server measured for its memory, the
// no-op of the benchmarks, must not carry.

import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository: the nearest folder above this file with hostguard's package.json (this file
 * also runs compiled, from build/tools/test/support). */
function findRoot(from: string): string {
  for (let dir = from; dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json')
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'hostguard')
      return dir
  }
  throw new Error(`no hostguard package.json above ${from}`)
}

export const ROOT = findRoot(dirname(fileURLToPath(import.meta.url)))
export const FIXTURES = join(ROOT, 'test', 'fixtures', 'envoy-v3')
