// Policy file (YAML or JSON) → PolicySpec. Load is cold, so it reports every problem at once,
// each with a stable code and the file:line:col of the node it is about (SPEC "Policy file").

import { dirname, resolve } from 'node:path'
import {
  type Alias,
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  visit,
} from 'yaml'
import {
  type CidrRange,
  compileCidrs,
  familiesCovered,
  networkAddress,
  sameIp,
} from '../net/cidr.js'
import { formatIp, parseIp } from '../net/ip.js'
import { PolicyError, type PolicyErrorCode, PolicyLoadError, type SourcePos } from './errors.js'
import { DEFAULT_MAX_POLICY_BYTES, FileReadError, readBoundedFile } from './read.js'
import {
  type AddressList,
  type AddressSource,
  CLIENT_ADDRESS_HEADERS,
  type ClientCidrsSpec,
  DEFAULT_DENY_STATUS,
  DENY_STATUSES,
  type DenySpec,
  type HealthCheckSpec,
  HOST_HEADERS,
  NODE_ADDRESS_TYPES,
  type NodeAddressType,
  type PolicySpec,
  type SiteSpec,
  TOP_LEVEL_SITE,
  TRUSTABLE_HEADERS,
  type TrustableHeader,
} from './schema.js'

const SITE_KEYS = [
  'trustedProxies',
  'trustedHeaders',
  'allowedHosts',
  'allowedCidrNets',
  'clientCidrs',
  'healthCheck',
  'clientIpHeader',
  'deny',
  'dryRun',
] as const
const TOP_KEYS = ['version', ...SITE_KEYS, 'sites'] as const

// Matched before lower-casing, so that no non-ASCII letter lower-cases its way into a name.
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i
const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/
const DOMAIN = /^[a-z0-9.-]+$/i
const BRACKETED_V6 = /^\[[a-f0-9]*:[a-f0-9.:]+\]$/i

type Value = Node | null

// Bounds on what a policy may make the loader do (SPEC "Bounded work"), far above any real
// policy: a YAML alias is resolved once, but each use of an aliased list is validated (and each
// site compiled) again, so a small file could otherwise expand into a huge one.
/** YAML aliases (`*name`) in one policy file. */
export const MAX_ALIASES = 1000
/** Sites under `sites:`. */
export const MAX_SITES = 1000
/** List and mapping entries validated in all, an aliased collection counted at each use; also the entries of one address file. */
export const MAX_ENTRIES = 100_000

/** How the files a policy names are read. */
export interface ReadOptions {
  /** `--max-policy-bytes` (DEFAULT_MAX_POLICY_BYTES). */
  readonly maxPolicyBytes?: number
  /** Called with each file read and its bytes (serve compares them with the last load's). */
  readonly onRead?: (file: string, bytes: Buffer) => void
}

interface Ctx {
  readonly file: string
  readonly baseDir: string
  readonly lines: LineCounter
  readonly env: NodeJS.ProcessEnv
  readonly read: ReadOptions
  readonly errors: PolicyError[]
  readonly warnings: PolicyError[]
  readonly resolveAlias: (node: Node) => Value
  /** Entries validated so far, against MAX_ENTRIES. */
  entries: number
}

/**
 * Counts a collection's entries against MAX_ENTRIES; false (reported once) when over, and the
 * collection is then not looked into.
 */
function withinEntries(ctx: Ctx, node: Value, field: string, count: number): boolean {
  if (ctx.entries > MAX_ENTRIES) return false
  ctx.entries += count
  if (ctx.entries <= MAX_ENTRIES) return true
  report(
    ctx,
    'POLICY_TOO_MANY_ENTRIES',
    node,
    field,
    `the policy has more than ${MAX_ENTRIES} list and mapping entries (an aliased list counts at each use)`,
  )
  return false
}

function position(ctx: Ctx, node: Value, field: string): SourcePos {
  const { line, col } = ctx.lines.linePos(node?.range?.[0] ?? 0)
  return { file: ctx.file, line, col, field }
}

function report(ctx: Ctx, code: PolicyErrorCode, node: Value, field: string, detail: string): void {
  ctx.errors.push(new PolicyError(code, position(ctx, node, field), detail))
}

function warn(ctx: Ctx, code: PolicyErrorCode, node: Value, field: string, detail: string): void {
  ctx.warnings.push(new PolicyError(code, position(ctx, node, field), detail))
}

function deref(ctx: Ctx, node: unknown): Value {
  if (node === null || node === undefined) return null
  if (isAlias(node)) return ctx.resolveAlias(node)
  return node as Node
}

function isNull(node: Value): boolean {
  return node === null || (isScalar(node) && node.value === null)
}

/**
 * What a node is, by type alone: the value may be a secret written where it does not belong
 * (SPEC "Bounded work"), and the message already names its line, column and field.
 */
