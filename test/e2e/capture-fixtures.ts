// npm run fixtures:capture: writes test/fixtures/envoy-v3/captured/NN-name.bin (the exact
// CheckRequest Envoy sent) and NN-name.json (the same as proto JSON) for every scenario of
// test/support/capture.ts, through the Envoy the tests use (.tools/envoy or ENVOY_BIN).

import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { captureScenarios, checkRequestJson } from '../support/capture.js'
import { ENVOY, ENVOY_VERSION } from '../support/envoy-bin.js'
import { FIXTURES } from '../support/protos.js'

if (ENVOY === undefined) throw new Error('Envoy is missing: see README (Envoy on one machine)')
const dir = join(FIXTURES, 'captured')
mkdirSync(dir, { recursive: true })
for (const [name, bytes] of await captureScenarios()) {
  writeFileSync(join(dir, `${name}.bin`), bytes)
  writeFileSync(join(dir, `${name}.json`), checkRequestJson(bytes))
  process.stdout.write(`${name}: ${bytes.length} bytes\n`)
}
process.stdout.write(`captured from Envoy ${ENVOY_VERSION}\n`)
