// The log: JSON lines, in the shape Kubernetes log pipelines (Fluent Bit, Vector, Loki, Cloud
// Logging) read without a parsing rule: the level as a word and the time as ISO 8601 in UTC.

import { type DestinationStream, type Logger, pino } from 'pino'

let second = Number.NaN
/** `2026-12-02T05:51:10.` for `second`. */
let secondText = ''

/**
 * `new Date(ms).toISOString()`, with the text up to the second made once a second: toISOString
 * took ~1 µs of a deny line's ~8 µs here, this ~0.15 µs (a deny flood logs a line per request).
 */
export function isoTime(ms: number): string {
  const s = Math.floor(ms / 1000)
  if (s !== second) {
    second = s
    secondText = new Date(s * 1000).toISOString().slice(0, 20)
  }
  const milli = ms - s * 1000
  return `${secondText}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`
}

/** `{"level":"info","time":"2026-12-02T05:51:10.019Z",…,"msg":"…"}`; stdout unless given. */
export function createLog(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    // Made once per level by pino (a cached prefix), not on every line.
    formatters: { level: (label: string) => ({ level: label }) },
    timestamp: () => `,"time":"${isoTime(Date.now())}"`,
  }
  return destination === undefined ? pino(options) : pino(options, destination)
}