function describe(node: Value): string {
  if (isNull(node)) return 'nothing (null)'
  if (isMap(node)) return 'a mapping'
  if (isSeq(node)) return 'a list'
  if (isScalar(node)) {
    const type = typeof node.value
    return type === 'string' ? 'a string' : type === 'object' ? 'a value' : `a ${type}`
  }
  return 'something else'
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost))
    }
    prev = cur
  }
  return prev[b.length] ?? 0
}

/** A mapping's entries by key; unknown and non-string keys are reported. */
function entries(
  ctx: Ctx,
  node: Value,
  field: string,
  known: readonly string[] | undefined,
): Map<string, { key: Value; value: Value }> | undefined {
  if (!isMap(node)) {
    report(ctx, 'POLICY_TYPE', node, field, `expected a mapping, got ${describe(node)}`)
    return undefined
  }
  const out = new Map<string, { key: Value; value: Value }>()
  if (!withinEntries(ctx, node, field || '(document)', node.items.length)) return out
  for (const pair of node.items) {
    const key = deref(ctx, pair.key)
    const name = isScalar(key) ? key.value : undefined
    const path = field ? `${field}.${String(name)}` : String(name)
    if (typeof name !== 'string') {
      report(ctx, 'POLICY_TYPE', key, path, `keys must be strings, got ${describe(key)}`)
      continue
    }
    if (known && !known.includes(name)) {
      const near = known.find((k) => editDistance(k.toLowerCase(), name.toLowerCase()) <= 2)
      const hint = near ? ` (did you mean ${near}?)` : ` (known keys: ${known.join(', ')})`
      report(ctx, 'POLICY_UNKNOWN_KEY', key, path, `unknown key "${name}"${hint}`)
      continue
    }
    out.set(name, { key, value: deref(ctx, pair.value) })
  }
  return out
}

function list(ctx: Ctx, node: Value, field: string): Value[] | undefined {
  if (!isSeq(node)) {
    report(ctx, 'POLICY_TYPE', node, field, `expected a list, got ${describe(node)}`)
    return undefined
  }
  if (!withinEntries(ctx, node, field, node.items.length)) return []
  return node.items.map((item) => deref(ctx, item))
}

function string(ctx: Ctx, node: Value, field: string): string | undefined {
  if (isScalar(node) && typeof node.value === 'string') return node.value
  report(ctx, 'POLICY_TYPE', node, field, `expected a string, got ${describe(node)}`)
  return undefined
}

function boolean(ctx: Ctx, node: Value, field: string): boolean | undefined {
  if (isScalar(node) && typeof node.value === 'boolean') return node.value
  report(ctx, 'POLICY_TYPE', node, field, `expected true or false, got ${describe(node)}`)
  return undefined
}

function strings(
  ctx: Ctx,
  node: Value,
  field: string,
): { text: string; node: Value; field: string }[] {
  const items = list(ctx, node, field) ?? []
  const out: { text: string; node: Value; field: string }[] = []
  items.forEach((item, i) => {
    const text = string(ctx, item, `${field}[${i}]`)
    if (text !== undefined) out.push({ text, node: item, field: `${field}[${i}]` })
  })
  return out
}

type CidrResult = { range: CidrRange } | { code: PolicyErrorCode; detail: string }

/**
 * One `trustedProxies`/`allowedCidrNets`/`clientCidrs` entry, read with the same strict parser
 * as the request path, so that the policy and the request agree on what an address is.
 */
export function parseCidrEntry(text: string): CidrResult {
  const slash = text.indexOf('/')
  const address = slash < 0 ? text : text.slice(0, slash)
  const ip = parseIp(address)
  if (ip === undefined) {
    return {
      code: 'POLICY_CIDR_INVALID',
      detail: `"${text}" is not an IP address or CIDR (IPv4 is four decimal parts 0-255 without leading zeros; IPv6 has no zone id)`,
    }
  }
  const writtenV6 = address.includes(':')
  const width = writtenV6 ? 128 : 32
  const bits = slash < 0 ? String(width) : text.slice(slash + 1)
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bits) || Number(bits) > width) {
    return {
      code: 'POLICY_CIDR_INVALID',
      detail: `"${text}": the prefix length must be a number from 0 to ${width}`,
    }
  }
  const prefix = Number(bits)
  const mapped = ip.family === 4 && writtenV6
  if (mapped && prefix < 96) {
    // SPEC "Addresses": IPv4 and IPv6 are separate spaces. A shorter prefix would reach outside
    // ::ffff:0:0/96 into IPv6; reading it as ::/n (as proxy-addr 2.0.7 did) trusts every IPv4 peer.
    // Suggested only when the address is exactly the network of a.b.c.d/n: a rounded range
    // (::ffff:10.0.0.0/0 → 0.0.0.0/0) would widen trust, so none is offered then.
    const exact = prefix <= 32 && sameIp(networkAddress(ip, prefix), ip)
    const v4 = formatIp(ip)
    const meant = exact ? `; did you mean ${v4}/${prefix} (or ::ffff:${v4}/${prefix + 96})?` : ''
    return {
      code: 'POLICY_CIDR_MAPPED_PREFIX',
      detail: `"${text}" is an IPv4-mapped range with a prefix under 96, which would reach outside the mapped space${meant}`,
    }
  }
  // ::ffff:a.b.c.d/n is the IPv4 range a.b.c.d/(n-96) (SPEC "Addresses").
  const range: CidrRange = mapped ? { ip, prefix: prefix - 96 } : { ip, prefix }
  const network = networkAddress(range.ip, range.prefix)
  if (!sameIp(network, range.ip)) {
    const shown = mapped ? `::ffff:${formatIp(network)}` : formatIp(network)
    return {
      code: 'POLICY_CIDR_HOST_BITS',
      detail: `"${text}" has host bits set; did you mean ${shown}/${prefix}?`,
    }
  }
  return { range }
}

