// reflectable(): the descriptors reflection serves, checked as protobuf-go checks them (grpcurl's
// run of the same is test/integration/grpcurl.test.ts, where grpcurl is installed).

import { loadSync } from '@grpc/proto-loader'
import { protoPath as healthProtoPath } from 'grpc-health-check'
import descriptor from 'protobufjs/ext/descriptor/index.js'
import { describe, expect, it } from 'vitest'
import { loadCheckProtos } from '../../src/proto.js'
import { reflectable } from '../../src/server/descriptors.js'

interface Message {
  name: string
  field?: { name: string; typeName?: string }[]
  nestedType?: Message[]
  options?: { mapEntry?: boolean }
}
interface File {
  name: string
  package: string
  dependency?: string[]
  messageType?: Message[]
}

const original = { ...loadCheckProtos(), ...loadSync(healthProtoPath) }

function files(definition: typeof original): Map<string, File> {
  const out = new Map<string, File>()
  for (const type of Object.values(definition))
    for (const bytes of (type as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? []) {
      const file = descriptor.FileDescriptorProto.toObject(
        descriptor.FileDescriptorProto.decode(bytes),
      ) as File
      out.set(file.name, file)
    }
  return out
}

/** Every message of a file with its full name. */
function messages(file: File): [string, Message][] {
  const out: [string, Message][] = []
  const visit = (scope: string, m: Message) => {
    out.push([`${scope}.${m.name}`, m])
    for (const n of m.nestedType ?? []) visit(`${scope}.${m.name}`, n)
  }
  for (const m of file.messageType ?? []) visit(file.package, m)
  return out
}

describe('reflectable', () => {
  const fixed = files(reflectable(original))
  const defined = new Map<string, string>()
  for (const file of fixed.values())
    for (const [name] of messages(file)) defined.set(`.${name}`, file.name)

  it('keeps every file and service of the definition', () => {
    expect([...fixed.keys()].sort()).toEqual([...files(original).keys()].sort())
    expect(Object.keys(reflectable(original)).sort()).toEqual(Object.keys(original).sort())
  })

  it('makes every message reference fully qualified, in the file itself or one it imports', () => {
    let checked = 0
    for (const file of fixed.values())
      for (const [, message] of messages(file))
        for (const field of message.field ?? []) {
          if (field.typeName === undefined || field.typeName === '') continue
          expect(field.typeName.startsWith('.'), `${file.name}: ${field.typeName}`).toBe(true)
          const home = defined.get(field.typeName)
          // An enum is not in `defined`; its file is then checked by grpcurl's run.
          if (home === undefined) continue
          checked++
          if (home !== file.name) expect(file.dependency).toContain(home)
        }
    expect(checked).toBeGreaterThan(10)
    expect(fixed.get('envoy_service_auth_v3.proto')?.dependency).toEqual(
      expect.arrayContaining(['envoy_config_core_v3.proto', 'envoy_type_v3.proto']),
    )
  })

  it('names each map entry type as protobuf does: field name in CamelCase, then Entry', () => {
    const entries = [...fixed.values()].flatMap((file) =>
      messages(file)
        .filter(([, m]) => m.options?.mapEntry)
        .map(([name]) => name),
    )
    expect(entries.sort()).toEqual([
      'envoy.service.auth.v3.AttributeContext.ContextExtensionsEntry',
      'envoy.service.auth.v3.AttributeContext.HttpRequest.HeadersEntry',
      'google.protobuf.Struct.FieldsEntry',
      'grpc.health.v1.HealthListResponse.StatusesEntry',
    ])
  })
})
