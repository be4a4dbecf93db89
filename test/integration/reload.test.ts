import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Client } from '@grpc/grpc-js'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { DecisionObserver } from '../../src/decision/observe.js'
import { DEFAULT_LIMITS } from '../../src/decision/types.js'
import { saveCache } from '../../src/dynamic/cache.js'
import { DEFAULT_KUBE_TIMINGS } from '../../src/dynamic/kube-timings.js'
import { LivePolicy } from '../../src/live-policy.js'
import { parseCidrEntry } from '../../src/policy/cidr-entry.js'
import { type LoaderReply, type LoaderRequest, PolicyLoader } from '../../src/policy/loader.js'
import { DEFAULT_MAX_POLICY_BYTES } from '../../src/policy/read.js'
import { PolicyStore } from '../../src/policy/store.js'
import type { Running } from '../../src/serve.js'
import { createMetrics } from '../../src/server/metrics.js'
import { FakeKubeApi } from '../support/fake-kube-api.js'
import { callCheck, checkClient } from '../support/grpc.js'
import { type Message, official } from '../support/protos.js'
import { spawnServe, startServer } from '../support/server.js'
import { until } from '../support/wait.js'

// Two policies that answer every request differently: a mix of them (the new hosts with the
// old deny status, say) would show.
const OLD = 'version: 1\nallowedHosts: [a.example]\ndeny: { status: 403 }\n'
const NEW = 'version: 1\nallowedHosts: [b.example]\ndeny: { status: 404 }\n'
const BROKEN = 'version: 1\nallowedHosts: ["*.b.example"]\ndeny: { status: 404 }\n'
const ANSWERS: Record<string, { old: string; new: string }> = {
  'a.example': { old: 'allow', new: 'deny NotFound' },
  'b.example': { old: 'deny Forbidden', new: 'allow' },
}

/** Writes a file the way kubectl cp or an editor's save-by-rename does: atomically. */
function replace(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text)
  renameSync(`${file}.tmp`, file)
}

function request(host: string): Buffer {
  return official.encodeRequest({
    attributes: {
      source: { address: { socket_address: { address: '198.51.100.7' } } },
      request: { http: { host, path: '/' } },
    },
  })
}

function answerOf(bytes: Buffer): string {
  const r: Message = official.decodeResponse(bytes)
  return r.ok_response ? 'allow' : `deny ${r.denied_response.status.code}`
}

async function check(client: Client, host: string): Promise<string> {
  return answerOf(await callCheck(client, request(host)))
}

async function reloads(running: Running, result: 'success' | 'failure'): Promise<number> {
  const metric = await running.metrics.reloads.get()
  return metric.values.find((v) => v.labels['result'] === result)?.value ?? 0
}

