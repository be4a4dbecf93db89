// The file descriptors server reflection hands out, made valid for protobuf-go (grpcurl) and
// protoc-based clients. proto-loader (protobufjs's toDescriptor) writes them with two defects
// (grpc/grpc-node#2595, fullstorydev/grpcurl#519): no file names its imports, so a reference to a
// type in another file cannot be resolved ("cannot resolve type"), and a map's entry type is
// named after the field (`Statuses`) where protobuf requires `StatusesEntry` ("incorrect
// implicit map entry name"). Here every type reference is made fully qualified, each file
// declares the files it refers to, and each map entry gets protobuf's name.

import type { PackageDefinition } from '@grpc/proto-loader'
import descriptor from 'protobufjs/ext/descriptor/index.js'

interface Message {
  name: string
  field?: Field[]
  nestedType?: Message[]
  enumType?: { name: string }[]
  options?: { mapEntry?: boolean }
}
interface Field {
  name: string
  typeName?: string
}
interface File {
  name: string
  package?: string
  dependency?: string[]
  messageType?: Message[]
  enumType?: { name: string }[]
  service?: { name: string; method?: { inputType?: string; outputType?: string }[] }[]
}

/** The same definition, with every file descriptor rewritten as the header says. */
export function reflectable(definition: PackageDefinition): PackageDefinition {
  const files = new Map<string, File>()
  for (const type of Object.values(definition))
    for (const bytes of fileDescriptorsOf(type)) {
      const file = descriptor.FileDescriptorProto.toObject(
        descriptor.FileDescriptorProto.decode(bytes),
      ) as File
      if (!files.has(file.name)) files.set(file.name, file)
    }
  // Every type's full name (no leading dot) and the file it is in.
  const fileOf = new Map<string, string>()
  const renamed = new Map<string, string>()
  for (const file of files.values()) {
    const visit = (scope: string, message: Message) => {
      const name = qualified(scope, message.name)
      for (const nested of message.nestedType ?? []) {
        if (nested.options?.mapEntry) {
          const field = message.field?.find((f) => relative(f.typeName) === nested.name)
          if (field !== undefined) {
            const entry = mapEntryName(field.name)
            renamed.set(`${name}.${nested.name}`, `${name}.${entry}`)
            nested.name = entry
          }
        }
        visit(name, nested)
      }
      for (const e of message.enumType ?? []) fileOf.set(qualified(name, e.name), file.name)
      fileOf.set(name, file.name)
    }
    const top = file.package ?? ''
    for (const message of file.messageType ?? []) visit(top, message)
    for (const e of file.enumType ?? []) fileOf.set(qualified(top, e.name), file.name)
  }
  const fullName = (typeName: string, scope: string): string => {
    if (typeName.startsWith('.')) return typeName.slice(1)
    // protobuf's scoping: the innermost enclosing scope that has the name, then outwards.
    for (let at = scope; ; at = at.slice(0, Math.max(0, at.lastIndexOf('.')))) {
      const candidate = at === '' ? typeName : `${at}.${typeName}`
      const name = renamed.get(candidate) ?? candidate
      if (fileOf.has(name)) return name
      if (at === '') throw new Error(`reflection: the type ${typeName} in ${scope} is not defined`)
    }
  }
  const encoded = new Map<string, Buffer>()
  for (const file of files.values()) {
    const dependencies = new Set<string>()
    const resolve = (typeName: string | undefined, scope: string): string | undefined => {
      if (typeName === undefined || typeName === '') return typeName
      const name = fullName(typeName, scope)
      const other = fileOf.get(name)
      if (other === undefined)
        throw new Error(`reflection: the type ${typeName} in ${scope} is not defined`)
      if (other !== file.name) dependencies.add(other)
      return `.${name}`
    }
    const visit = (scope: string, message: Message) => {
      const name = qualified(scope, message.name)
      for (const field of message.field ?? []) {
        const typeName = resolve(field.typeName, name)
        if (typeName !== undefined) field.typeName = typeName
      }
      for (const nested of message.nestedType ?? []) visit(name, nested)
    }
    const top = file.package ?? ''
    for (const message of file.messageType ?? []) visit(top, message)
    for (const service of file.service ?? [])
      for (const method of service.method ?? []) {
        const scope = qualified(top, service.name)
        const input = resolve(method.inputType, scope)
        const output = resolve(method.outputType, scope)
        if (input !== undefined) method.inputType = input
        if (output !== undefined) method.outputType = output
      }
    file.dependency = [...dependencies].sort()
    encoded.set(
      file.name,
      Buffer.from(
        descriptor.FileDescriptorProto.encode(
          descriptor.FileDescriptorProto.fromObject(file),
        ).finish(),
      ),
    )
  }
  // Message and enum entries carry the files; a service's entry is its methods, left as it is.
  return Object.fromEntries(
    Object.entries(definition).map(([name, type]) => {
      const protos = fileDescriptorsOf(type)
      if (protos.length === 0) return [name, type]
      const fileDescriptorProtos = protos.map((bytes) => {
        const file = descriptor.FileDescriptorProto.decode(bytes) as unknown as File
        return encoded.get(file.name) as Buffer
      })
      return [name, { ...type, fileDescriptorProtos }]
    }),
  ) as PackageDefinition
}

/** A name in a scope; a file without a package is the empty scope. */
function qualified(scope: string, name: string): string {
  return scope === '' ? name : `${scope}.${name}`
}

function fileDescriptorsOf(type: object): Buffer[] {
  const protos = (type as { fileDescriptorProtos?: unknown }).fileDescriptorProtos
  return Array.isArray(protos) ? (protos as Buffer[]) : []
}

function relative(typeName: string | undefined): string | undefined {
  return typeName?.slice(typeName.lastIndexOf('.') + 1)
}

/** protobuf's name for a map field's entry type: `context_extensions` → `ContextExtensionsEntry`. */
function mapEntryName(field: string): string {
  let name = ''
  let upper = true
  for (const c of field) {
    if (c === '_') upper = true
    else {
      name += upper ? c.toUpperCase() : c
      upper = false
    }
  }
  return `${name}Entry`
}