/** The shorthand for `{k8s: nodes}`: every Node's InternalIP addresses. */
export const K8S_NODES = 'k8s:nodes'

// Kubernetes label selector syntax (apimachinery labels.Parse): requirements joined by commas,
// each `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (v, …)`, `key notin (v, …)`, `key>N`, `key<N`.
const LABEL_NAME = '[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?'
const LABEL_KEY = `([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?${LABEL_NAME}`
const LABEL_VALUE = `(${LABEL_NAME})?`
const REQUIREMENT = new RegExp(
  `^\\s*(!?\\s*${LABEL_KEY}|${LABEL_KEY}\\s*(==?|!=)\\s*${LABEL_VALUE}|${LABEL_KEY}\\s+(in|notin)\\s*\\(\\s*${LABEL_NAME}(\\s*,\\s*${LABEL_NAME})*\\s*\\)|${LABEL_KEY}\\s*[<>]\\s*-?[0-9]+)\\s*$`,
)

/** Whether `selector` is a label selector the API server accepts; "" selects every Node. */
export function isLabelSelector(selector: string): boolean {
  if (selector.trim() === '') return true
  // Commas inside `in (…)` belong to the value list, not to the requirement list.
  const requirements = selector.match(/([^,(]|\([^)]*\))+/g) ?? []
  const rejoined = requirements.join(',')
  return rejoined === selector && requirements.every((r) => REQUIREMENT.test(r))
}

function nodesSource(
  labelSelector: string,
  addressTypes: readonly NodeAddressType[],
): AddressSource {
  const types = NODE_ADDRESS_TYPES.filter((t) => addressTypes.includes(t))
  const query: string[] = []
  if (labelSelector !== '') query.push(`labelSelector=${labelSelector}`)
  if (types.join() !== 'InternalIP') query.push(`addressTypes=${types.join(',')}`)
  const name = query.length > 0 ? `${K8S_NODES}?${query.join('&')}` : K8S_NODES
  return { kind: 'k8s-nodes', name, labelSelector, addressTypes: types }
}

/** `{k8s: nodes, labelSelector?, addressTypes?}` or `{file: PATH}`. */
function addressSource(ctx: Ctx, node: Value, field: string): AddressSource | undefined {
  const fields = entries(ctx, node, field, ['k8s', 'labelSelector', 'addressTypes', 'file'])
  if (!fields) return undefined
  const k8s = fields.get('k8s')
  const file = fields.get('file')
  if ((k8s === undefined) === (file === undefined)) {
    report(
      ctx,
      'POLICY_SOURCE_INVALID',
      node,
      field,
      'a dynamic source is {k8s: nodes, labelSelector: "...", addressTypes: [InternalIP]} or {file: PATH}',
    )
    return undefined
  }
  if (file) {
    const extra = ['labelSelector', 'addressTypes'].find((key) => fields.has(key))
    if (extra) {
      report(ctx, 'POLICY_SOURCE_INVALID', node, `${field}.${extra}`, `${extra} is for k8s: nodes`)
      return undefined
    }
    const path = string(ctx, file.value, `${field}.file`)
    if (path === undefined) return undefined
    if (path.trim() === '') {
      report(ctx, 'POLICY_SOURCE_INVALID', file.value, `${field}.file`, 'the path is empty')
      return undefined
    }
    return { kind: 'file', name: `file:${path}`, path: resolve(ctx.baseDir, path) }
  }
  const kind = k8s && string(ctx, k8s.value, `${field}.k8s`)
  if (kind === undefined) return undefined
  if (kind !== 'nodes') {
    report(
      ctx,
      'POLICY_SOURCE_INVALID',
      k8s?.value ?? node,
      `${field}.k8s`,
      `unknown Kubernetes source "${kind}" (known: nodes)`,
    )
    return undefined
  }
  let labelSelector = ''
  const selectorEntry = fields.get('labelSelector')
  if (selectorEntry) {
    const text = string(ctx, selectorEntry.value, `${field}.labelSelector`)
    if (text === undefined) return undefined
    if (!isLabelSelector(text)) {
      report(
        ctx,
        'POLICY_SOURCE_INVALID',
        selectorEntry.value,
        `${field}.labelSelector`,
        `"${text}" is not a Kubernetes label selector (e.g. "node-role.kubernetes.io/edge" or "pool in (a, b),zone!=x")`,
      )
      return undefined
    }
    labelSelector = text.trim()
  }
  let addressTypes: NodeAddressType[] = ['InternalIP']
  const typesEntry = fields.get('addressTypes')
  if (typesEntry) {
    const given = strings(ctx, typesEntry.value, `${field}.addressTypes`)
    const known = given.filter((t) => {
      if ((NODE_ADDRESS_TYPES as readonly string[]).includes(t.text)) return true
      report(
        ctx,
        'POLICY_SOURCE_INVALID',
        t.node,
        t.field,
        `"${t.text}" is not an IP address type of a Node (known: ${NODE_ADDRESS_TYPES.join(', ')})`,
      )
      return false
    })
    if (known.length !== given.length || !isSeq(typesEntry.value)) return undefined
    if (known.length === 0) {
      report(
        ctx,
        'POLICY_SOURCE_INVALID',
        typesEntry.value,
        `${field}.addressTypes`,
        'list at least one address type',
      )
      return undefined
    }
    addressTypes = known.map((t) => t.text as NodeAddressType)
  }
  return nodesSource(labelSelector, addressTypes)
}

