// What triggers a reload (SPEC "Bounded work"): a change of a file the policy reads, never of
// another file beside it, never identical bytes, never a file half written; and what a reload
// that fails leaves in force.

import { execFileSync, spawnSync } from 'node:child_process'
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Client } from '@grpc/grpc-js'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Running } from '../../src/serve.js'
import { callCheck, checkClient } from '../support/grpc.js'
import { type Message, official } from '../support/protos.js'
import { startServer } from '../support/server.js'
import { skipLoudly } from '../support/system.js'
import { until } from '../support/wait.js'

let dir: string
let running: Running | undefined
let client: Client | undefined

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hostguard-watch-'))
})

afterEach(async () => {
  client?.close()
  await running?.stop()
  running = undefined
  rmSync(dir, { recursive: true, force: true })
})

type Log = Record<string, unknown>

async function start(
  file: string,
  watchSettleMs?: number,
): Promise<{ logs: Log[]; running: Running; client: Client }> {
  const logs: Log[] = []
  running = await startServer(file, {
    log: pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line)) }),
    maxPolicyBytes: 4096,
    ...(watchSettleMs === undefined ? {} : { watchSettleMs }),
  })
  client = checkClient(running.grpcPort)
  return { logs, running, client }
}

const haveMkfifo = spawnSync('mkfifo', ['--version']).status === 0

/** Makes the next file with `make`, then renames it over `file`. */
function renameInto(file: string, make: (next: string) => void): void {
  make(`${file}.next`)
  renameSync(`${file}.next`, file)
}

function replace(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text)
  renameSync(`${file}.tmp`, file)
}

async function answer(c: Client, host: string, headers: Record<string, string> = {}) {
  const bytes = await callCheck(
    c,
    official.encodeRequest({
      attributes: {
        source: { address: { socket_address: { address: '198.51.100.7' } } },
        request: { http: { host, path: '/healthz', headers } },
      },
    }),
  )
  const r: Message = official.decodeResponse(bytes)
  return r.ok_response ? 'allow' : `deny ${r.denied_response.status.code}`
}

const count = (logs: Log[], msg: string) => logs.filter((l) => l['msg'] === msg).length

async function reloads(r: Running, result: 'success' | 'failure'): Promise<number> {
  const metric = await r.metrics.reloads.get()
  return metric.values.find((v) => v.labels['result'] === result)?.value ?? 0
}