describe('hot reload', () => {
  it('never fails a call nor mixes two policies while the file is broken, fixed and deleted', {
    timeout: 30_000,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-reload-'))
    const file = join(dir, 'policy.yaml')
    writeFileSync(file, OLD)
    const running = await startServer(file)
    const client = checkClient(running.grpcPort)
    // Each call with the number of calls started before it: an order, not a time.
    const calls: { host: string; seq: number; answer: string }[] = []
    let started = 0
    let stop = false
    const errors: unknown[] = []
    // Four clients in a loop, like Envoy workers, until the test ends.
    const traffic = Array.from({ length: 4 }, async (_, worker) => {
      for (let i = 0; !stop; i++) {
        const host = (i + worker) % 2 === 0 ? 'a.example' : 'b.example'
        const seq = started++
        try {
          calls.push({ host, seq, answer: await check(client, host) })
        } catch (err) {
          errors.push(err)
        }
      }
    })
    const callsFrom = (seq: number) => calls.filter((c) => c.seq >= seq)
    let swappedAt = 0
    try {
      await until(5_000, () => calls.length > 50, 'traffic')

      replace(file, BROKEN)
      await until(5_000, async () => (await reloads(running, 'failure')) >= 1, 'the failed reload')
      const afterBroken = started
      await until(
        5_000,
        () => callsFrom(afterBroken).length > 50,
        'traffic after the failed reload',
      )
      expect(callsFrom(afterBroken).every((c) => c.answer === ANSWERS[c.host]?.old)).toBe(true)
      expect((await fetch(`http://127.0.0.1:${running.httpPort}/readyz`)).status).toBe(200)

      replace(file, NEW)
      // The swap comes before the reload is counted: a call started after the count sees NEW.
      await until(5_000, async () => (await reloads(running, 'success')) >= 1, 'the good reload')
      swappedAt = started
      await until(5_000, () => callsFrom(swappedAt).length > 50, 'traffic after the reload')

      const failures = await reloads(running, 'failure')
      rmSync(file)
      await until(
        5_000,
        async () => (await reloads(running, 'failure')) > failures,
        'the reload of a deleted file',
      )
      const afterDelete = started
      await until(5_000, () => callsFrom(afterDelete).length > 50, 'traffic after the delete')
    } finally {
      stop = true
      await Promise.all(traffic)
      client.close()
      await running.stop()
    }
    expect(errors).toEqual([])
    // Never a mix of the two (the new hosts with the old status), never the broken policy.
    for (const c of calls) expect([ANSWERS[c.host]?.old, ANSWERS[c.host]?.new]).toContain(c.answer)
    expect(calls.some((c) => c.answer === ANSWERS[c.host]?.new)).toBe(true)
    // Once the good reload was counted, every call started after it had the new policy's answer,
    // through the delete that failed after it.
    expect(callsFrom(swappedAt).filter((c) => c.answer !== ANSWERS[c.host]?.new)).toEqual([])
  })

  it('reloads when a ConfigMap volume swaps its ..data symlink', { timeout: 15_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-configmap-'))
    // What the kubelet lays out: policy.yaml -> ..data/policy.yaml, ..data -> ..<timestamp>
    mkdirSync(join(dir, '..2026_11_23_01'))
    writeFileSync(join(dir, '..2026_11_23_01', 'policy.yaml'), OLD)
    symlinkSync('..2026_11_23_01', join(dir, '..data'))
    symlinkSync('..data/policy.yaml', join(dir, 'policy.yaml'))
    const running = await startServer(join(dir, 'policy.yaml'))
    const client = checkClient(running.grpcPort)
    try {
      expect(await check(client, 'a.example')).toBe('allow')
      // The kubelet's update: a new timestamped directory, a ..data_tmp link renamed over ..data.
      mkdirSync(join(dir, '..2026_11_23_02'))
      writeFileSync(join(dir, '..2026_11_23_02', 'policy.yaml'), NEW)
      symlinkSync('..2026_11_23_02', join(dir, '..data_tmp'))
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
      rmSync(join(dir, '..2026_11_23_01'), { recursive: true })
      await until(5_000, async () => (await reloads(running, 'success')) >= 1, 'the reload')
      expect(await check(client, 'a.example')).toBe('deny NotFound')
      expect(await check(client, 'b.example')).toBe('allow')
    } finally {
      client.close()
      await running.stop()
    }
  })

  it('re-reads a secret file on SIGHUP', { timeout: 15_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-sighup-'))
    const secrets = mkdtempSync(join(tmpdir(), 'hostguard-secret-'))
    writeFileSync(join(secrets, 'health'), 'first-secret\n')
    writeFileSync(
      join(dir, 'policy.yaml'),
      `version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-health, value: { file: ${join(secrets, 'health')} } }\n`,
    )
    const probe = (secret: string) =>
      official.encodeRequest({
        attributes: {
          source: { address: { socket_address: { address: '10.0.0.9' } } },
          request: {
            http: { host: '10.1.2.3:8080', path: '/healthz', headers: { 'x-health': secret } },
          },
        },
      })
    const server = spawnServe(join(dir, 'policy.yaml'))
    try {
      const { grpcPort } = await server.started()
      const client = checkClient(grpcPort)
      const send = async (bytes: Buffer): Promise<string> =>
        answerOf(await callCheck(client, bytes))
      expect(await send(probe('first-secret'))).toBe('allow')
      // The secret lives outside the watched directory: only a reload re-reads it.
      writeFileSync(join(secrets, 'health'), 'second-secret\n')
      server.child.kill('SIGHUP')
      await until(5_000, () => server.output().includes('policy reloaded'), 'the SIGHUP reload')
      expect(server.output()).toContain('"trigger":"SIGHUP"')
      expect(await send(probe('second-secret'))).toBe('allow')
      expect(await send(probe('first-secret'))).toBe('deny Forbidden')
      client.close()
    } finally {
      server.child.kill('SIGTERM')
    }
  })
})