/** An IP/CIDR list: literal entries, and dynamic sources as `k8s:nodes` or a mapping. */
function addressList(
  ctx: Ctx,
  node: Value,
  field: string,
  onRange?: (range: CidrRange, node: Value, field: string) => void,
): AddressList | undefined {
  const items = list(ctx, node, field)
  if (!items) return undefined
  const ranges: CidrRange[] = []
  const sources = new Map<string, AddressSource>()
  items.forEach((item, i) => {
    const itemField = `${field}[${i}]`
    if (isMap(item)) {
      const source = addressSource(ctx, item, itemField)
      if (source) sources.set(source.name, source)
      return
    }
    const text = string(ctx, item, itemField)?.trim()
    if (text === undefined) return
    if (text === K8S_NODES) {
      const source = nodesSource('', ['InternalIP'])
      sources.set(source.name, source)
      return
    }
    const result = parseCidrEntry(text)
    if ('range' in result) {
      ranges.push(result.range)
      onRange?.(result.range, item, itemField)
    } else {
      const hint = text.startsWith('k8s:')
        ? ' (dynamic sources: k8s:nodes, {k8s: nodes, labelSelector: ..., addressTypes: [...]}, {file: PATH})'
        : ''
      report(ctx, result.code, item, itemField, result.detail + hint)
    }
  })
  return { ranges, sources: [...sources.values()] }
}

/** One `allowedHosts` pattern, lower-cased; undefined (reported) when it can never match. */
function hostPattern(ctx: Ctx, node: Value, field: string, raw: string): string | undefined {
  const pattern = raw.trim().toLowerCase()
  const fail = (code: PolicyErrorCode, detail: string): undefined => {
    report(ctx, code, node, field, detail)
    return undefined
  }
  if (pattern === '')
    return fail('POLICY_HOST_PATTERN_EMPTY', 'an empty host pattern matches nothing')
  // Checked before lower-casing matters: U+212A (KELVIN SIGN) lower-cases to an ASCII "k".
  if (!/^[\x21-\x7e]+$/.test(raw.trim())) {
    return fail(
      'POLICY_HOST_PATTERN_INVALID',
      `"${raw}" never matches: a Host is ASCII (write names in punycode)`,
    )
  }
  if (pattern === '*') return pattern
  if (pattern.startsWith('*.')) {
    return fail(
      'POLICY_HOST_PATTERN_WILDCARD',
      `"${raw}" is not a pattern Django matches; use "${pattern.slice(1)}" for the domain and all its subdomains`,
    )
  }
  const body = pattern.startsWith('.') ? pattern.slice(1) : pattern
  if (!body.startsWith('[') && (body.match(/:/g)?.length ?? 0) >= 2) {
    return fail(
      'POLICY_HOST_PATTERN_IPV6_UNBRACKETED',
      `"${raw}": write an IPv6 address in brackets, as in a Host header: "[${body}]"`,
    )
  }
  const port = /^(.*[^:]):[0-9]+$/.exec(body)
  if (port && (DOMAIN.test(port[1] ?? '') || BRACKETED_V6.test(port[1] ?? ''))) {
    return fail(
      'POLICY_HOST_PATTERN_PORT',
      `"${raw}" never matches: the port is removed from the Host before matching; use "${pattern.slice(0, pattern.length - body.length)}${port[1]}"`,
    )
  }
  if (!DOMAIN.test(body) && !BRACKETED_V6.test(body)) {
    return fail(
      'POLICY_HOST_PATTERN_INVALID',
      `"${raw}" never matches: a host is letters, digits, "." and "-", or an IPv6 literal in brackets`,
    )
  }
  if (body === '' || body === '.')
    return fail('POLICY_HOST_PATTERN_INVALID', `"${raw}" never matches a host`)
  if (body.endsWith('.')) {
    return fail(
      'POLICY_HOST_PATTERN_TRAILING_DOT',
      `"${raw}" never matches: the trailing dot is removed from the Host before matching; use "${pattern.slice(0, -1)}"`,
    )
  }
  return pattern
}