describe('reload triggers', () => {
  it('ignores other files beside the policy and skips a change that leaves the bytes the same', async () => {
    const file = join(dir, 'policy.yaml')
    writeFileSync(file, 'version: 1\nallowedHosts: [a.example]\n')
    const { logs, running } = await start(file)
    // A log written beside the policy, an editor's swap file and backup.
    for (let i = 0; i < 20; i++) appendFileSync(join(dir, 'serve.log'), `line ${i}\n`)
    writeFileSync(join(dir, '.policy.yaml.swp'), 'swap')
    writeFileSync(join(dir, 'policy.yaml~'), 'version: 1\nallowedHosts: [b.example]\n')
    // The same bytes, renamed in: the one event the watcher acts on, and it reloads nothing.
    replace(file, 'version: 1\nallowedHosts: [a.example]\n')
    // The rename is the sentinel: the writes before it had their chance to trigger a reload.
    await until(
      5000,
      () => count(logs, 'reload skipped: the files the policy reads are unchanged') >= 1,
      'the skipped reload',
    )
    const skipped = logs.find(
      (l) => l['msg'] === 'reload skipped: the files the policy reads are unchanged',
    )
    expect(skipped?.['changed']).toEqual([file])
    expect(count(logs, 'policy reloaded')).toBe(0)
    expect(await reloads(running, 'success')).toBe(0)
  })

  it('reloads when a {file} secret in its own Secret volume is rotated (..data swap)', async () => {
    // The kubelet's layout of a Secret volume, apart from the policy's directory.
    const secrets = join(dir, 'secrets')
    mkdirSync(join(secrets, '..v1'), { recursive: true })
    writeFileSync(join(secrets, '..v1', 'health'), 'first-secret')
    symlinkSync('..v1', join(secrets, '..data'))
    symlinkSync('..data/health', join(secrets, 'health'))
    const policyDir = join(dir, 'policy')
    mkdirSync(policyDir)
    const file = join(policyDir, 'policy.yaml')
    writeFileSync(
      file,
      `version: 1\nallowedHosts: [a.example]\nhealthCheck: { header: x-health, value: { file: ${join(secrets, 'health')} }, paths: [/healthz] }\n`,
    )
    const { logs, client } = await start(file)
    expect(await answer(client, '10.1.2.3', { 'x-health': 'first-secret' })).toBe('allow')
    mkdirSync(join(secrets, '..v2'))
    writeFileSync(join(secrets, '..v2', 'health'), 'second-secret')
    symlinkSync('..v2', join(secrets, '..data_tmp'))
    renameSync(join(secrets, '..data_tmp'), join(secrets, '..data'))
    await until(
      5000,
      async () => (await answer(client, '10.1.2.3', { 'x-health': 'second-secret' })) === 'allow',
      'the rotated secret in force',
    )
    expect(count(logs, 'policy reloaded')).toBe(1)
    expect(await answer(client, '10.1.2.3', { 'x-health': 'first-secret' })).toBe('deny Forbidden')
  })

  it('does not install the first half of a file written in place in two writes 300 ms apart', async () => {
    const file = join(dir, 'policy.yaml')
    writeFileSync(file, 'version: 1\nallowedHosts: [a.example]\n')
    // 300 ms is three looks at the file (100 ms apart), and far from 5 s, however busy the machine.
    const { running, client } = await start(file, 5000)
    // The first half is a valid policy on its own (b.example allowed, the default 403).
    writeFileSync(file, 'version: 1\nallowedHosts: [b.example]\n')
    await new Promise((resolve) => setTimeout(resolve, 300)) // the writer's pause, not a wait
    appendFileSync(file, 'deny: { status: 404 }\n')
    await until(
      15_000,
      async () => (await answer(client, 'c.example')) === 'deny NotFound',
      'the whole file in force',
    )
    // Had the first half been installed, its reload would have been counted before this one.
    expect(await reloads(running, 'success')).toBe(1)
  })

  it('runs one reload at a time: triggers during one make exactly one more', async () => {
    const file = join(dir, 'policy.yaml')
    writeFileSync(file, 'version: 1\nallowedHosts: [a.example]\n')
    const { logs, running } = await start(file)
    const results = await Promise.all(Array.from({ length: 5 }, () => running.reload('test')))
    expect(results).toEqual([true, true, true, true, true])
    expect(count(logs, 'policy reloaded')).toBe(2)
  })
})

describe('a reload that cannot read the policy', () => {
  /** Each replaces the policy file at `file`. */
  const bad: [string, (file: string) => void][] = [
    [
      'a symlink to /dev/zero',
      (file) => renameInto(file, (next) => symlinkSync('/dev/zero', next)),
    ],
    [
      'a directory',
      (file) => {
        rmSync(file)
        mkdirSync(file)
      },
    ],
    [
      'a file over --max-policy-bytes',
      (file) => renameInto(file, (next) => writeFileSync(next, `# ${'x'.repeat(5000)}\n`)),
    ],
  ]
  if (haveMkfifo)
    bad.push(['a FIFO', (file) => renameInto(file, (next) => execFileSync('mkfifo', [next]))])
  skipLoudly(!haveMkfifo, 'mkfifo is missing: the FIFO case does not run')
  it.each(bad)('keeps the last good policy when the policy becomes %s', async (_, make) => {
    const file = join(dir, 'policy.yaml')
    writeFileSync(file, 'version: 1\nallowedHosts: [a.example]\n')
    const { logs, running, client } = await start(file)
    make(file)
    await until(5000, async () => (await reloads(running, 'failure')) >= 1, 'the failed reload')
    const failed = logs.find(
      (l) => l['msg'] === 'policy reload failed; serving the last good policy',
    )
    expect(String((failed?.['errors'] as string[] | undefined)?.[0])).toContain(
      `${file}:1:1 (file): cannot read the policy file (`,
    )
    expect(await answer(client, 'a.example')).toBe('allow')
    expect((await fetch(`http://127.0.0.1:${running.httpPort}/readyz`)).status).toBe(200)
  })
})
