// `hostguard explain --policy FILE [--expect …] (REQUEST.bin | REQUEST.json | request flags)`: one
// request through the very code the server runs (check()), with a trace of how it was decided
// and the answer as Envoy would read it; with --expect, an assertion for CI.

import { extname } from 'node:path'
import { pino } from 'pino'
import { isAllowReason } from '../decision/evaluate.js'
import {
  type CompiledPolicy,
  type Decision,
  REASONS,
  type Reason,
  type Trace,
} from '../decision/types.js'
import { DEFAULT_KUBE_TIMINGS } from '../dynamic/kube-timings.js'
import { DynamicSources } from '../dynamic/sources.js'
import { check } from '../grpc-authz/check.js'
import { authorize } from '../http-authz/authorize.js'
import { DIALECTS, TOP_LEVEL_SEGMENT } from '../http-authz/request.js'
import { formatIp, parseIp } from '../net/ip.js'
import { sourcesOf } from '../policy/address-list.js'
import { compilePolicy } from '../policy/compile.js'
import { PolicyLoadError } from '../policy/errors.js'
import { loadPolicyFile } from '../policy/load.js'
import { FileReadError, readBoundedFile } from '../policy/read.js'
import { checkCodec } from '../proto.js'
import {
  type CommandIo,
  type CommandSpec,
  escapeControl,
  escapeControls,
  MAX_POLICY_BYTES_OPTION,
  type Parsed,
  UsageError,
} from './args.js'

interface Explanation {
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
  /** The HTTP status of a deny decision, whether or not dry run answers it; null for an allow. */
  readonly denyStatus: number | null
  readonly set: readonly { readonly name: string; readonly value: string }[]
  readonly remove: readonly string[]
  /** The policy's dynamic sources and their address counts; null: no addresses in time. */
  readonly sources: readonly { readonly name: string; readonly addresses: number | null }[]
}

interface DynamicOptions {
  readonly kubeconfig?: string
  readonly cacheDir?: string
  /** How long to wait for every dynamic source's addresses. */
  readonly syncWaitMs: number
  /** `--max-policy-bytes`. */
  readonly maxPolicyBytes?: number
  /** Where the sources' warnings (an unreachable API) go: stderr unless given. */
  readonly warnings?: { write(line: string): unknown }
}

type Json = Record<string, unknown>

/** What `--expect allow|deny[:REASON]` asks of the decision. */
interface Expectation {
  readonly decision: 'allow' | 'deny'
  readonly reason: Reason | undefined
}

function expectation(text: string): Expectation {
  const colon = text.indexOf(':')
  const decision = colon < 0 ? text : text.slice(0, colon)
  const reason = colon < 0 ? undefined : text.slice(colon + 1)
  if (decision !== 'allow' && decision !== 'deny') {
    throw new UsageError(
      `--expect is allow or deny, optionally with a reason (deny:host_not_allowed); got ${JSON.stringify(text)}`,
    )
  }
  if (reason === undefined) return { decision, reason }
  const known = REASONS.find((r) => r === reason)
  if (known === undefined) {
    throw new UsageError(
      `--expect ${JSON.stringify(text)}: ${JSON.stringify(reason)} is not a reason; the reasons are ${REASONS.join(', ')}`,
    )
  }
  if (isAllowReason(known) !== (decision === 'allow')) {
    throw new UsageError(
      `--expect ${text} never matches: ${known} is ${isAllowReason(known) ? 'an allow' : 'a deny'} reason`,
    )
  }
  return { decision, reason: known }
}