function headerName(ctx: Ctx, node: Value, field: string): string | undefined {
  const raw = string(ctx, node, field)
  if (raw === undefined) return undefined
  const name = raw.toLowerCase()
  if (!HEADER_NAME.test(raw)) {
    report(ctx, 'POLICY_HEADER_NAME_INVALID', node, field, `"${raw}" is not an HTTP header name`)
    return undefined
  }
  if (name === 'host') {
    report(
      ctx,
      'POLICY_HEADER_NAME_INVALID',
      node,
      field,
      `"${raw}" cannot be used: Envoy does not let ext_authz change the Host`,
    )
    return undefined
  }
  return name
}

function trustedHeaders(ctx: Ctx, node: Value, field: string): TrustableHeader[] | undefined {
  if (!isSeq(node)) {
    list(ctx, node, field)
    return undefined
  }
  const out: TrustableHeader[] = []
  let clientHeader: string | undefined
  let hostHeader: string | undefined
  for (const item of strings(ctx, node, field)) {
    const name = item.text.trim().toLowerCase() as TrustableHeader
    if (!TRUSTABLE_HEADERS.includes(name)) {
      report(
        ctx,
        'POLICY_TRUSTED_HEADER_UNKNOWN',
        item.node,
        item.field,
        `"${item.text}" is not a forwarding header hostguard reads (one of ${TRUSTABLE_HEADERS.join(', ')})`,
      )
      continue
    }
    const conflict = (kind: string, first: string): void =>
      report(
        ctx,
        'POLICY_TRUSTED_HEADER_CONFLICT',
        item.node,
        item.field,
        `"${name}" and "${first}" are both ${kind} headers; trust at most one, or which one wins would be a guess`,
      )
    if ((CLIENT_ADDRESS_HEADERS as readonly string[]).includes(name)) {
      if (clientHeader) conflict('client-address', clientHeader)
      else clientHeader = name
    }
    if ((HOST_HEADERS as readonly string[]).includes(name)) {
      if (hostHeader) conflict('host', hostHeader)
      else hostHeader = name
    }
    if (!out.includes(name)) out.push(name)
  }
  return out
}

function secret(ctx: Ctx, node: Value, field: string): Buffer | undefined {
  const source = isMap(node) ? entries(ctx, node, field, ['env', 'file', 'default']) : undefined
  const env = source?.get('env')
  const file = source?.get('file')
  const fallback = source?.get('default')
  if (!source || (env === undefined) === (file === undefined) || (fallback && !env)) {
    report(
      ctx,
      'POLICY_SECRET_SOURCE',
      node,
      field,
      'give the secret as { env: VARIABLE } (optionally with default:) or { file: /path }, never inline',
    )
    return undefined
  }
  let value: Buffer | undefined
  if (env) {
    const name = string(ctx, env.value, `${field}.env`)
    if (name === undefined) return undefined
    const defaultValue = fallback ? string(ctx, fallback.value, `${field}.default`) : undefined
    const text = ctx.env[name] ?? defaultValue
    value = text === undefined ? undefined : Buffer.from(text, 'utf8')
    if (value === undefined) {
      report(
        ctx,
        'POLICY_SECRET_UNREADABLE',
        env.value,
        `${field}.env`,
        // The name is not echoed: it may be the secret itself, written in the wrong place.
        'the environment variable named here is not set',
      )
      return undefined
    }
  } else if (file) {
    const path = string(ctx, file.value, `${field}.file`)
    if (path === undefined) return undefined
    try {
      // One trailing newline is dropped: `kubectl create secret --from-file` keeps the editor's.
      // Bytes as they are: a binary secret must not be decoded as UTF-8 (SPEC "Bounded work").
      value = withoutTrailingNewline(readFile(resolve(ctx.baseDir, path), ctx.read))
    } catch (err) {
      if (!(err instanceof FileReadError)) throw err
      const reason = err.message
      report(
        ctx,
        'POLICY_SECRET_UNREADABLE',
        file.value,
        `${field}.file`,
        `cannot read ${path} (${reason})`,
      )
      return undefined
    }
  }
  if (!value || value.length === 0) {
    report(
      ctx,
      'POLICY_SECRET_EMPTY',
      node,
      field,
      'the secret is empty, so an empty header would pass',
    )
    return undefined
  }
  return value
}

