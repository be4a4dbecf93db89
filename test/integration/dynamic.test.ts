import { execFile } from 'node:child_process'
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Client } from '@grpc/grpc-js'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { KubeTimings } from '../../src/dynamic/kube-timings.js'
import type { Running } from '../../src/serve.js'
import { FakeKubeApi } from '../support/fake-kube-api.js'
import { callCheck, checkClient } from '../support/grpc.js'
import { type Message, official } from '../support/protos.js'
import { MAIN, startServer } from '../support/server.js'
import { until } from '../support/wait.js'

const NODE_A = { name: 'ip-10-0-12-34', addresses: [['InternalIP', '10.0.12.34']] } as const
const NODE_B = { name: 'ip-10-0-7-1', addresses: [['InternalIP', '10.0.7.1']] } as const
const NODE_C = { name: 'ip-10-0-9-9', addresses: [['InternalIP', '10.0.9.9']] } as const

const NODES_ONLY = 'version: 1\nallowedHosts: [www.example.com]\nallowedCidrNets: [k8s:nodes]\n'

let dir: string
let api: FakeKubeApi
let servers: Running[]
let clients: Client[]

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hostguard-dynamic-'))
  api = new FakeKubeApi()
  await api.up()
  servers = []
  clients = []
})

afterEach(async () => {
  for (const c of clients) c.close()
  await Promise.all(servers.map((s) => s.stop()))
  await api.close()
  rmSync(dir, { recursive: true, force: true })
})

interface Started {
  readonly running: Running
  readonly client: Client
  readonly logs: Record<string, unknown>[]
}

async function start(
  policy: string,
  options: { cacheDir?: string; syncWaitMs?: number; timings?: Partial<KubeTimings> } = {},
): Promise<Started> {
  const file = join(dir, 'policy.yaml')
  writeFileSync(file, policy)
  const logs: Record<string, unknown>[] = []
  const running = await startServer(file, {
    log: pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line)) }),
    kubeconfig: api.writeKubeconfig(dir),
    kubeTimings: {
      retryInitialMs: 50,
      retryMaxMs: 400,
      listTimeoutMs: 1000,
      watchIdleMs: 2000,
      ...options.timings,
    },
    syncWaitMs: options.syncWaitMs ?? 5000,
    ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
  })
  servers.push(running)
  const client = checkClient(running.grpcPort)
  clients.push(client)
  return { running, client, logs }
}

/** The answer to a request with `host` as Host, from `peer`. */
async function answer(client: Client, host: string, peer = '198.51.100.7'): Promise<string> {
  const bytes = await callCheck(
    client,
    official.encodeRequest({
      attributes: {
        source: { address: { socket_address: { address: peer } } },
        request: { http: { host, path: '/' } },
      },
    }),
  )
  const r: Message = official.decodeResponse(bytes)
  return r.ok_response ? 'allow' : `deny ${r.denied_response.status.code}`
}

// The bound is how long to wait for the event before failing, not a latency under test: a loaded
// CI machine took 1.6 s to import @kubernetes/client-node alone.
function allowedWithin(client: Client, host: string, ms = 10_000): Promise<void> {
  return until(ms, async () => (await answer(client, host)) === 'allow', `${host} allowed`)
}

function deniedWithin(client: Client, host: string, ms = 10_000): Promise<void> {
  return until(ms, async () => (await answer(client, host)) !== 'allow', `${host} denied`)
}

async function readyz(running: Running): Promise<number> {
  return (await fetch(`http://127.0.0.1:${running.httpPort}/readyz`)).status
}

async function metric(running: Running, name: string, source: string): Promise<number | undefined> {
  const text = await running.metrics.registry.metrics()
  const line = text.split('\n').find((l) => l.startsWith(`${name}{source="${source}"}`))
  return line === undefined ? undefined : Number(line.split(' ')[1])
}

