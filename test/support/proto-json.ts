// Strict checking of Envoy YAML (proto JSON) against the official Envoy API protos: every key
// must be a field of its message, every value of its field's type, `@type` Anys resolved to their
// real message, and at most one member of a oneof set. protobufjs's own fromObject drops unknown
// keys silently, which would let a misspelt field pass.

import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import protobuf from 'protobufjs'

const require = createRequire(import.meta.url)
const DEPS = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps')
const INCLUDE = ['envoy-api', 'xds', 'protoc-gen-validate', 'googleapis'].map((d) => join(DEPS, d))

/** The official protos for the given files (paths relative to the include directories). */
export function officialRoot(files: readonly string[]): protobuf.Root {
  const root = new protobuf.Root()
  root.resolvePath = (_origin, target) =>
    INCLUDE.map((d) => join(d, target)).find((p) => existsSync(p)) ?? target
  root.loadSync([...files], { keepCase: true })
  root.resolveAll()
  return root
}

const INTEGER = new Set([
  'int32',
  'uint32',
  'sint32',
  'fixed32',
  'sfixed32',
  'int64',
  'uint64',
  'sint64',
  'fixed64',
  'sfixed64',
])
const WRAPPERS: Record<string, string> = {
  '.google.protobuf.BoolValue': 'bool',
  '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
  '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.DoubleValue': 'double',
  '.google.protobuf.FloatValue': 'float',
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function scalar(kind: string, v: unknown, path: string, errors: string[]): void {
  const ok =
    kind === 'string' || kind === 'bytes'
      ? typeof v === 'string'
      : kind === 'bool'
        ? typeof v === 'boolean'
        : INTEGER.has(kind)
          ? (typeof v === 'number' && Number.isInteger(v)) ||
            (typeof v === 'string' && /^-?\d+$/.test(v))
          : typeof v === 'number' || (typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v))
  if (!ok) errors.push(`${path}: expected ${kind}, got ${JSON.stringify(v)}`)
}

function value(
  root: protobuf.Root,
  field: protobuf.Field,
  v: unknown,
  path: string,
  errors: string[],
): void {
  const resolved = field.resolvedType
  if (resolved instanceof protobuf.Enum) {
    if (!(typeof v === 'string' && v in resolved.values) && typeof v !== 'number') {
      errors.push(
        `${path}: expected one of ${Object.keys(resolved.values).join(', ')}, got ${JSON.stringify(v)}`,
      )
    }
  } else if (resolved instanceof protobuf.Type) {
    message(root, resolved, v, path, errors)
  } else {
    scalar(field.type, v, path, errors)
  }
}

/** Checks `v` as the JSON form of message `type`; pushes one error per problem. */
export function message(
  root: protobuf.Root,
  type: protobuf.Type,
  v: unknown,
  path: string,
  errors: string[],
): void {
  const name = type.fullName
  const wrapped = WRAPPERS[name]
  if (wrapped) {
    scalar(wrapped, v, path, errors)
    return
  }
  if (name === '.google.protobuf.Duration') {
    if (!(typeof v === 'string' && /^-?\d+(\.\d{1,9})?s$/.test(v)))
      errors.push(`${path}: expected a duration such as "0.25s", got ${JSON.stringify(v)}`)
    return
  }
  if (
    name === '.google.protobuf.Struct' ||
    name === '.google.protobuf.Value' ||
    name === '.google.protobuf.ListValue'
  )
    return
  if (!isObject(v)) {
    errors.push(`${path}: expected a ${name.slice(1)} message, got ${JSON.stringify(v)}`)
    return
  }
  if (name === '.google.protobuf.Any') {
    const url = v['@type']
    if (typeof url !== 'string') {
      errors.push(`${path}: an Any needs "@type"`)
      return
    }
    let inner: protobuf.Type
    try {
      inner = root.lookupType(url.slice(url.lastIndexOf('/') + 1))
    } catch {
      errors.push(`${path}: unknown @type ${url}`)
      return
    }
    const { '@type': _type, ...rest } = v
    message(root, inner, rest, `${path}<${inner.name}>`, errors)
    return
  }
  const setOneofs = new Map<string, string>()
  for (const [key, fieldValue] of Object.entries(v)) {
    const field =
      type.fields[key] ?? Object.values(type.fields).find((f) => f.options?.['json_name'] === key)
    const at = `${path}.${key}`
    if (!field) {
      errors.push(`${at}: no such field in ${name.slice(1)}`)
      continue
    }
    if (field.partOf) {
      const other = setOneofs.get(field.partOf.name)
      if (other) errors.push(`${at}: ${other} is set too, in the same oneof ${field.partOf.name}`)
      setOneofs.set(field.partOf.name, key)
    }
    if (field.map) {
      if (!isObject(fieldValue)) errors.push(`${at}: expected a map`)
      else
        for (const [k, item] of Object.entries(fieldValue))
          value(root, field, item, `${at}.${k}`, errors)
    } else if (field.repeated) {
      if (!Array.isArray(fieldValue)) errors.push(`${at}: expected a list`)
      else
        for (const [i, item] of fieldValue.entries())
          value(root, field, item, `${at}[${i}]`, errors)
    } else {
      value(root, field, fieldValue, at, errors)
    }
  }
}
