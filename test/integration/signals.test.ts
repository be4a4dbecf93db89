// Signals are handled from the process's first instruction (SPEC "Bounded work"): a SIGHUP while
// the first policy loads must not end the process (its default action, exit 129), and runs one
// reload once the load is done.

import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { policyOfSize } from '../../bench/inprocess.js'
import { callCheck, checkClient } from '../support/grpc.js'
import { type Message, official } from '../support/protos.js'
import { spawnServe } from '../support/server.js'
import { skipLoudly } from '../support/system.js'
import { until } from '../support/wait.js'

/** Whether `pid` has a handler for SIGHUP (signal 1: bit 0 of SigCgt in /proc/PID/status). */
function catchesSighup(pid: number): boolean {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1]
  return mask !== undefined && (BigInt(`0x${mask}`) & 1n) === 1n
}

const haveProc = existsSync('/proc/self/status')

describe('SIGHUP during start-up', () => {
  skipLoudly(!haveProc, 'no /proc/PID/status (not Linux): cannot see when the handler is set')
  it.runIf(haveProc)(
    'is kept and runs one reload after the first load; the process serves',
    {
      timeout: 60_000,
    },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'hostguard-signals-'))
      const file = join(dir, 'policy.yaml')
      // Large enough that the first load takes a while (about a second here).
      writeFileSync(file, policyOfSize(20_000))
      const server = spawnServe(file)
      try {
        const pid = server.child.pid as number
        await until(10_000, () => catchesSighup(pid), 'the SIGHUP handler')
        const startedBefore = server.output().includes('"hostguard serving"')
        server.child.kill('SIGHUP')
        const { grpcPort } = await server.started()
        // Sent while the first load ran: the test is about start-up.
        expect(startedBefore).toBe(false)
        await until(
          20_000,
          () => server.output().includes('"policy reloaded"'),
          'the SIGHUP reload',
        )
        expect(server.output()).toContain('"trigger":"SIGHUP"')
        expect(server.child.exitCode).toBeNull()
        const client = checkClient(grpcPort)
        const r: Message = official.decodeResponse(
          await callCheck(
            client,
            official.encodeRequest({
              attributes: {
                source: { address: { socket_address: { address: '10.0.0.9' } } },
                request: { http: { host: 'www.example.com', path: '/' } },
              },
            }),
          ),
        )
        expect(r.ok_response).toBeDefined()
        client.close()
      } finally {
        server.child.kill('SIGTERM')
      }
    },
  )
})
