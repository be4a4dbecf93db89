// Reload triggers: a change in the policy file's directory. The directory, not the file, is
// watched: a Kubernetes ConfigMap volume updates by swapping a `..data` symlink in it, and the
// file (itself a symlink through `..data`) never sees a write. Editors that save by rename
// replace the file too. Events come in bursts, so they are debounced.

import { type FSWatcher, watch } from 'node:fs'
import { dirname } from 'node:path'

/** Events closer together than this make one reload. */
export const DEBOUNCE_MS = 100

export interface PolicyWatcher {
  close(): void
}

/** Calls `onChange` once per burst of changes in `file`'s directory. */
export function watchPolicy(
  file: string,
  onChange: () => void,
  onError: (err: Error) => void,
): PolicyWatcher {
  let timer: NodeJS.Timeout | undefined
  let watcher: FSWatcher | undefined
  try {
    watcher = watch(dirname(file), { persistent: false }, () => {
      clearTimeout(timer)
      timer = setTimeout(onChange, DEBOUNCE_MS)
    })
    watcher.on('error', onError)
  } catch (err) {
    onError(err as Error)
  }
  return {
    close() {
      clearTimeout(timer)
      watcher?.close()
    },
  }
}
