// OPA-Envoy, the ext_authz server most people would pick instead of hostguard: built, started and
// asked, for npm run bench:peers and npm run bench:transports.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { callCheck, checkClient } from '../test/support/grpc.js'
import { official, ROOT } from '../test/support/protos.js'
import { freePort } from '../test/support/server.js'
import { until } from '../test/support/wait.js'
import { pinned, type Started } from './e2e.js'

/** The OPA-Envoy release measured: `@latest` resolves to a 2022 release, because the `-envoy`
 * tags count as pre-releases, so the tag is pinned. */
export const OPA_ENVOY_MODULE =
  'github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin@v1.19.1-envoy'
export const GOBIN = join(ROOT, '.tools', 'go', 'bin')
const OPA_ENVOY = join(GOBIN, 'opa-envoy-plugin')
const OPA_POLICY = join(ROOT, 'bench', 'peers', 'policy.rego')

/** The plugin's binary: built once with the Go toolchain, or undefined with the reason. */
export function opaEnvoy(): { bin?: string; missing?: string } {
  if (existsSync(OPA_ENVOY)) return { bin: OPA_ENVOY }
  if (spawnSync('go', ['version']).status !== 0)
    return {
      missing: `go is missing (install Go, then GOBIN=.tools/go/bin go install ${OPA_ENVOY_MODULE})`,
    }
  console.warn(`building ${OPA_ENVOY_MODULE} into .tools/go/bin (a few minutes, once)`)
  const built = spawnSync('go', ['install', OPA_ENVOY_MODULE], {
    stdio: 'inherit',
    env: { ...process.env, GOBIN },
  })
  return built.status === 0
    ? { bin: OPA_ENVOY }
    : { missing: `go install ${OPA_ENVOY_MODULE} failed (exit ${built.status})` }
}

export async function startOpa(bin: string): Promise<Started> {
  const [port, api] = [await freePort(), await freePort()]
  const [command, args] = pinned(0, bin, [
    'run',
    '--server',
    `--addr=127.0.0.1:${api}`,
    '--skip-version-check',
    '--log-level=error',
    `--set=plugins.envoy_ext_authz_grpc.addr=127.0.0.1:${port}`,
    '--set=plugins.envoy_ext_authz_grpc.path=hostguard/authz/result',
    '--set=decision_logs.console=false',
    OPA_POLICY,
  ])
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] })
  // /health?plugins answers 200 once the ext_authz plugin serves.
  await until(
    15_000,
    async () => (await fetch(`http://127.0.0.1:${api}/health?plugins`)).ok,
    'OPA-Envoy start-up',
  )
  return { child, pid: child.pid ?? 0, port }
}

/** allow, or deny with its HTTP status, and the reason in the dynamic metadata, of CheckResponse bytes. */
export function verdictOf(answer: Buffer): string {
  const response = official.decodeResponse(answer)
  const reason = response.dynamic_metadata?.fields?.reason?.stringValue ?? 'no reason'
  if (response.ok_response) return `allow (${reason})`
  if (response.denied_response)
    return `deny ${response.denied_response.status?.code ?? '?'} (${reason})`
  return `no answer (grpc status ${response.status?.code ?? 0})`
}

/** The verdict of the server on `port` for `request`; or the gRPC error. */
export async function verdict(port: number, request: Buffer): Promise<string> {
  const client = checkClient(port)
  try {
    return verdictOf(await callCheck(client, request))
  } catch (err) {
    return `error: ${(err as Error).message}`
  } finally {
    client.close()
  }
}