/** Drops one trailing LF or CRLF. */
function withoutTrailingNewline(bytes: Buffer): Buffer {
  let end = bytes.length
  if (bytes[end - 1] === 0x0a) end--
  if (end < bytes.length && bytes[end - 1] === 0x0d) end--
  return bytes.subarray(0, end)
}

function healthCheck(ctx: Ctx, node: Value, field: string): HealthCheckSpec | undefined {
  const fields = entries(ctx, node, field, ['header', 'value', 'paths'])
  if (!fields) return undefined
  const header = fields.get('header')
  const value = fields.get('value')
  if (!header) report(ctx, 'POLICY_REQUIRED', node, `${field}.header`, 'healthCheck needs a header')
  if (!value)
    report(
      ctx,
      'POLICY_REQUIRED',
      node,
      `${field}.value`,
      'healthCheck needs a value ({ env: … } or { file: … })',
    )
  const name = header ? headerName(ctx, header.value, `${field}.header`) : undefined
  const bytes = value ? secret(ctx, value.value, `${field}.value`) : undefined
  let paths: string[] | undefined
  const pathsEntry = fields.get('paths')
  if (pathsEntry) {
    paths = []
    for (const item of strings(ctx, pathsEntry.value, `${field}.paths`)) {
      if (!item.text.startsWith('/') || item.text.includes('?')) {
        report(
          ctx,
          'POLICY_HEALTH_PATH_INVALID',
          item.node,
          item.field,
          `"${item.text}" must start with "/" and have no query string (paths match exactly)`,
        )
      } else {
        paths.push(item.text)
      }
    }
  }
  if (name === undefined || bytes === undefined) return undefined
  if (!pathsEntry) {
    warn(
      ctx,
      'POLICY_WARN_HEALTH_CHECK_ANY_PATH',
      node,
      field,
      'without paths, the secret header opens every path, not only the health endpoint',
    )
  }
  return { header: name, secret: bytes, paths }
}

function clientCidrs(ctx: Ctx, node: Value, field: string): ClientCidrsSpec | undefined {
  const fields = entries(ctx, node, field, ['allow', 'deny'])
  if (!fields) return undefined
  const allow = fields.get('allow')
  const deny = fields.get('deny')
  return {
    allow: allow ? addressList(ctx, allow.value, `${field}.allow`) : undefined,
    deny: deny ? addressList(ctx, deny.value, `${field}.deny`) : undefined,
  }
}

function deny(ctx: Ctx, node: Value, field: string): DenySpec | undefined {
  const fields = entries(ctx, node, field, ['status', 'showReason'])
  if (!fields) return undefined
  let status = DEFAULT_DENY_STATUS
  const statusEntry = fields.get('status')
  if (statusEntry) {
    const v = statusEntry.value
    if (isScalar(v) && typeof v.value === 'number' && DENY_STATUSES.has(v.value)) status = v.value
    else
      report(
        ctx,
        'POLICY_DENY_STATUS',
        v,
        `${field}.status`,
        `expected a 4xx or 5xx status Envoy knows, got ${describe(v)}`,
      )
  }
  const show = fields.get('showReason')
  const showReason = show ? (boolean(ctx, show.value, `${field}.showReason`) ?? false) : false
  return { status, showReason }
}

/**
 * A site's fields, or the top level's; `isSite` allows null to switch an inherited block off.
 * `anyHost` is where `allowedHosts` lists "*", for the warning made once inheritance is known.
 */
