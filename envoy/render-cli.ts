// npm run envoy:render -- FILE [options]: a shipped bootstrap filled in for one machine
// (render.ts), written to --out or stdout.
//
//   npm run envoy:render -- envoy/edge.yaml --cluster hostguard=127.0.0.1:9000 \
//     --cluster app=127.0.0.1:8000 --listener edge=127.0.0.1:8080 --admin 9901 --out edge.local.yaml

import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { type Endpoint, parseAddress, RenderError, renderBootstrap } from './render.js'

/** `NAME=VALUE` pairs of a repeated option, each VALUE parsed by `parse`. */
function pairs<T>(values: readonly string[], option: string, parse: (v: string) => T) {
  const out = new Map<string, T>()
  for (const v of values) {
    const eq = v.indexOf('=')
    if (eq <= 0) throw new RenderError(`--${option} ${v}: expected NAME=…`)
    out.set(v.slice(0, eq), parse(v.slice(eq + 1)))
  }
  return out
}

const USAGE = `usage: npm run envoy:render -- FILE [--cluster NAME=HOST:PORT[,HOST:PORT…]]…
         [--health-port NAME=PORT]… [--listener NAME=[HOST:]PORT]… [--admin [HOST:]PORT] [--out FILE]`

function main(argv: readonly string[]): void {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      cluster: { type: 'string', multiple: true, default: [] },
      'health-port': { type: 'string', multiple: true, default: [] },
      listener: { type: 'string', multiple: true, default: [] },
      admin: { type: 'string' },
      out: { type: 'string' },
    },
  })
  const [file, ...extra] = positionals
  if (file === undefined || extra.length > 0) throw new RenderError(USAGE)
  const clusters = pairs(values.cluster, 'cluster', (list) =>
    list.split(',').map((one): Endpoint => {
      const { address, port } = parseAddress(one, '--cluster')
      if (address === undefined || port === 0)
        throw new RenderError(`--cluster: "${one}" needs a host and a port above 0`)
      return { address, port }
    }),
  )
  // The port every endpoint of a --cluster is health-checked on, when not its traffic port.
  for (const [name, port] of pairs(values['health-port'], 'health-port', (v) => v)) {
    const endpoints = clusters.get(name)
    const value = Number(port)
    if (endpoints === undefined)
      throw new RenderError(`--health-port ${name}: give its endpoints with --cluster ${name}=…`)
    if (!/^\d+$/.test(port) || value === 0 || value > 65535)
      throw new RenderError(`--health-port ${name}=${port}: expected a port above 0`)
    clusters.set(
      name,
      endpoints.map((e) => ({ ...e, healthCheckPort: value })),
    )
  }
  const listeners = pairs(values.listener, 'listener', (v) => parseAddress(v, '--listener', true))
  const admin = values.admin === undefined ? undefined : parseAddress(values.admin, '--admin', true)
  const text = renderBootstrap(readFileSync(file, 'utf8'), file, {
    clusters,
    listeners,
    ...(admin ? { admin } : {}),
  })
  if (values.out === undefined) process.stdout.write(text)
  else writeFileSync(values.out, text)
}

try {
  main(process.argv.slice(2))
} catch (err) {
  process.stderr.write(`envoy:render: ${(err as Error).message}\n`)
  process.exitCode = 2
}
