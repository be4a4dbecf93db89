// Policy file (YAML or JSON) → PolicySpec. Load is cold, so it reports every problem at once,
// each with a stable code and the file:line:col of the node it is about (SPEC "Policy file").
// The site's fields are read here; lists of addresses, host patterns and secrets in their own
// modules, all through the node readers of yaml-nodes.ts.

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
import { CLIENT_ADDRESS_HEADERS, HOST_HEADERS } from '../decision/types.js'
import { compileCidrs, familiesCovered } from '../net/cidr.js'
import { addressList } from './address-list.js'
import { PolicyError, PolicyLoadError } from './errors.js'
import { hostPattern } from './host-pattern.js'
import { type ReadOptions, readConfigFile } from './read.js'
import {
  type ClientCidrsSpec,
  DEFAULT_DENY_STATUS,
  DENY_STATUSES,
  type DenySpec,
  type HealthCheckSpec,
  type PolicySpec,
  type SiteSpec,
  TOP_LEVEL_SITE,
  TRUSTABLE_HEADERS,
  type TrustableHeader,
} from './schema.js'
import { secret } from './secret.js'
import {
  boolean,
  deref,
  describe,
  entries,
  isNull,
  type LoadContext,
  list,
  report,
  string,
  strings,
  type Value,
  warn,
} from './yaml-nodes.js'

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

// Bounds on what a policy may make the loader do (SPEC "Bounded work"), far above any real
// policy: a YAML alias is resolved once, but each use of an aliased list is validated (and each
// site compiled) again, so a small file could otherwise expand into a huge one (MAX_ENTRIES:
// yaml-nodes.ts).
/** YAML aliases (`*name`) in one policy file. */
const MAX_ALIASES = 1000
/** Sites under `sites:`. */
const MAX_SITES = 1000

function headerName(ctx: LoadContext, node: Value, field: string): string | undefined {
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

function trustedHeaders(
  ctx: LoadContext,
  node: Value,
  field: string,
): TrustableHeader[] | undefined {
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

function healthCheck(ctx: LoadContext, node: Value, field: string): HealthCheckSpec | undefined {
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

function clientCidrs(ctx: LoadContext, node: Value, field: string): ClientCidrsSpec | undefined {
  const fields = entries(ctx, node, field, ['allow', 'deny'])
  if (!fields) return undefined
  const allow = fields.get('allow')
  const deny = fields.get('deny')
  const allowList = allow ? addressList(ctx, allow.value, `${field}.allow`) : undefined
  // A dynamic source may be empty now and fill later; a list of none stays empty.
  if (allow && allowList?.ranges.length === 0 && allowList.sources.length === 0) {
    warn(
      ctx,
      'POLICY_WARN_CLIENT_ALLOW_EMPTY',
      allow.value,
      `${field}.allow`,
      'an empty allow list admits no client: every request but a health check is denied (client_not_allowed); remove allow to admit every client',
    )
  }
  return {
    allow: allowList,
    deny: deny ? addressList(ctx, deny.value, `${field}.deny`) : undefined,
  }
}

function deny(ctx: LoadContext, node: Value, field: string): DenySpec | undefined {
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
  ctx: LoadContext,
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
  ctx: LoadContext,
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
  ctx: LoadContext,
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
  const ctx: LoadContext = {
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

export function loadPolicyFile(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  options: ReadOptions = {},
): PolicySpec {
  const text = readConfigFile(file, 'POLICY_FILE_UNREADABLE', '(file)', 'the policy file', options)
  return parsePolicy(text, file, env, options)
}
