// Reload triggers: a change of a file the policy reads (the policy, its `{file}` secrets and
// address files). Each file's directory is watched, not the file: a Kubernetes ConfigMap or Secret
// volume updates by swapping a `..data` symlink in it, and the file (itself a symlink through
// `..data`) never sees a write; editors that save by rename replace the file too. Events for other
// names in those directories (a log file written beside the policy, an editor's swap file) are
// ignored. A file is read only once it has stopped changing: a file replaced by a rename (how
// ConfigMaps, Secrets, `kubectl cp` and most editors write) once it looks the same in two looks
// DEBOUNCE_MS apart; a file written in place once its size, mtime and inode stayed the same for
// SETTLE_MS, so that one written in several writes is not read half written.

import { type FSWatcher, statSync, watch } from 'node:fs'
import { basename, dirname } from 'node:path'

/** How often a changed file is looked at while it settles. */
const DEBOUNCE_MS = 100
/** How long a file written in place must keep its size, mtime and inode before it is read. */
const SETTLE_MS = 1000
/** A file still changing after this long is read anyway (something rewrites it constantly). */
const MAX_SETTLE_MS = 10_000

export interface PolicyWatcher {
  close(): void
}

function snapshot(files: readonly string[]): string {
  return files
    .map((file) => {
      try {
        const s = statSync(file)
        return `${s.ino}:${s.size}:${s.mtimeMs}`
      } catch (err) {
        return (err as NodeJS.ErrnoException).code ?? 'unreadable'
      }
    })
    .join(' ')
}

/**
 * Calls `onChange` with the files that changed, once they have settled. `files` are absolute
 * paths; a name is also relevant when it is `..data` in the same directory. `settleMs` (below
 * MAX_SETTLE_MS) replaces SETTLE_MS.
 */
export function watchFiles(
  files: readonly string[],
  onChange: (changed: readonly string[]) => void,
  onError: (err: Error) => void,
  settleMs = SETTLE_MS,
): PolicyWatcher {
  const byDir = new Map<string, Map<string, string[]>>()
  for (const file of files) {
    const names = byDir.get(dirname(file)) ?? new Map<string, string[]>()
    byDir.set(dirname(file), names)
    for (const name of [basename(file), '..data'])
      names.set(name, [...(names.get(name) ?? []), file])
  }
  const changed = new Set<string>()
  let timer: NodeJS.Timeout | undefined
  let firstAt = 0
  let stableSince = 0
  let last = ''
  /** Whether a file was written in place (a `change` event) in this burst. */
  let inPlace = false
  const settle = (): void => {
    const files = [...changed]
    const now = performance.now()
    const current = snapshot(files)
    if (current !== last) {
      last = current
      stableSince = now
    }
    const settled = now - stableSince >= (inPlace ? settleMs : DEBOUNCE_MS)
    if (settled || now - firstAt >= MAX_SETTLE_MS) {
      changed.clear()
      inPlace = false
      timer = undefined
      onChange(files)
      return
    }
    timer = setTimeout(settle, DEBOUNCE_MS)
  }
  const watchers: FSWatcher[] = []
  for (const [dir, names] of byDir) {
    try {
      const watcher = watch(dir, { persistent: false }, (event, name) => {
        // No name (some platforms): any of this directory's files may have changed.
        const hit = name === null ? [...names.values()].flat() : names.get(name.toString())
        if (!hit) return
        for (const file of hit) changed.add(file)
        if (event === 'change') inPlace = true
        const now = performance.now()
        last = ''
        stableSince = now
        if (timer === undefined) {
          firstAt = now
          timer = setTimeout(settle, DEBOUNCE_MS)
        }
      })
      watcher.on('error', onError)
      watchers.push(watcher)
    } catch (err) {
      onError(err as Error)
    }
  }
  return {
    close() {
      clearTimeout(timer)
      for (const w of watchers) w.close()
    },
  }
}