describe('hostguard_policy_last_reload_success', () => {
  async function lastReloadSuccess(running: Running): Promise<number | undefined> {
    const text = await (await fetch(`http://127.0.0.1:${running.httpPort}/metrics`)).text()
    const value = /^hostguard_policy_last_reload_success (\S+)$/m.exec(text)?.[1]
    return value === undefined ? undefined : Number(value)
  }

  it('is 0 from a failed reload until the next good one, or until the files are back', {
    timeout: 20_000,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-last-reload-'))
    const file = join(dir, 'policy.yaml')
    writeFileSync(file, OLD)
    const running = await startServer(file)
    try {
      expect(await lastReloadSuccess(running)).toBe(1)

      replace(file, BROKEN)
      await until(5_000, async () => (await reloads(running, 'failure')) === 1, 'a failed reload')
      expect(await lastReloadSuccess(running)).toBe(0)
      // Still failing: a second broken version, and a reload on SIGHUP.
      replace(file, `${BROKEN}# still broken\n`)
      await until(5_000, async () => (await reloads(running, 'failure')) === 2, 'a failed reload')
      expect(await running.reload('test')).toBe(false)
      expect(await lastReloadSuccess(running)).toBe(0)

      // The bytes in force come back: the reload is skipped, and nothing is broken any more.
      replace(file, OLD)
      await until(5_000, async () => (await lastReloadSuccess(running)) === 1, 'the files back')
      expect(await reloads(running, 'success')).toBe(0)

      replace(file, BROKEN)
      await until(5_000, async () => (await lastReloadSuccess(running)) === 0, 'a failed reload')
      replace(file, NEW)
      await until(5_000, async () => (await reloads(running, 'success')) === 1, 'the good reload')
      expect(await lastReloadSuccess(running)).toBe(1)
    } finally {
      await running.stop()
    }
  })
})

/** The real loader, whose compiles with new addresses crash while `crashing` (a bug in the worker). */
class CrashingLoader extends PolicyLoader {
  crashing = false

  override request(request: LoaderRequest): Promise<LoaderReply> {
    if (this.crashing && request.kind === 'addresses')
      return Promise.resolve({ kind: 'crashed', message: 'TypeError: injected' })
    return super.request(request)
  }
}

describe('a reload whose compile with the dynamic addresses fails', () => {
  it('is a failure, and the next reload of the same bytes loads them rather than skip them', {
    timeout: 20_000,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-adopt-'))
    const file = join(dir, 'policy.yaml')
    writeFileSync(file, OLD)
    // A source started from its cache has addresses at once: they are compiled in before the swap.
    const cacheDir = join(dir, 'cache')
    mkdirSync(cacheDir)
    const cached = parseCidrEntry('10.0.12.34')
    if (!('range' in cached)) throw new Error(cached.detail)
    saveCache(cacheDir, 'k8s:nodes', [cached.range])
    const api = new FakeKubeApi()
    await api.up()
    api.hangLists = true
    const metrics = createMetrics()
    const log = pino({ level: 'silent' })
    const store = new PolicyStore()
    const loader = new CrashingLoader()
    const live = new LivePolicy({
      policyFile: file,
      env: {},
      limits: DEFAULT_LIMITS,
      maxPolicyBytes: DEFAULT_MAX_POLICY_BYTES,
      watch: false,
      watchSettleMs: undefined,
      kubeconfig: api.writeKubeconfig(dir),
      cacheDir,
      syncWaitMs: 10_000,
      kubeTimings: DEFAULT_KUBE_TIMINGS,
      log,
      metrics,
      observer: new DecisionObserver(metrics, log, ['grpc']),
      store,
      loader,
    })
    const count = async (result: 'success' | 'failure') =>
      (await metrics.reloads.get()).values.find((v) => v.labels['result'] === result)?.value ?? 0
    const gauge = async () => (await metrics.lastReloadSuccess.get()).values[0]?.value
    try {
      await live.start()
      const old = store.current
      expect(old?.top.denyStatus).toBe(403)
      writeFileSync(file, `${NEW}allowedCidrNets: [k8s:nodes]\n`)
      loader.crashing = true
      expect(await live.reload('test')).toBe(false)
      expect(store.current).toBe(old)
      expect([await count('failure'), await count('success'), await gauge()]).toEqual([1, 0, 0])
      // The worker has loaded these bytes, the store has not: a file change loads them again.
      loader.crashing = false
      expect(await live.reload('file change', false)).toBe(true)
      expect(store.current?.top.denyStatus).toBe(404)
      expect([await count('failure'), await count('success'), await gauge()]).toEqual([1, 1, 1])
      // In force now: the same bytes again are skipped.
      expect(await live.reload('file change', false)).toBe(true)
      expect(await count('success')).toBe(1)
    } finally {
      await live.stop()
      await api.close()
    }
  })
})