describe('k8s:nodes', () => {
  it('allows a new node IP as Host, and denies it once the node is deleted', async () => {
    api.set(NODE_A)
    const { running, client } = await start(NODES_ONLY)
    await allowedWithin(client, '10.0.12.34')
    expect(await answer(client, '10.0.7.1')).toBe('deny Forbidden')
    api.set(NODE_B)
    await allowedWithin(client, '10.0.7.1')
    api.delete(NODE_A.name)
    await deniedWithin(client, '10.0.12.34')
    expect(await answer(client, '10.0.7.1')).toBe('allow')
    expect(await metric(running, 'hostguard_dynamic_addresses', 'k8s:nodes')).toBe(1)
    expect(await readyz(running)).toBe(200)
    // One list, then watches only: the informer's cache carries the set.
    expect(api.requests.filter((r) => r === 'list')).toHaveLength(1)
  })

  it('follows a label selector and the address types asked for, with one watch per selector', async () => {
    api.set({
      ...NODE_A,
      labels: { pool: 'edge' },
      addresses: [...NODE_A.addresses, ['ExternalIP', '203.0.113.9']],
    })
    api.set({ ...NODE_B, labels: { pool: 'batch' } })
    const edge = (types: string) =>
      `{k8s: nodes, labelSelector: "pool=edge", addressTypes: [${types}]}`
    const { running, client } = await start(
      `version: 1\nallowedHosts: [www.example.com]\nallowedCidrNets: [${edge('ExternalIP')}]\nsites:\n  internal:\n    allowedCidrNets: [${edge('InternalIP')}]\n`,
    )
    await allowedWithin(client, '203.0.113.9')
    expect(await answer(client, '10.0.12.34')).toBe('deny Forbidden')
    expect(await answer(client, '10.0.7.1')).toBe('deny Forbidden')
    expect(api.requests.filter((r) => r === 'list')).toHaveLength(1)
    expect(
      await metric(
        running,
        'hostguard_dynamic_addresses',
        'k8s:nodes?labelSelector=pool=edge&addressTypes=ExternalIP',
      ),
    ).toBe(1)
  })

  it('resumes a dropped watch from its resourceVersion: no relist, no gap, never an empty set', async () => {
    api.set(NODE_A)
    const { client } = await start(NODES_ONLY)
    await allowedWithin(client, '10.0.12.34')
    let stop = false
    const answers: string[] = []
    const probe = (async () => {
      while (!stop) answers.push(await answer(client, '10.0.12.34'))
    })()
    for (let i = 0; i < 5; i++) {
      await until(2000, () => api.openWatches > 0, 'a watch')
      api.dropWatches()
      // A change while the watch is down arrives when it resumes.
      api.set(i % 2 === 0 ? NODE_B : NODE_C)
      const answered = answers.length
      await until(2000, () => answers.length > answered, 'an answer after the drop')
    }
    await allowedWithin(client, '10.0.7.1')
    await allowedWithin(client, '10.0.9.9')
    stop = true
    await probe
    expect(answers.filter((a) => a !== 'allow')).toEqual([])
    expect(api.requests.filter((r) => r === 'list')).toHaveLength(1)
    expect(api.requests.filter((r) => r.startsWith('watch@')).length).toBeGreaterThanOrEqual(6)
  })

  it('relists on 410 Gone and keeps the set meanwhile', async () => {
    api.set(NODE_A)
    const { client } = await start(NODES_ONLY)
    await allowedWithin(client, '10.0.12.34')
    api.expire()
    api.delete(NODE_A.name)
    api.set(NODE_B)
    await allowedWithin(client, '10.0.7.1')
    await deniedWithin(client, '10.0.12.34')
    expect(api.requests.filter((r) => r === 'list')).toHaveLength(2)
  })

  it('keeps the last known set through an API outage, counts the errors and catches up after it', async () => {
    api.set(NODE_A)
    const { running, client } = await start(NODES_ONLY)
    await allowedWithin(client, '10.0.12.34')
    const lastSync = async () =>
      (await metric(
        running,
        'hostguard_dynamic_source_last_sync_timestamp_seconds',
        'k8s:nodes',
      )) ?? 0
    const errors = async () =>
      (await metric(running, 'hostguard_dynamic_source_errors_total', 'k8s:nodes')) ?? 0
    // While the watch is open, the last sync is the scrape's own time.
    const scrapeBegan = Date.now()
    const synced = Math.round((await lastSync()) * 1000)
    expect(synced).toBeGreaterThanOrEqual(scrapeBegan)
    expect(synced).toBeLessThanOrEqual(Date.now())
    await api.down()
    await until(3000, async () => (await errors()) >= 2, 'errors counted')
    expect(await answer(client, '10.0.12.34')).toBe('allow')
    expect(await readyz(running)).toBe(200)
    // While down, the last sync stops moving: still the same after one more failed retry.
    const during = await lastSync()
    const failed = await errors()
    await until(3000, async () => (await errors()) > failed, 'another failed retry')
    expect(await lastSync()).toBe(during)
    api.set(NODE_B)
    await api.up()
    await allowedWithin(client, '10.0.7.1', 3000)
    expect(await answer(client, '10.0.12.34')).toBe('allow')
  })

  it('gives up a watch that went silent (a dead connection) and resumes; bookmarks keep one alive', async () => {
    api.set({ ...NODE_A, labels: { pool: 'edge' } })
    // Two watches, one per selector: the one bookmarked every 50 ms (a twentieth of the idle
    // limit) must outlive the silent one, which is this test's clock.
    const bookmarks = setInterval(() => api.bookmark('pool=edge'), 50)
    try {
      const { running, client } = await start(
        'version: 1\nallowedHosts: [www.example.com]\nallowedCidrNets: [k8s:nodes]\nsites:\n  edge:\n    allowedCidrNets: [{ k8s: nodes, labelSelector: "pool=edge" }]\n',
        { timings: { watchIdleMs: 1000 } },
      )
      await allowedWithin(client, '10.0.12.34')
      const errors = (source: string) =>
        metric(running, 'hostguard_dynamic_source_errors_total', source)
      // Silence: abandoned, counted, resumed from its resourceVersion (no second list).
      await until(10_000, () => api.watchRequests('') >= 2, 'the silent watch resumed')
      expect(await errors('k8s:nodes')).toBeGreaterThanOrEqual(1)
      expect(api.watchRequests('pool=edge')).toBe(1)
      expect(await errors('k8s:nodes?labelSelector=pool=edge')).toBe(0)
      expect(api.requests.filter((r) => r === 'list')).toHaveLength(2)
      expect(await answer(client, '10.0.12.34')).toBe('allow')
      api.set(NODE_B)
      await allowedWithin(client, '10.0.7.1')
    } finally {
      clearInterval(bookmarks)
    }
  })

  it('gives up a list that never answers and retries it', async () => {
    api.hangLists = true
    api.set(NODE_A)
    const { running, client } = await start(NODES_ONLY, { timings: { listTimeoutMs: 200 } })
    await until(
      3000,
      async () =>
        ((await metric(running, 'hostguard_dynamic_source_errors_total', 'k8s:nodes')) ?? 0) >= 2,
      'hung lists given up',
    )
    expect(await readyz(running)).toBe(503)
    api.hangLists = false
    await allowedWithin(client, '10.0.12.34', 3000)
    expect(await readyz(running)).toBe(200)
  })

  it('starts from the cache when the API is down at start', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'hostguard-cache-'))
    api.set(NODE_A)
    api.set(NODE_B)
    const first = await start(NODES_ONLY, { cacheDir })
    await allowedWithin(first.client, '10.0.7.1')
    await first.running.stop()
    await api.down()
    const second = await start(NODES_ONLY, { cacheDir, syncWaitMs: 60_000 })
    expect(await answer(second.client, '10.0.12.34')).toBe('allow')
    expect(await answer(second.client, '10.0.7.1')).toBe('allow')
    expect(await readyz(second.running)).toBe(200)
    expect(
      second.logs.some(
        (l) => l['msg'] === 'dynamic source starts from its cache until the first sync',
      ),
    ).toBe(true)
    // The first sync after the outage replaces the cached set.
    api.delete(NODE_B.name)
    await api.up()
    await deniedWithin(second.client, '10.0.7.1', 3000)
    rmSync(cacheDir, { recursive: true, force: true })
  })

  it('with neither API nor cache at start: not ready while waiting, then ready with the source empty', async () => {
    await api.down()
    const { running, client, logs } = await start(NODES_ONLY, { syncWaitMs: 2000 })
    const waitOver = () =>
      logs.some((l) =>
        String(l['msg']).startsWith('no addresses from the Kubernetes API and no cache: ready'),
      )
    // Every readiness answer that came back before the wait said it was over is a 503.
    const whileWaiting: number[] = []
    for (;;) {
      const status = await readyz(running)
      if (waitOver()) break
      whileWaiting.push(status)
      expect(await answer(client, '10.0.12.34')).toBe('deny Forbidden')
      expect(await answer(client, 'www.example.com')).toBe('allow')
    }
    expect(whileWaiting.length, 'readiness asked while waiting').toBeGreaterThan(0)
    expect(whileWaiting.filter((s) => s !== 503)).toEqual([])
    await until(2000, async () => (await readyz(running)) === 200, 'ready after the wait')
    api.set(NODE_A)
    await api.up()
    await allowedWithin(client, '10.0.12.34', 3000)
  })

  it('stays not ready without addresses where an empty set could let more through', async () => {
    await api.down()
    const { running, logs } = await start(
      'version: 1\nallowedHosts: [www.example.com]\ntrustedProxies: [k8s:nodes]\nclientCidrs: { deny: [203.0.113.66] }\n',
      { syncWaitMs: 300 },
    )
    // The wait is over (it says so), and readiness stays down.
    await until(
      3000,
      () =>
        logs.some((l) =>
          String(l['msg']).startsWith(
            'no addresses from the Kubernetes API and no cache: not ready',
          ),
        ),
      'the end of the wait',
    )
    expect(await readyz(running)).toBe(503)
    api.set(NODE_A)
    await api.up()
    await until(3000, async () => (await readyz(running)) === 200, 'ready after the first sync')
  })

  it('closes a watch whose response comes after it was stopped', async () => {
    api.holdWatches = true
    api.set(NODE_A)
    const { running, client } = await start(NODES_ONLY)
    await allowedWithin(client, '10.0.12.34')
    await until(2000, () => api.heldWatches === 1, 'the watch asked for')
    await running.stop()
    // Answered after the stop; resolves once hostguard has closed it.
    expect(await api.releaseWatches()).toBe(1)
    expect(api.requests.filter((r) => r.startsWith('watch@'))).toHaveLength(1)
    expect(api.openWatches).toBe(0)
  })

  it('stops the watch and drops the series of a source a reload removes', async () => {
    api.set(NODE_A)
    const { running, client } = await start(NODES_ONLY)
    await allowedWithin(client, '10.0.12.34')
    writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nallowedHosts: [www.example.com]\n')
    expect(await running.reload('test')).toBe(true)
    expect(await answer(client, '10.0.12.34')).toBe('deny Forbidden')
    await until(2000, () => api.openWatches === 0, 'the watch closed')
    expect(await metric(running, 'hostguard_dynamic_addresses', 'k8s:nodes')).toBeUndefined()
  })
})