function siteSpec(
  ctx: Ctx,
  fields: Map<string, { key: Value; value: Value }>,
  prefix: string,
  isSite: boolean,
): { spec: SiteSpec; anyHost: { node: Value; field: string } | undefined } {
  const spec: { -readonly [K in keyof SiteSpec]: SiteSpec[K] } = {}
  let anyHost: { node: Value; field: string } | undefined
  for (const [key, { value }] of fields) {
    const field = prefix + key
    const off =
      isSite &&
      isNull(value) &&
      (key === 'clientCidrs' || key === 'healthCheck' || key === 'clientIpHeader')
    switch (key) {
      case 'trustedProxies': {
        const whole: { family: 4 | 6; node: Value; field: string }[] = []
        const v = addressList(ctx, value, field, (range, node, itemField) => {
          if (range.prefix === 0) whole.push({ family: range.ip.family, node, field: itemField })
        })
        if (v) {
          spec.trustedProxies = v
          // Together, not only entry by entry: [0.0.0.0/1, 128.0.0.0/1] trusts every peer too.
          for (const family of familiesCovered(compileCidrs(v.ranges))) {
            const at = whole.find((w) => `IPv${w.family}` === family) ?? { node: value, field }
            warn(
              ctx,
              'POLICY_WARN_TRUSTS_ANY_PROXY',
              at.node,
              at.field,
              `every ${family} peer is a trusted proxy, so any client can choose its own address and Host headers`,
            )
          }
        }
        break
      }
      case 'trustedHeaders': {
        const v = trustedHeaders(ctx, value, field)
        if (v) spec.trustedHeaders = v
        break
      }
      case 'allowedHosts': {
        const patterns: string[] = []
        for (const item of strings(ctx, value, field)) {
          const p = hostPattern(ctx, item.node, item.field, item.text)
          if (p !== undefined) patterns.push(p)
          if (p === '*') anyHost = item
        }
        // Only a list without bad entries counts, so that it is not also reported as empty.
        if (isSeq(value) && patterns.length === value.items.length) spec.allowedHosts = patterns
        break
      }
      case 'allowedCidrNets': {
        const v = addressList(ctx, value, field)
        if (v) spec.allowedCidrNets = v
        break
      }
      case 'clientCidrs': {
        const v = off ? null : clientCidrs(ctx, value, field)
        if (v !== undefined) spec.clientCidrs = v
        break
      }
      case 'healthCheck': {
        const v = off ? null : healthCheck(ctx, value, field)
        if (v !== undefined) spec.healthCheck = v
        break
      }
      case 'clientIpHeader': {
        const v = off ? null : headerName(ctx, value, field)
        if (v !== undefined) spec.clientIpHeader = v
        break
      }
      case 'deny': {
        const v = deny(ctx, value, field)
        if (v) spec.deny = v
        break
      }
      case 'dryRun': {
        const v = boolean(ctx, value, field)
        if (v !== undefined) spec.dryRun = v
        if (v === true)
          warn(
            ctx,
            'POLICY_WARN_DRY_RUN',
            value,
            field,
            'denials are logged and counted but answered as allowed',
          )
        break
      }
    }
  }
  return { spec, anyHost }
}

/** `allowedHosts: ["*"]` where no `clientCidrs.allow` guards the site either. */
function warnAnyHost(
  ctx: Ctx,
  site: SiteSpec,
  top: SiteSpec,
  anyHost: { node: Value; field: string } | undefined,
): void {
  if (!anyHost) return
  const clientCidrs = site.clientCidrs === undefined ? top.clientCidrs : site.clientCidrs
  if (clientCidrs?.allow) return
  warn(
    ctx,
    'POLICY_WARN_ANY_HOST',
    anyHost.node,
    anyHost.field,
    'any Host is allowed and no clientCidrs.allow limits who may call: this guard lets everything through',
  )
}

function checkAllowsSomething(
  ctx: Ctx,
  site: SiteSpec,
  top: SiteSpec,
  node: Value,
  field: string,
): void {
  const hosts = site.allowedHosts ?? top.allowedHosts
  const nets = site.allowedCidrNets ?? top.allowedCidrNets
  const noNets = nets === undefined || nets.ranges.length + nets.sources.length === 0
  if (hosts !== undefined && hosts.length === 0 && noNets) {
    report(
      ctx,
      'POLICY_SITE_ALLOWS_NOTHING',
      node,
      field,
      'allowedHosts and allowedCidrNets are both empty, so every request would be denied',
    )
  }
}

/**
 * Each alias's node, from one walk of the document: the `yaml` package's Alias.resolve walks the
 * whole document on every call, so 16,000 aliases cost 16,000 walks. An alias names the last
 * node before it with that anchor, as in `yaml`. `tooMany` is the first alias over MAX_ALIASES.
 */
function aliasTargets(doc: Document.Parsed): {
  targets: Map<Alias, Node>
  tooMany: Alias | undefined
} {
  const targets = new Map<Alias, Node>()
  const anchors = new Map<string, Node>()
  let tooMany: Alias | undefined
  visit(doc, {
    Node(_key, node) {
      if (isAlias(node)) {
        if (targets.size >= MAX_ALIASES) {
          tooMany = node
          return visit.BREAK
        }
        const target = anchors.get(node.source)
        if (target) targets.set(node, target)
      } else if (node.anchor) {
        anchors.set(node.anchor, node)
      }
      return undefined
    },
  })
  return { targets, tooMany }
}

