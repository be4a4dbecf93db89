// The layer rules of biome.json (README "Code layout"), tried on probe modules: a rule that lets
// an import through that its own message forbids is no rule.

import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from '../support/protos.js'

const BIOME = join(ROOT, 'node_modules', '.bin', 'biome')

/** The lint rules biome reports for a module at `path` (in src/) that imports `line`. */
function rulesFor(path: string, line: string): string[] {
  const file = join(ROOT, path)
  writeFileSync(file, `${line}\nexport const probe = 1\n`)
  try {
    const out = spawnSync(BIOME, ['lint', '--colors=off', file], { cwd: ROOT, encoding: 'utf8' })
    return [...new Set(`${out.stdout}${out.stderr}`.match(/lint\/\w+\/\w+/g) ?? [])]
  } finally {
    rmSync(file, { force: true })
  }
}

describe('biome.json layer rules', () => {
  it.each([
    "import { readFileSync } from 'node:fs'",
    "import { readFile } from 'node:fs/promises'",
    "import { readFile } from 'fs/promises'",
  ])('keep the file system out of decision/: %s', { timeout: 30_000 }, (line) => {
    expect(rulesFor('src/decision/zz-layer-probe.ts', line)).toContain(
      'lint/style/noRestrictedImports',
    )
  })

  it.each([
    "import { check } from '../grpc-authz/check.js'",
    "import type { CheckResult } from '../grpc-authz/check.js'",
    "import { WireReader } from '../grpc-authz/protobuf.js'",
    "import protobuf from 'protobufjs'",
    "import * as grpc from '@grpc/grpc-js'",
    "import { STATUS_CODES } from 'node:http'",
  ])(
    'keep front ends, protobuf and HTTP out of the decision core: %s',
    {
      timeout: 30_000,
    },
    (line) => {
      expect(rulesFor('src/decision/zz-layer-probe.ts', line)).toContain(
        'lint/style/noRestrictedImports',
      )
    },
  )

  it.each([
    "import { check } from '../http-authz/check.js'",
    "import { grpcServer } from '../server/grpc.js'",
    "import * as grpc from '@grpc/grpc-js'",
  ])('keep a front end to itself and the core: %s', { timeout: 30_000 }, (line) => {
    expect(rulesFor('src/grpc-authz/zz-layer-probe.ts', line)).toContain(
      'lint/style/noRestrictedImports',
    )
  })

  it.each([
    "import { check } from '../grpc-authz/check.js'",
    "import { encode } from '../grpc-authz/encode.js'",
    "import { startAuthzHttp } from '../server/authz-http.js'",
    "import protobuf from 'protobufjs'",
    "import { pino } from 'pino'",
  ])('keep the HTTP front end to itself and the core: %s', { timeout: 30_000 }, (line) => {
    expect(rulesFor('src/http-authz/zz-layer-probe.ts', line)).toContain(
      'lint/style/noRestrictedImports',
    )
  })

  it('let a front end import the core', { timeout: 30_000 }, () => {
    const line = "import { decideRequest } from '../decision/decide.js'"
    for (const front of ['grpc-authz', 'http-authz'])
      expect(rulesFor(`src/${front}/zz-layer-probe.ts`, line)).not.toContain(
        'lint/style/noRestrictedImports',
      )
  })

  it('cover every module directly in src/ but main.ts (the top)', () => {
    const biome = JSON.parse(readFileSync(join(ROOT, 'biome.json'), 'utf8'))
    const covered = new Set<string>(
      biome.overrides.flatMap((o: { includes: string[] }) => o.includes),
    )
    const top = readdirSync(join(ROOT, 'src')).filter((f) => f.endsWith('.ts') && f !== 'main.ts')
    expect(top.filter((f) => !covered.has(`src/${f}`))).toEqual([])
  })
})
