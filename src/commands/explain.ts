// `hostguard explain --policy FILE [--json] (REQUEST.bin | REQUEST.json | request flags)`: one
// request through the very code the server runs (check()), with a trace of how it was decided
// and the answer as Envoy would read it.

import { readFileSync } from 'node:fs'
import { pino } from 'pino'
import { check } from '../check/check.js'
import type { Trace } from '../check/types.js'
import { DEFAULT_KUBE_TIMINGS } from '../dynamic/kube-timings.js'
import { DynamicSources } from '../dynamic/sources.js'
import { formatIp } from '../net/ip.js'
import { sourcesOf } from '../policy/address-list.js'
import { compilePolicy } from '../policy/compile.js'
import { PolicyLoadError } from '../policy/errors.js'
import { loadPolicyFile } from '../policy/load.js'
import { checkCodec } from '../proto.js'
import { maxPolicyBytes, parse, UsageError, whole } from './args.js'

export interface Explanation {
  readonly decision: 'allow' | 'deny'
  /** What Envoy is told: a dry-run deny is answered `allow`. */
  readonly answer: 'allow' | 'deny'
  readonly reason: string
  readonly site: string
  readonly mode: string
  readonly client: string | null
  readonly chain: { readonly header: string | null; readonly entries: readonly string[] }
  readonly rule: string | null
  /** The HTTP status of a deny answer; null for an allow. */
  readonly status: number | null
  readonly set: readonly { readonly name: string; readonly value: string }[]
  readonly remove: readonly string[]
  /** The policy's dynamic sources and their address counts; null: no addresses in time. */
  readonly sources: readonly { readonly name: string; readonly addresses: number | null }[]
}

export interface DynamicOptions {
  readonly kubeconfig?: string
  readonly cacheDir?: string
  /** How long to wait for every dynamic source's addresses. */
  readonly syncWaitMs: number
  /** `--max-policy-bytes`. */
  readonly maxPolicyBytes?: number
}

type Json = Record<string, unknown>