/** Parses and validates policy text; throws PolicyLoadError with every error found. */
export function parsePolicy(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  read: ReadOptions = {},
): PolicySpec {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false })
  const { targets, tooMany } = aliasTargets(doc)
  const ctx: Ctx = {
    file,
    baseDir: dirname(resolve(file)),
    lines,
    env,
    read,
    errors: [],
    warnings: [],
    resolveAlias: (node) => deref(ctx, isAlias(node) ? (targets.get(node) ?? null) : node),
    entries: 0,
  }
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const at = lines.linePos(e.pos[0])
      const message = e.message.split('\n')[0] ?? e.code
      ctx.errors.push(
        new PolicyError(
          'POLICY_YAML_SYNTAX',
          { file, line: at.line, col: at.col, field: '(document)' },
          message,
        ),
      )
    }
    throw new PolicyLoadError(ctx.errors)
  }
  if (tooMany) {
    report(
      ctx,
      'POLICY_YAML_ALIASES',
      tooMany,
      '(document)',
      `more than ${MAX_ALIASES} YAML aliases; write the lists out, or share fewer of them`,
    )
    throw new PolicyLoadError(ctx.errors)
  }
  const root = deref(ctx, doc.contents)
  if (!isMap(root)) {
    report(
      ctx,
      'POLICY_NOT_A_MAPPING',
      root,
      '(document)',
      `a policy is a mapping with version: 1, got ${describe(root)}`,
    )
    throw new PolicyLoadError(ctx.errors)
  }
  const fields = entries(ctx, root, '', TOP_KEYS) ?? new Map()
  const version = fields.get('version')
  if (!version) {
    report(ctx, 'POLICY_VERSION', root, 'version', 'version: 1 is required')
  } else if (!isScalar(version.value) || version.value.value !== 1) {
    report(
      ctx,
      'POLICY_VERSION',
      version.value,
      'version',
      `only version 1 is known, got ${describe(version.value)}`,
    )
  }
  if (!fields.has('allowedHosts')) {
    report(
      ctx,
      'POLICY_REQUIRED',
      root,
      'allowedHosts',
      'allowedHosts is required (["*"] allows any host)',
    )
  }
  const { spec: top, anyHost: topAnyHost } = siteSpec(ctx, fields, '', false)
  warnAnyHost(ctx, top, top, topAnyHost)
  checkAllowsSomething(ctx, {}, top, fields.get('allowedHosts')?.value ?? root, 'allowedHosts')

  const sites = new Map<string, SiteSpec>()
  const sitesEntry = fields.get('sites')
  if (isMap(sitesEntry?.value) && sitesEntry.value.items.length > MAX_SITES) {
    report(
      ctx,
      'POLICY_TOO_MANY_SITES',
      sitesEntry.value,
      'sites',
      `${sitesEntry.value.items.length} sites, more than the ${MAX_SITES} a policy may have`,
    )
  } else if (sitesEntry && !isNull(sitesEntry.value)) {
    for (const [name, { key, value }] of entries(ctx, sitesEntry.value, 'sites', undefined) ?? []) {
      const field = `sites.${name}`
      if (name === TOP_LEVEL_SITE || !SITE_NAME.test(name)) {
        const why =
          name === TOP_LEVEL_SITE
            ? '"default" names the top level in answers and metrics'
            : 'a site name is 1-63 letters, digits, "_", "." or "-", starting with a letter or digit'
        report(ctx, 'POLICY_SITE_NAME_INVALID', key, field, why)
        continue
      }
      const siteFields = entries(ctx, value, field, SITE_KEYS)
      if (!siteFields) continue
      const { spec: site, anyHost } = siteSpec(ctx, siteFields, `${field}.`, true)
      warnAnyHost(ctx, site, top, anyHost)
      checkAllowsSomething(ctx, site, top, value, field)
      sites.set(name, site)
    }
  }
  if (ctx.errors.length > 0) {
    ctx.errors.sort((a, b) => a.at.line - b.at.line || a.at.col - b.at.col)
    throw new PolicyLoadError(ctx.errors)
  }
  ctx.warnings.sort((a, b) => a.at.line - b.at.line || a.at.col - b.at.col)
  return { top, sites, warnings: ctx.warnings }
}

function readFile(file: string, options: ReadOptions): Buffer {
  const bytes = readBoundedFile(file, options.maxPolicyBytes ?? DEFAULT_MAX_POLICY_BYTES)
  options.onRead?.(file, bytes)
  return bytes
}

/** A file's text; throws PolicyLoadError with `code`, at its first line, when it cannot be read. */
export function readConfigFile(
  file: string,
  code: PolicyErrorCode,
  field: string,
  what: string,
  options: ReadOptions = {},
): string {
  try {
    return readFile(file, options).toString('utf8')
  } catch (err) {
    if (!(err instanceof FileReadError)) throw err
    const at = { file, line: 1, col: 1, field }
    throw new PolicyLoadError([new PolicyError(code, at, `cannot read ${what} (${err.message})`)])
  }
}

export function loadPolicyFile(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  options: ReadOptions = {},
): PolicySpec {
  const text = readConfigFile(file, 'POLICY_FILE_UNREADABLE', '(file)', 'the policy file', options)
  return parsePolicy(text, file, env, options)
}