/** The CheckRequest object (proto field names) that the request flags describe. */
function requestFromFlags(values: Parsed<typeof EXPLAIN>['values']): Json {
  const headers: Record<string, string> = {}
  for (const header of values.header) {
    const eq = header.indexOf('=')
    if (eq <= 0) throw new UsageError(`--header wants NAME=VALUE, got ${JSON.stringify(header)}`)
    const name = header.slice(0, eq).trim().toLowerCase()
    const value = header.slice(eq + 1)
    // Envoy joins repeated headers with a bare comma.
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`
  }
  const { authority, peer, site } = values
  // A peer the server would not read as an address leaves the client unknown: almost surely a
  // typo here, not the question asked.
  if (peer !== undefined && parseIp(peer) === undefined) {
    throw new UsageError(
      `--peer wants an IP address such as 203.0.113.7 or 2001:db8::7 (no port, no brackets), got ${JSON.stringify(peer)}`,
    )
  }
  const { path, method } = values
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

/** The keys of a JSON request that proto-loader dropped, by why. */
interface Dropped {
  /** camelCase names of fields hostguard reads, with their proto names: a certain mistake. */
  readonly misnamed: [at: string, name: string][]
  /** Fields hostguard's proto/ does not have: Envoy's others (it reads few), or typos. */
  readonly unread: string[]
}

const snakeCase = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)

/**
 * Walks `given` beside `decoded` (every field of the message made of it) for the keys it lacks.
 * `names`: every field name in proto/ (an unset oneof member is not in `decoded`).
 */
function dropped(
  given: unknown,
  decoded: unknown,
  names: ReadonlySet<string>,
  path: string,
  out: Dropped,
): Dropped {
  if (typeof given !== 'object' || given === null) return out
  if (typeof decoded !== 'object' || decoded === null) return out
  for (const [key, value] of Object.entries(given)) {
    const at = Array.isArray(given) ? `${path}[${key}]` : path ? `${path}.${key}` : key
    if (Object.hasOwn(decoded, key)) dropped(value, (decoded as Json)[key], names, at, out)
    else if (/[A-Z]/.test(key) && names.has(snakeCase(key))) out.misnamed.push([at, snakeCase(key)])
    else out.unread.push(at)
  }
  return out
}

interface RequestFile {
  readonly bytes: Buffer
  /** Keys of a JSON request that are not fields hostguard reads, and so were not read. */
  readonly unread: readonly string[]
}

/**
 * A request file's CheckRequest: a `.bin` as it is, a `.json` (proto field names) encoded.
 * proto-loader drops a JSON key the proto lacks: a camelCase name of a field hostguard reads is
 * an error (`socketAddress` would explain a request without a peer); others are reported.
 */
function readRequest(file: string, maxBytes: number): RequestFile {
  const ext = extname(file)
  if (ext !== '.bin' && ext !== '.json') {
    throw new UsageError(
      `${file}: explain reads a CheckRequest as .bin (protobuf bytes) or .json (proto JSON with the proto's field names), not ${ext === '' ? 'a file without an extension' : ext}`,
    )
  }
  let bytes: Buffer
  try {
    bytes = readBoundedFile(file, maxBytes)
  } catch (err) {
    if (!(err instanceof FileReadError)) throw err
    throw new UsageError(`${file}: cannot read the request (${err.message})`)
  }
  if (ext === '.bin') return { bytes, unread: [] }
  let given: unknown
  try {
    given = JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw new UsageError(`${file}: not JSON: ${(err as Error).message}`)
  }
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw new UsageError(`${file}: a CheckRequest is a JSON object`)
  }
  const codec = checkCodec()
  let request: Buffer
  try {
    request = codec.encodeRequest(given)
  } catch (err) {
    // protobufjs names the field: ".envoy.service.auth.v3.CheckRequest.attributes: object expected"
    throw new UsageError(`${file}: not a CheckRequest: ${(err as Error).message}`)
  }
  const { misnamed, unread } = dropped(given, codec.decodeRequest(request), codec.fieldNames, '', {
    misnamed: [],
    unread: [],
  })
  if (misnamed.length > 0) {
    throw new UsageError(
      `${file}: fields are named as in the proto: ${misnamed.map(([at, name]) => `${at} is ${name}`).join(', ')}`,
    )
  }
  return { bytes: request, unread }
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : ''
}

/** What `explain` decides: a CheckRequest, or an HTTP authorization request in a dialect. */
type ExplainRequest =
  | { readonly api: 'grpc'; readonly bytes: Buffer }
  | { readonly api: 'http'; readonly url: string; readonly rawHeaders: readonly string[] }

