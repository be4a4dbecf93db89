import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { callCheck, checkClient } from '../support/grpc.js'
import { FIXTURES, ROOT } from '../support/protos.js'
import { freePort, startServer } from '../support/server.js'
import { havePrometheus, havePromtool, skipLoudly } from '../support/system.js'
import { until } from '../support/wait.js'

const run = promisify(execFile)
const MONITORING = join(ROOT, 'monitoring')
const RULES = join(MONITORING, 'prometheus-rules.yaml')
const dashboard = JSON.parse(readFileSync(join(MONITORING, 'grafana-dashboard.json'), 'utf8'))
// biome-ignore lint/suspicious/noExplicitAny: dashboard JSON
const targets: { expr: string }[] = dashboard.panels.flatMap((p: any) => p.targets ?? [])

/** Grafana's reference to the datasource variable, literally. */
const DATASOURCE_VARIABLE = ['$', '{datasource}'].join('')

describe('Grafana dashboard', () => {
  it('has a datasource variable that every panel and query uses', () => {
    const variable = dashboard.templating.list.find(
      (v: { name: string }) => v.name === 'datasource',
    )
    expect(variable).toMatchObject({ type: 'datasource', query: 'prometheus' })
    // biome-ignore lint/suspicious/noExplicitAny: dashboard JSON
    for (const panel of dashboard.panels.filter((p: any) => p.type !== 'row')) {
      expect(panel.datasource.uid).toBe(DATASOURCE_VARIABLE)
      for (const t of panel.targets) expect(t.datasource.uid).toBe(DATASOURCE_VARIABLE)
    }
  })

  it('charts every SPEC metric', () => {
    const all = targets.map((t) => t.expr).join('\n')
    for (const name of [
      'hostguard_decisions_total',
      'hostguard_decision_duration_seconds_bucket',
      'hostguard_policy_reloads_total',
      'hostguard_policy_last_reload_success',
      'hostguard_policy_loaded_timestamp_seconds',
      'hostguard_dynamic_addresses',
      'hostguard_dynamic_source_errors_total',
      'hostguard_dynamic_source_last_sync_timestamp_seconds',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
    ]) {
      expect(all).toContain(name)
    }
  })
})

describe('Prometheus rules (promtool)', () => {
  skipLoudly(!havePromtool, 'promtool (Debian prometheus) is missing: the rules were NOT checked.')

  it.skipIf(!havePromtool)('pass promtool check rules', async () => {
    const { stdout } = await run('promtool', ['check', 'rules', RULES])
    expect(stdout).toContain('SUCCESS')
  })

  it.skipIf(!havePromtool)(
    'pass their unit tests, in which every alert fires and also stays silent',
    async () => {
      const { stdout } = await run('promtool', [
        'test',
        'rules',
        join(MONITORING, 'prometheus-rules.test.yaml'),
      ])
      expect(stdout).toContain('SUCCESS')
      const tests = readFileSync(join(MONITORING, 'prometheus-rules.test.yaml'), 'utf8')
      const alerts = [...readFileSync(RULES, 'utf8').matchAll(/- alert: (\w+)/g)].map((m) => m[1])
      expect(alerts.length).toBeGreaterThan(0)
      for (const alert of alerts) {
        expect(tests).toMatch(
          new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`),
        )
        expect(tests).toMatch(new RegExp(`alertname: ${alert}\\n\\s+exp_alerts: \\[\\]`))
      }
    },
  )

  it("select hostguard's targets by the job name k8s/base's ServiceMonitor gives them", () => {
    // The Prometheus Operator names a ServiceMonitor's job after the Service.
    const service = parse(readFileSync(join(ROOT, 'k8s', 'base', 'service.yaml'), 'utf8'))
    const jobs = [...readFileSync(RULES, 'utf8').matchAll(/\bup\{job="([^"]+)"\}/g)].map(
      (m) => m[1],
    )
    expect(jobs.length).toBeGreaterThan(0)
    for (const job of jobs) expect(job).toBe(service.metadata.name)
  })

  it.skipIf(!havePromtool)('accept every dashboard query as PromQL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostguard-dashboard-'))
    const asRules = targets.map((t, i) => {
      // Grafana's variables, replaced by what they expand to.
      const expr = t.expr
        .replaceAll('$__rate_interval', '1m')
        .replaceAll('$job', '.+')
        .replaceAll('$site', '.+')
      return `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(expr)}\n`
    })
    writeFileSync(
      join(dir, 'dashboard.rules.yaml'),
      `groups:\n  - name: dashboard\n    rules:\n${asRules.join('')}`,
    )
    const { stdout } = await run('promtool', ['check', 'rules', join(dir, 'dashboard.rules.yaml')])
    expect(stdout).toContain(`SUCCESS: ${targets.length} rules found`)
  })
})

async function query(base: string, promql: string): Promise<number | undefined> {
  const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`)
  const body = (await res.json()) as { data?: { result?: { value: [number, string] }[] } }
  const value = body.data?.result?.[0]?.value[1]
  return value === undefined ? undefined : Number(value)
}

describe('a real Prometheus scraping hostguard', () => {
  skipLoudly(
    !havePrometheus,
    'prometheus (Debian) is missing: no real Prometheus scraped hostguard.',
  )

  it.skipIf(!havePrometheus)(
    'counts exactly the Check calls sent',
    { timeout: 60_000 },
    async () => {
      const running = await startServer(join(ROOT, 'examples', 'policy.yaml'))
      const dir = mkdtempSync(join(tmpdir(), 'hostguard-prometheus-'))
      const port = await freePort()
      writeFileSync(
        join(dir, 'prometheus.yml'),
        `global: { scrape_interval: 1s, evaluation_interval: 1s }\nrule_files: [${JSON.stringify(RULES)}]\nscrape_configs:\n  - job_name: hostguard\n    static_configs: [{ targets: ['127.0.0.1:${running.httpPort}'] }]\n`,
      )
      let prometheus: ChildProcess | undefined
      const client = checkClient(running.grpcPort)
      try {
        prometheus = spawn(
          'prometheus',
          [
            `--config.file=${join(dir, 'prometheus.yml')}`,
            `--storage.tsdb.path=${join(dir, 'data')}`,
            `--web.listen-address=127.0.0.1:${port}`,
          ],
          { stdio: 'ignore' },
        )
        const base = `http://127.0.0.1:${port}`
        await until(20_000, async () => (await fetch(`${base}/-/ready`)).ok, 'Prometheus ready')
        const fixture = readFileSync(join(FIXTURES, '01-ipv4-direct-host.bin'))
        const N = 137
        for (let i = 0; i < N; i++) {
          await callCheck(client, fixture)
        }
        await until(
          30_000,
          async () => (await query(base, 'sum(hostguard_decisions_total)')) === N,
          `${N} decisions in Prometheus`,
        )
        expect(await query(base, 'sum(hostguard_decisions_total{reason="host_allowed"})')).toBe(N)
        const rules = (await (await fetch(`${base}/api/v1/rules`)).json()) as {
          data: { groups: { name: string }[] }
        }
        expect(rules.data.groups.map((g) => g.name).sort()).toEqual([
          'hostguard.alerts',
          'hostguard.recording',
        ])
      } finally {
        client.close()
        prometheus?.kill('SIGTERM')
        await running.stop()
      }
    },
  )
})
