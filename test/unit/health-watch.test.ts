// Health Watch of a name hostguard does not serve: answered SERVICE_UNKNOWN without reaching
// grpc-health-check, which would keep a watcher set for every name ever asked (memory without
// bound for a client that asks ever new ones).

import { EventEmitter } from 'node:events'
import type { ServiceDefinition } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import { addHealthAndReflection } from '../../src/server/grpc.js'

type Handler = (call: FakeCall) => void

/** The part of a server-streaming call the health library uses, recording what it gets. */
class FakeCall extends EventEmitter {
  readonly written: unknown[] = []
  readonly request: { service: string }
  constructor(request: { service: string }) {
    super()
    this.request = request
  }
  write(message: unknown): boolean {
    this.written.push(message)
    return true
  }
}

function healthWatch(): { watch: Handler; setServing: (serving: boolean) => void } {
  const handlers = new Map<string, Handler>()
  const setServing = addHealthAndReflection({
    addService(service: ServiceDefinition, implementation: Record<string, unknown>) {
      for (const [name, definition] of Object.entries(service))
        handlers.set(
          definition.path,
          (implementation[name] ?? implementation[definition.originalName ?? '']) as Handler,
        )
    },
  } as never)
  const watch = handlers.get('/grpc.health.v1.Health/Watch')
  if (watch === undefined) throw new Error('no Watch registered')
  return { watch, setServing }
}

describe('health Watch', () => {
  it('answers SERVICE_UNKNOWN to a name it does not serve, and never registers a watcher for it', () => {
    const { watch, setServing } = healthWatch()
    const call = new FakeCall({ service: 'not.a.Service' })
    watch(call)
    expect(call.written).toEqual([{ status: 'SERVICE_UNKNOWN' }])
    // The library's Watch listens for 'cancelled' to drop its watcher: not reached.
    expect(call.listenerCount('cancelled')).toBe(0)
    setServing(true)
    expect(call.written).toEqual([{ status: 'SERVICE_UNKNOWN' }])
  })

  it('streams the status of a service it serves, through the library', () => {
    const { watch, setServing } = healthWatch()
    const call = new FakeCall({ service: 'envoy.service.auth.v3.Authorization' })
    watch(call)
    setServing(true)
    expect(call.written).toEqual([{ status: 'NOT_SERVING' }, { status: 'SERVING' }])
    expect(call.listenerCount('cancelled')).toBe(1)
  })
})
