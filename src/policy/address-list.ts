// Address lists (`trustedProxies`, `allowedCidrNets`, `clientCidrs.*`): literal entries and
// dynamic sources (`k8s:nodes`, `{k8s: nodes, …}`, `{file: PATH}`), and which sources a policy names.

import { resolve } from 'node:path'
import { isMap, isSeq } from 'yaml'
import type { CidrRange } from '../net/cidr.js'
import { parseCidrEntry } from './cidr-entry.js'
import { isLabelSelector } from './label-selector.js'
import {
  type AddressList,
  type AddressSource,
  NODE_ADDRESS_TYPES,
  type NodeAddressType,
  type PolicySpec,
  type SiteSpec,
} from './schema.js'
import {
  entries,
  type LoadContext,
  list,
  report,
  string,
  strings,
  type Value,
} from './yaml-nodes.js'

/** The shorthand for `{k8s: nodes}`: every Node's InternalIP addresses. */
const K8S_NODES = 'k8s:nodes'

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
function addressSource(ctx: LoadContext, node: Value, field: string): AddressSource | undefined {
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
export function addressList(
  ctx: LoadContext,
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

/** The sources a policy names, by name (sourcesOf). */
export type WantedSources = ReadonlyMap<
  string,
  { readonly source: AddressSource; readonly widens: boolean }
>

/** Each source the policy names, once, and whether an empty set of it could let more through. */
export function sourcesOf(
  spec: PolicySpec,
): Map<string, { source: AddressSource; widens: boolean }> {
  const out = new Map<string, { source: AddressSource; widens: boolean }>()
  const add = (list: AddressList | undefined, widens: boolean): void => {
    for (const source of list?.sources ?? []) {
      const seen = out.get(source.name)
      out.set(source.name, { source, widens: widens || (seen?.widens ?? false) })
    }
  }
  for (const site of [spec.top, ...spec.sites.values()] as SiteSpec[]) {
    // An empty trusted-proxy set makes the proxy the client, which a deny list may not hold; an
    // empty deny list denies nobody. The allow lists only deny more when empty.
    add(site.trustedProxies, true)
    add(site.clientCidrs?.deny, true)
    add(site.allowedCidrNets, false)
    add(site.clientCidrs?.allow, false)
  }
  return out
}