/**
 * Decides one request with the server's code and describes the result. Dynamic sources are
 * started as `serve` starts them, and waited for; one without addresses in time is empty.
 */
export async function explain(
  policyFile: string,
  request: Buffer | ExplainRequest,
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
    // stdout holds the explanation.
    log: pino({ level: 'warn' }, dynamicOptions.warnings ?? pino.destination(2)),
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
  const asked: ExplainRequest = Buffer.isBuffer(request) ? { api: 'grpc', bytes: request } : request
  const answered =
    asked.api === 'grpc'
      ? grpcAnswer(policy, asked.bytes, trace)
      : httpAnswer(policy, asked.url, asked.rawHeaders, trace)
  const { decision } = answered
  return {
    decision: decision.allowed ? 'allow' : 'deny',
    answer: answered.status === null ? 'allow' : 'deny',
    reason: decision.reason,
    site: decision.site.name,
    mode: decision.mode,
    client: decision.client.ip ? formatIp(decision.client.ip) : null,
    chain: { header: trace.header ?? null, entries: trace.chain },
    rule: trace.rule ?? null,
    status: answered.status,
    denyStatus: decision.allowed ? null : decision.status,
    set: answered.set,
    remove: answered.remove,
    sources: [...sourcesOf(spec).keys()].map((name) => ({
      name,
      addresses: addresses.get(name)?.length ?? null,
    })),
  }
}

/** The decision, and its answer as the proxy reads it. */
interface Answered {
  readonly decision: Decision
  /** The HTTP status of a deny answer; null for an allow. */
  readonly status: number | null
  readonly set: Explanation['set']
  readonly remove: readonly string[]
}

function grpcAnswer(policy: CompiledPolicy, request: Buffer, trace: Trace): Answered {
  const { decision, response } = check(policy, request, trace)
  const answer = checkCodec().decodeResponse(response)
  const ok = answer['ok_response'] as Json | undefined
  const denied = answer['denied_response'] as Json | undefined
  const headers = ((ok?.['headers'] as Json[] | undefined) ?? []).map((h) => h['header'] as Json)
  const status = (denied?.['status'] as Json | undefined)?.['code']
  return {
    decision,
    // A denied_response without a status is answered 403 by Envoy.
    status: denied ? (typeof status === 'number' ? status : 403) : null,
    set: headers.map((h) => ({ name: text(h['key']), value: text(h['value']) })),
    remove: ((ok?.['headers_to_remove'] as string[] | undefined) ?? []).map(text),
  }
}

/** The Envoy http_service header that lists what the proxy removes. */
const ENVOY_REMOVE = 'x-envoy-auth-headers-to-remove'

function httpAnswer(
  policy: CompiledPolicy,
  url: string,
  rawHeaders: readonly string[],
  trace: Trace,
): Answered {
  const result = authorize(policy, url, rawHeaders, trace)
  // explainCommand builds the URL from a dialect it checked.
  if (result === undefined) throw new UsageError(`${url} names no dialect`)
  const { answer } = result
  const set: { name: string; value: string }[] = []
  let remove: string[] = []
  for (let i = 0; i + 1 < answer.headers.length; i += 2) {
    const name = answer.headers[i] as string
    const value = answer.headers[i + 1] as string
    if (name === ENVOY_REMOVE) remove = value.split(',')
    else if (name !== 'content-length' && name !== 'content-type') set.push({ name, value })
  }
  return {
    decision: result.decision,
    status: answer.status === 200 ? null : answer.status,
    set,
    remove,
  }
}

// JSON.stringify escapes C0 controls in strings itself; its own newlines are layout.
const CONTROL_IN_JSON = /[\u007f-\u009f\u2028\u2029]/g

/** Who the client is, or why it is unknown. */
function clientText(e: Explanation): string {
  if (e.client !== null) return e.client
  const peer = e.chain.entries[0] ?? ''
  if (peer === '') return '(unknown: the request has no peer address)'
  if (e.chain.header === null)
    return `(unknown: the peer ${JSON.stringify(peer)} is not an IP address)`
  return `(unknown: the ${e.chain.header} walk stopped at an entry that is not an address, or at a limit)`
}

