// Why the request path has its own wire reader: it is raced here against proto-loader
// (protobufjs) decoding the same fixture with hostguard's own proto/, in one process.
// Run: npm run bench:micro -- bench/decode.bench.ts

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { bench, describe } from 'vitest'
import { check } from '../src/grpc-authz/check.js'
import { decode } from '../src/grpc-authz/decode.js'
import { policyFile } from '../test/support/policy.js'
import { FIXTURES, ours, ROOT } from '../test/support/protos.js'

const policy = policyFile(join(ROOT, 'examples', 'policy.yaml'))

for (const name of [
  '01-ipv4-direct-host',
  '06-trusted-proxy-chain-xff',
  '12-extra-fields-tls-metadata-body',
]) {
  const bytes = readFileSync(join(FIXTURES, `${name}.bin`))
  describe(name, () => {
    bench('hostguard decode (wire reader)', () => {
      decode(bytes, policy.headerNames)
    })
    bench('proto-loader decode to objects', () => {
      ours.decodeRequest(bytes)
    })
    bench('hostguard check (decode → encode)', () => {
      check(policy, bytes)
    })
  })
}