describe('address file source', () => {
  it('follows the file: a line added allows, removed denies, a bad line is reported and the set kept', async () => {
    const ranges = join(dir, 'ranges.txt')
    writeFileSync(ranges, '# CDN ranges\n192.0.2.0/24\n')
    const { running, client, logs } = await start(
      'version: 1\nallowedHosts: [www.example.com]\nallowedCidrNets: [{ file: ranges.txt }]\n',
    )
    const replace = (text: string) => {
      writeFileSync(`${ranges}.tmp`, text)
      renameSync(`${ranges}.tmp`, ranges)
    }
    expect(await answer(client, '192.0.2.10')).toBe('allow')
    expect(await answer(client, '198.51.100.9')).toBe('deny Forbidden')
    replace('# CDN ranges\n192.0.2.0/24\n198.51.100.0/24  # new\n')
    await allowedWithin(client, '198.51.100.9')
    replace('198.51.100.0/24\n')
    await deniedWithin(client, '192.0.2.10')
    // The same range written another way is the set in force: nothing is recompiled.
    const changes = () => logs.filter((l) => l['msg'] === 'dynamic source changed').length
    const changed = changes()
    replace('::ffff:198.51.100.0/120  # the same range, as IPv6\n')
    await until(
      2000,
      () => logs.some((l) => l['msg'] === 'address file read; its addresses are the ones in force'),
      'the file read again',
    )
    expect(changes()).toBe(changed)
    replace('198.51.100.0/24\n\n10.0.0.1/8\n')
    await until(
      2000,
      () => logs.some((l) => l['msg'] === 'address file rejected; keeping its last good addresses'),
      'the rejection logged',
    )
    const rejected = logs.find(
      (l) => l['msg'] === 'address file rejected; keeping its last good addresses',
    )
    expect(rejected?.['errors']).toEqual([
      `${ranges}:3:1 (address file): "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8? [POLICY_CIDR_HOST_BITS]`,
    ])
    expect(await answer(client, '198.51.100.9')).toBe('allow')
    expect(await metric(running, 'hostguard_dynamic_source_errors_total', 'file:ranges.txt')).toBe(
      1,
    )
    expect(await metric(running, 'hostguard_dynamic_addresses', 'file:ranges.txt')).toBe(1)
  })

  it('fails the start when the file is bad, naming the line', async () => {
    writeFileSync(join(dir, 'ranges.txt'), '192.0.2.0/24\n010.0.0.1\n')
    await expect(
      start(
        'version: 1\nallowedHosts: [www.example.com]\nallowedCidrNets: [{ file: ranges.txt }]\n',
      ),
    ).rejects.toThrow(/ranges\.txt:2:1 \(address file\): "010\.0\.0\.1" is not an IP address/)
  })
})