/** The CheckRequest object (proto field names) that the request flags describe. */
function requestFromFlags(values: Record<string, string | string[] | boolean | undefined>): Json {
  const headers: Record<string, string> = {}
  for (const header of (values['header'] as string[] | undefined) ?? []) {
    const eq = header.indexOf('=')
    if (eq <= 0) throw new UsageError(`--header wants name=value, got "${header}"`)
    const name = header.slice(0, eq).trim().toLowerCase()
    const value = header.slice(eq + 1)
    // Envoy joins repeated headers with a bare comma.
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`
  }
  const authority = values['authority'] as string | undefined
  const path = (values['path'] as string | undefined) ?? '/'
  const method = (values['method'] as string | undefined) ?? 'GET'
  const site = values['site'] as string | undefined
  const peer = values['peer'] as string | undefined
  return {
    attributes: {
      ...(peer === undefined ? {} : { source: { address: { socket_address: { address: peer } } } }),
      request: {
        http: {
          method,
          path,
          ...(authority === undefined ? {} : { host: authority }),
          headers: {
            ':method': method,
            ':path': path,
            ...(authority === undefined ? {} : { ':authority': authority }),
            ...headers,
          },
        },
      },
      ...(site === undefined ? {} : { context_extensions: { site } }),
    },
  }
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : ''
}

/**
 * Decides one CheckRequest with the server's code and describes the result. Dynamic sources are
 * started as `serve` starts them, and waited for; one without addresses in time is empty.
 */
export async function explain(
  policyFile: string,
  request: Buffer,
  dynamicOptions: DynamicOptions,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Explanation> {
  const maxPolicyBytes = dynamicOptions.maxPolicyBytes
  const spec = loadPolicyFile(
    policyFile,
    env,
    maxPolicyBytes === undefined ? {} : { maxPolicyBytes },
  )
  const dynamic = new DynamicSources({
    // Its warnings (an unreachable API) go to stderr: stdout holds the explanation.
    log: pino({ level: 'warn' }, pino.destination(2)),
    metrics: { setAddresses() {}, countError() {}, forget() {} },
    kubeconfig: dynamicOptions.kubeconfig,
    cacheDir: dynamicOptions.cacheDir,
    syncWaitMs: dynamicOptions.syncWaitMs,
    ...(maxPolicyBytes === undefined ? {} : { maxPolicyBytes }),
    timings: DEFAULT_KUBE_TIMINGS,
    onChange() {},
    onReadinessChange() {},
  })
  let addresses: ReturnType<DynamicSources['addresses']>
  try {
    dynamic.update(sourcesOf(spec))
    const until = Date.now() + dynamicOptions.syncWaitMs
    while (!dynamic.synced() && Date.now() < until)
      await new Promise((resolve) => setTimeout(resolve, 20))
    addresses = dynamic.addresses()
  } finally {
    dynamic.stop()
  }
  const policy = compilePolicy(spec, undefined, addresses)
  const trace: Trace = { header: undefined, chain: [], rule: undefined }
  const { decision, response } = check(policy, request, trace)
  const answer = checkCodec().decodeResponse(response)
  const ok = answer['ok_response'] as Json | undefined
  const denied = answer['denied_response'] as Json | undefined
  const headers = ((ok?.['headers'] as Json[] | undefined) ?? []).map((h) => h['header'] as Json)
  const status = (denied?.['status'] as Json | undefined)?.['code']
  return {
    decision: decision.allowed ? 'allow' : 'deny',
    answer: ok ? 'allow' : 'deny',
    reason: decision.reason,
    site: decision.site.name,
    mode: decision.mode,
    client: decision.client.ip ? formatIp(decision.client.ip) : null,
    chain: { header: trace.header ?? null, entries: trace.chain },
    rule: trace.rule ?? null,
    // A denied_response without a status is answered 403 by Envoy.
    status: denied ? (typeof status === 'number' ? status : 403) : null,
    set: headers.map((h) => ({ name: text(h['key']), value: text(h['value']) })),
    remove: ((ok?.['headers_to_remove'] as string[] | undefined) ?? []).map(text),
    sources: [...sourcesOf(spec).keys()].map((name) => ({
      name,
      addresses: addresses.get(name)?.length ?? null,
    })),
  }
}

// C0 and C1 controls, DEL, and the Unicode line and paragraph separators: a client's bytes
// (a captured x-forwarded-for, a Host) must not move the operator's cursor or clear the screen.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is its job
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g
// JSON.stringify escapes C0 controls in strings itself; its own newlines are layout.
const CONTROL_IN_JSON = /[\u007f-\u009f\u2028\u2029]/g

const escapeOne = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`

/** The text with every control character written as a \uXXXX escape. */
function escapeControls(text: string): string {
  return text.replace(CONTROL, escapeOne)
}

function humanText(e: Explanation): string {
  const lines: [string, string][] = [
    [
      'decision',
      e.answer === e.decision ? e.decision : `${e.decision} (answered ${e.answer}: dry run)`,
    ],
    ['reason', e.reason],
    ['site', e.site],
    ['mode', e.mode],
    ['client', e.client ?? '(unknown)'],
    [
      'chain',
      e.chain.header
        ? `${e.chain.header}, from the peer leftwards: ${e.chain.entries.join(' ← ')}`
        : `the peer ${e.chain.entries[0] ?? '(none)'}`,
    ],
    ['rule', e.rule ?? '-'],
    ['status', e.status === null ? '-' : String(e.status)],
    ['set', e.set.map((h) => `${h.name}: ${h.value}`).join(', ') || '-'],
    ['remove', e.remove.join(', ') || '-'],
  ]
  if (e.sources.length > 0) {
    const sources = e.sources.map(
      (s) =>
        `${s.name} (${s.addresses === null ? 'no addresses in time' : `${s.addresses} address${s.addresses === 1 ? '' : 'es'}`})`,
    )
    lines.push(['sources', sources.join(', ')])
  }
  return `${lines.map(([k, v]) => `${k.padEnd(9)}${escapeControls(v)}`).join('\n')}\n`
}

/** Exit code 0 when the request was explained (allow or deny), 1 when the policy is bad. */
export async function explainCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      policy: { type: 'string' },
      json: { type: 'boolean', default: false },
      authority: { type: 'string' },
      peer: { type: 'string' },
      header: { type: 'string', multiple: true },
      path: { type: 'string' },
      method: { type: 'string' },
      site: { type: 'string' },
      kubeconfig: { type: 'string' },
      'cache-dir': { type: 'string' },
      'sync-wait': { type: 'string' },
      'max-policy-bytes': { type: 'string' },
    },
    true,
  )
  if (values.policy === undefined) throw new UsageError('--policy FILE is required')
  if (positionals.length > 1) throw new UsageError('explain takes one request')
  const flags = ['authority', 'peer', 'header', 'path', 'method', 'site'].some(
    (f) => values[f as keyof typeof values] !== undefined,
  )
  const file = positionals[0]
  if (file !== undefined && flags)
    throw new UsageError('give a request file or request flags, not both')
  if (file === undefined && !flags)
    throw new UsageError(
      'give a request: a .bin or .json CheckRequest, or flags such as --authority and --peer',
    )
  let request: Buffer
  if (file === undefined) {
    request = checkCodec().encodeRequest(requestFromFlags(values))
  } else if (file.endsWith('.json')) {
    request = checkCodec().encodeRequest(JSON.parse(readFileSync(file, 'utf8')) as Json)
  } else {
    request = readFileSync(file)
  }
  try {
    const explanation = await explain(values.policy, request, {
      ...(values.kubeconfig === undefined ? {} : { kubeconfig: values.kubeconfig }),
      ...(values['cache-dir'] === undefined ? {} : { cacheDir: values['cache-dir'] }),
      syncWaitMs: whole(values['sync-wait'], 10, '--sync-wait', 0, 3600) * 1000,
      maxPolicyBytes: maxPolicyBytes(values['max-policy-bytes']),
    })
    process.stdout.write(
      values.json
        ? `${JSON.stringify(explanation, null, 2).replace(CONTROL_IN_JSON, escapeOne)}\n`
        : humanText(explanation),
    )
    return 0
  } catch (err) {
    if (!(err instanceof PolicyLoadError)) throw err
    for (const e of err.errors) process.stderr.write(`${e.message}\n`)
    return 1
  }
}
