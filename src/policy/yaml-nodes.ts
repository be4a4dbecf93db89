// Readers of the policy's YAML nodes: each checks a node's type and, where it is not what was
// expected, reports it with its file:line:col and field path, so that a load reports every problem.

import { isAlias, isMap, isScalar, isSeq, type LineCounter, type Node } from 'yaml'
import { PolicyError, type PolicyErrorCode, type SourcePos } from './errors.js'
import type { ReadOptions } from './read.js'

export type Value = Node | null

/** List and mapping entries validated in all, an aliased collection counted at each use; also the entries of one address file. */
export const MAX_ENTRIES = 100_000

/** One load's state: where nodes are, what it found so far. */
export interface LoadContext {
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
function withinEntries(ctx: LoadContext, node: Value, field: string, count: number): boolean {
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

function position(ctx: LoadContext, node: Value, field: string): SourcePos {
  const { line, col } = ctx.lines.linePos(node?.range?.[0] ?? 0)
  return { file: ctx.file, line, col, field }
}

export function report(
  ctx: LoadContext,
  code: PolicyErrorCode,
  node: Value,
  field: string,
  detail: string,
): void {
  ctx.errors.push(new PolicyError(code, position(ctx, node, field), detail))
}

export function warn(
  ctx: LoadContext,
  code: PolicyErrorCode,
  node: Value,
  field: string,
  detail: string,
): void {
  ctx.warnings.push(new PolicyError(code, position(ctx, node, field), detail))
}

export function deref(ctx: LoadContext, node: unknown): Value {
  if (node === null || node === undefined) return null
  if (isAlias(node)) return ctx.resolveAlias(node)
  return node as Node
}

export function isNull(node: Value): boolean {
  return node === null || (isScalar(node) && node.value === null)
}

/**
 * What a node is, by type alone: the value may be a secret written where it does not belong
 * (SPEC "Bounded work"), and the message already names its line, column and field.
 */
export function describe(node: Value): string {
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
export function entries(
  ctx: LoadContext,
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

export function list(ctx: LoadContext, node: Value, field: string): Value[] | undefined {
  if (!isSeq(node)) {
    report(ctx, 'POLICY_TYPE', node, field, `expected a list, got ${describe(node)}`)
    return undefined
  }
  if (!withinEntries(ctx, node, field, node.items.length)) return []
  return node.items.map((item) => deref(ctx, item))
}

export function string(ctx: LoadContext, node: Value, field: string): string | undefined {
  if (isScalar(node) && typeof node.value === 'string') return node.value
  report(ctx, 'POLICY_TYPE', node, field, `expected a string, got ${describe(node)}`)
  return undefined
}

export function boolean(ctx: LoadContext, node: Value, field: string): boolean | undefined {
  if (isScalar(node) && typeof node.value === 'boolean') return node.value
  report(ctx, 'POLICY_TYPE', node, field, `expected true or false, got ${describe(node)}`)
  return undefined
}

export function strings(
  ctx: LoadContext,
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