function chainText(e: Explanation): string {
  const peer = e.chain.entries[0] ?? ''
  if (peer === '') return 'no peer address'
  if (e.chain.header === null) return `the peer ${peer}`
  return `${e.chain.header}, from the peer leftwards: ${e.chain.entries.join(' ← ')}`
}

function statusText(e: Explanation): string {
  if (e.status !== null) return String(e.status)
  if (e.denyStatus !== null) return `- (dry run: enforced, the answer would be ${e.denyStatus})`
  return '-'
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
    ['client', clientText(e)],
    ['chain', chainText(e)],
    ['rule', e.rule ?? '-'],
    ['status', statusText(e)],
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

const REQUEST_FLAGS = ['authority', 'peer', 'header', 'path', 'method', 'site', 'dialect'] as const

/** An HTTP authorization request as the proxy of `--dialect` sends it: only --header, --site and Envoy's --path. */
function httpRequestFromFlags(
  dialect: string,
  values: Parsed<typeof EXPLAIN>['values'],
  given: ReadonlySet<string>,
): ExplainRequest {
  const spelled = (['authority', 'peer', 'method'] as const).filter((f) => given.has(f))
  if (spelled.length > 0 || (dialect !== 'envoy' && given.has('path'))) {
    throw new UsageError(
      `with --dialect the request is the headers the proxy sends: give them with --header (${dialect === 'traefik' ? 'x-forwarded-for, x-forwarded-host, x-forwarded-uri' : `x-hostguard-peer, ${dialect === 'envoy' ? 'host' : 'x-hostguard-authority, x-hostguard-path'}`}), not ${[...spelled, ...(given.has('path') ? ['path'] : [])].map((f) => `--${f}`).join(', ')}`,
    )
  }
  const rawHeaders: string[] = []
  for (const header of values.header) {
    const eq = header.indexOf('=')
    if (eq <= 0) throw new UsageError(`--header wants NAME=VALUE, got ${JSON.stringify(header)}`)
    rawHeaders.push(header.slice(0, eq).trim(), header.slice(eq + 1))
  }
  // Envoy's http_service appends the original path to the URL.
  const path = dialect === 'envoy' ? values.path : ''
  return { api: 'http', url: `/${dialect}/${values.site ?? TOP_LEVEL_SEGMENT}${path}`, rawHeaders }
}

export const EXPLAIN = {
  name: 'explain',
  summary: "Decide one request with the server's code and show how: client, chain, rule, answer",
  options: {
    policy: { kind: 'text', value: 'FILE', required: true, help: 'the policy to decide with' },
    json: { kind: 'flag', help: 'print the explanation as JSON' },
    expect: {
      kind: 'text',
      value: 'allow|deny[:REASON]',
      help: 'exit 1 unless the decision (and its reason) is this one',
    },
    authority: { kind: 'text', value: 'HOST', help: 'the Host (:authority)' },
    peer: { kind: 'text', value: 'IP', help: "the connection's source address Envoy reports" },
    header: { kind: 'text', value: 'NAME=VALUE', multiple: true, help: 'a request header' },
    path: { kind: 'text', value: 'PATH', default: '/', help: 'the request path' },
    method: { kind: 'text', value: 'METHOD', default: 'GET', help: 'the request method' },
    site: {
      kind: 'text',
      value: 'NAME',
      help: "the site: Envoy's context_extensions, or the URL's with --dialect",
    },
    dialect: {
      kind: 'text',
      value: 'DIALECT',
      choices: DIALECTS,
      help: 'decide an HTTP authorization request, as this proxy sends it to --authz-port',
    },
    kubeconfig: { kind: 'text', value: 'FILE', help: 'for k8s: address sources' },
    'cache-dir': { kind: 'text', value: 'DIR', help: "k8s: sources' address cache, as serve's" },
    'sync-wait': {
      kind: 'whole',
      value: 'SECONDS',
      default: 10,
      min: 0,
      max: 3600,
      help: 'how long to wait for k8s: sources',
    },
    'max-policy-bytes': {
      ...MAX_POLICY_BYTES_OPTION,
      help: 'largest policy, {file} secret, address file or request file read',
    },
  },
  operands: { value: 'REQUEST.bin|REQUEST.json', min: 0, max: 1 },
  notes: [
    "The request is a file (a captured CheckRequest as protobuf bytes, or its proto JSON with the proto's field names) or the request flags --authority, --peer, --header, --path, --method and --site; without --peer the request has no peer address. Protobuf text format (.txtpb) is not read.",
    'With --dialect nginx|caddy|traefik|envoy the request is an HTTP authorization request as that proxy sends it to --authz-port: its headers (--header x-hostguard-peer=203.0.113.7 --header x-hostguard-authority=www.example.com for nginx and Caddy; x-forwarded-for, x-forwarded-host and x-forwarded-uri for Traefik; x-hostguard-peer and host for Envoy, whose --path is appended to the URL) and --site.',
    '--expect checks the decision, not the answer: on a dry-run site a deny is answered allow, and --expect deny:host_not_allowed still matches, so a check keeps its meaning when dryRun is switched off.',
    'Exit 0: explained (and as expected); 1: not as expected, or the policy has errors; 2: a usage error or an unreadable request.',
  ],
} as const satisfies CommandSpec

/** Exit code 0 when the request was explained (and as --expect wanted), 1 when not or the policy is bad. */
export async function explainCommand(
  { values, operands, given }: Parsed<typeof EXPLAIN>,
  io: CommandIo,
): Promise<number> {
  const expected = values.expect === undefined ? undefined : expectation(values.expect)
  const flags = REQUEST_FLAGS.some((f) => given.has(f))
  const file = operands[0]
  if (file !== undefined && flags)
    throw new UsageError('give a request file or request flags, not both')
  if (file === undefined && !flags)
    throw new UsageError(
      'give a request: a .bin or .json CheckRequest, or flags such as --authority and --peer',
    )
  const dialect = values.dialect
  if (dialect !== undefined && file !== undefined)
    throw new UsageError('--dialect takes the request as flags (--header, --site), not a file')
  const request =
    file === undefined
      ? {
          bytes:
            dialect === undefined
              ? checkCodec().encodeRequest(requestFromFlags(values))
              : httpRequestFromFlags(dialect, values, given),
          unread: [],
        }
      : readRequest(file, values['max-policy-bytes'])
  if (request.unread.length > 0) {
    io.stderr.write(
      `hostguard explain: ${escapeControls(`${file}: not read, hostguard reads no such field: ${request.unread.join(', ')}`)}\n`,
    )
  }
  let explanation: Explanation
  try {
    explanation = await explain(
      values.policy,
      request.bytes,
      {
        ...(values.kubeconfig === undefined ? {} : { kubeconfig: values.kubeconfig }),
        ...(values['cache-dir'] === undefined ? {} : { cacheDir: values['cache-dir'] }),
        syncWaitMs: values['sync-wait'] * 1000,
        maxPolicyBytes: values['max-policy-bytes'],
        warnings: io.stderr,
      },
      io.env,
    )
  } catch (err) {
    if (!(err instanceof PolicyLoadError)) throw err
    for (const e of err.errors) io.stderr.write(`${e.message}\n`)
    return 1
  }
  io.stdout.write(
    values.json
      ? `${JSON.stringify(explanation, null, 2).replace(CONTROL_IN_JSON, escapeControl)}\n`
      : humanText(explanation),
  )
  if (expected === undefined) return 0
  const met =
    explanation.decision === expected.decision &&
    (expected.reason === undefined || explanation.reason === expected.reason)
  if (met) return 0
  const dryRun =
    explanation.answer !== explanation.decision ? ` (answered ${explanation.answer}: dry run)` : ''
  io.stderr.write(
    `hostguard explain: expected ${values.expect}, but the decision is ${explanation.decision}:${explanation.reason}${dryRun}\n`,
  )
  return 1
}
