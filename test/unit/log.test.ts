import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createLog, isoTime } from '../../src/server/log.js'

function logged(level: string, write: (log: ReturnType<typeof createLog>) => void) {
  const lines: string[] = []
  write(createLog(level, { write: (line: string) => lines.push(line) }))
  return lines.map((line) => JSON.parse(line))
}

describe('the log', () => {
  it('writes the level as a word and the time as ISO 8601 in UTC, as log pipelines read them', () => {
    const before = Date.now()
    const [info, warn, error] = logged('info', (log) => {
      log.debug('hidden')
      log.info({ site: 'blog' }, 'deny')
      log.warn('policy warning')
      log.error('policy error')
    })
    expect(info).toMatchObject({ level: 'info', site: 'blog', msg: 'deny' })
    expect([warn.level, error.level]).toEqual(['warn', 'error'])
    expect(info.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect(Date.parse(info.time)).toBeGreaterThanOrEqual(Math.floor(before))
    expect(Date.parse(info.time)).toBeLessThanOrEqual(Date.now())
  })

  it('has debug lines at debug level', () => {
    expect(logged('debug', (log) => log.debug('allow'))).toMatchObject([{ level: 'debug' }])
  })
})

describe('isoTime', () => {
  it('is toISOString, across seconds, minutes, days and years, in any order', () => {
    // From 1970 to 2100, and runs of nearby times that share their second or just cross it.
    const ms = fc.integer({ min: 0, max: 4_102_444_800_000 })
    fc.assert(
      fc.property(
        fc.array(fc.tuple(ms, fc.integer({ min: -1500, max: 1500 })), { maxLength: 20 }),
        (times) => {
          for (const [at, step] of times)
            for (const t of [at, at + 1, Math.max(0, at + step)])
              expect(isoTime(t)).toBe(new Date(t).toISOString())
        },
      ),
    )
    for (const t of [0, 999, 1000, 1_000_000_000_000, Date.UTC(2024, 1, 29, 23, 59, 59, 999)])
      expect(isoTime(t)).toBe(new Date(t).toISOString())
  })
})