describe('validate', () => {
  it('reads address files and names their bad lines, without contacting Kubernetes', async () => {
    const file = join(dir, 'policy.yaml')
    writeFileSync(
      file,
      'version: 1\nallowedHosts: [www.example.com]\nallowedCidrNets: [k8s:nodes, { file: ranges.txt }]\n',
    )
    writeFileSync(join(dir, 'ranges.txt'), '192.0.2.0/24\n192.0.2.1/24\n')
    const run = promisify(execFile)
    const failed = await run(process.execPath, [MAIN, 'validate', file]).catch((err) => err)
    expect(failed.code).toBe(1)
    expect(failed.stdout).toBe(
      `${join(dir, 'ranges.txt')}:2:1 (address file): "192.0.2.1/24" has host bits set; did you mean 192.0.2.0/24? [POLICY_CIDR_HOST_BITS]\n`,
    )
    writeFileSync(join(dir, 'ranges.txt'), '192.0.2.0/24\n')
    const ok = await run(process.execPath, [MAIN, 'validate', file])
    expect(ok.stderr).toBe(`${file}: valid\n`)
    expect(api.requests).toEqual([])
  })
})

describe('explain', () => {
  it('names the node whose address matched', async () => {
    api.set(NODE_A)
    writeFileSync(join(dir, 'policy.yaml'), NODES_ONLY)
    // Asynchronous: the fake API answers from this process.
    const r = await promisify(execFile)(process.execPath, [
      MAIN,
      'explain',
      '--policy',
      join(dir, 'policy.yaml'),
      '--kubeconfig',
      api.writeKubeconfig(dir),
      '--authority',
      '10.0.12.34',
      '--peer',
      '10.0.3.77',
    ])
    expect(r.stdout).toContain(
      'rule     allowedCidrNets k8s:nodes → node ip-10-0-12-34 (10.0.12.34/32) holds "10.0.12.34"\n',
    )
    expect(r.stdout).toContain('sources  k8s:nodes (1 address)\n')
  })
})
