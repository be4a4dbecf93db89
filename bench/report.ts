// What every benchmark command does with its figures: print each line as it comes (a long run
// shows progress) and write them all to its markdown file under bench/ at the end.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../test/support/root.js'

export interface Report {
  /** Prints a line and keeps it for the file. */
  say(line?: string): void
  /** Writes the lines kept to bench/NAME. */
  write(): void
}

export function report(name: string): Report {
  const lines: string[] = []
  return {
    say(line = '') {
      console.log(line)
      lines.push(line)
    },
    write() {
      writeFileSync(join(ROOT, 'bench', name), `${lines.join('\n')}\n`)
      console.log(`\nwritten to bench/${name}`)
    },
  }
}

/** A figure for a table: `-` when it was not measured. */
export const f = (n: number | undefined, digits = 0): string =>
  n !== undefined && Number.isFinite(n) ? n.toFixed(digits) : '-'

export const median = (xs: readonly number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN
