// One machine's edge for the end-to-end tests: hostguard instances (the built command), the
// recording app, and Envoy running a shipped bootstrap in front of them.

import type { ChildProcess } from 'node:child_process'
import { type EnvoyProcess, type GrpcClient, startEnvoy } from './envoy.js'
import { MAIN, type ServeProcess, spawnServe } from './server.js'
import { startUpstream, type Upstream } from './upstream.js'

export interface Hostguard extends ServeProcess {
  readonly grpcPort: number
  readonly httpPort: number
  /** hostguard_decisions_total summed over the series whose labels contain `labels`. */
  decisions(labels?: string): Promise<number>
}

/** `dist/main.js serve` on free ports, once it is serving. */
export async function startHostguard(
  policyFile: string,
  env: NodeJS.ProcessEnv = {},
  extra: readonly string[] = [],
): Promise<Hostguard> {
  const serve = spawnServe(policyFile, extra, MAIN, { PATH: process.env['PATH'], ...env })
  const { grpcPort, httpPort } = await serve.started()
  return {
    ...serve,
    grpcPort,
    httpPort,
    async decisions(labels = '') {
      const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
      let sum = 0
      for (const m of text.matchAll(/^hostguard_decisions_total\{([^}]*)\} (\d+)$/gm))
        if (m[1]?.includes(labels)) sum += Number(m[2])
      return sum
    },
  }
}

/** Resolves once the process has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', () => resolve()))
}

export async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  await exited(child)
}

export interface Stack {
  readonly hostguards: Hostguard[]
  readonly upstream: Upstream
  readonly envoy: EnvoyProcess
  /** Envoy's listener port. */
  readonly port: number
  stop(): Promise<void>
}

export interface StackOptions {
  readonly instances?: number
  readonly env?: NodeJS.ProcessEnv
  /** More flags for each hostguard (a GrpcTransport's `flags`). */
  readonly flags?: readonly string[]
  /** The ext_authz filter's gRPC client; the file's own (envoy_grpc) when absent. */
  readonly grpcClient?: GrpcClient
}

/** hostguard (one or more instances) on `policyFile`, the app, and Envoy on envoy/<file>. */
export async function startStack(
  file: string,
  listener: string,
  policyFile: string,
  options: StackOptions = {},
): Promise<Stack> {
  const hostguards = await Promise.all(
    Array.from({ length: options.instances ?? 1 }, () =>
      startHostguard(policyFile, options.env ?? {}, options.flags ?? []),
    ),
  )
  const upstream = await startUpstream()
  const envoy = await startEnvoy(
    file,
    {
      hostguard: hostguards.map((h) => ({ address: '127.0.0.1', port: h.grpcPort })),
      app: [{ address: '127.0.0.1', port: upstream.port }],
    },
    options.grpcClient,
  ).catch(async (err: unknown) => {
    await Promise.all([...hostguards.map((h) => kill(h.child)), upstream.close()])
    throw err
  })
  return {
    hostguards,
    upstream,
    envoy,
    port: envoy.port(listener),
    async stop() {
      await envoy.stop()
      await Promise.all([...hostguards.map((h) => kill(h.child)), upstream.close()])
    },
  }
}
