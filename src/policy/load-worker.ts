// The policy loader's thread: reads, parses, validates and compiles, so that none of it runs on
// the thread that answers Checks (SPEC "Bounded work"). It keeps the last policy it loaded, to
// recompile it when the addresses of a dynamic source change, and the digest of every file that
// load read, to skip a reload of identical bytes. The main thread only unpacks and swaps.

import { createHash } from 'node:crypto'
import { setPriority } from 'node:os'
import { parentPort } from 'node:worker_threads'
import { type CidrRange, sameRanges } from '../net/cidr.js'
import { readAddressFile } from './address-file.js'
import { sourcesOf } from './address-list.js'
import { compilePolicy, type DynamicAddresses } from './compile.js'
import { type PolicyError, PolicyLoadError } from './errors.js'
import { loadPolicyFile } from './load.js'
import type { LoaderReply, LoaderRequest, LoadRequest, PlainError } from './loader.js'
import { type ReadOptions, readBoundedFile } from './read.js'
import type { PolicySpec } from './schema.js'
import { packPolicy } from './transfer.js'

interface Loaded {
  readonly request: LoadRequest
  readonly spec: PolicySpec
  /** sha256 of each file the load read (policy, secrets, address files), by path. */
  readonly digests: Map<string, string>
  /** The ranges of each address-file source, by source name. */
  readonly files: Map<string, { readonly path: string; ranges: readonly CidrRange[] }>
}

// A lower CPU priority for this thread only (Linux: a thread's nice value is its own): where CPU
// is short (a Pod's CPU limit, a busy node) a reload yields to the Checks. 10, not 19: at 19 a
// saturated main thread left it ~1.5 % of a core, and a reload (or a node change) could wait
// tens of seconds; at 10 it keeps ~10 %.
try {
  setPriority(10)
} catch {
  // Not allowed (some sandboxes): the reload competes at normal priority.
}

let current: Loaded | undefined
let kubeAddresses: DynamicAddresses = new Map()

const digest = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex')

function plain(errors: readonly PolicyError[]): PlainError[] {
  return errors.map((e) => ({ code: e.code, at: e.at, detail: e.detail }))
}

function addresses(loaded: Loaded): DynamicAddresses {
  const all = new Map(kubeAddresses)
  for (const [name, { ranges }] of loaded.files) all.set(name, ranges)
  return all
}

/** Whether every file the last load read still has the same bytes. */
function unchanged(loaded: Loaded, request: LoadRequest): boolean {
  if (loaded.request.file !== request.file) return false
  for (const [path, was] of loaded.digests) {
    try {
      if (digest(readBoundedFile(path, request.maxPolicyBytes)) !== was) return false
    } catch {
      return false
    }
  }
  return true
}

function compiled(loaded: Loaded) {
  return packPolicy(compilePolicy(loaded.spec, loaded.request.limits, addresses(loaded)))
}

function load(request: LoadRequest): LoaderReply {
  if (!request.force && current && unchanged(current, request)) return { kind: 'unchanged' }
  const digests = new Map<string, string>()
  const options: ReadOptions = {
    maxPolicyBytes: request.maxPolicyBytes,
    onRead: (path, bytes) => digests.set(path, digest(bytes)),
  }
  const spec = loadPolicyFile(request.file, request.env, options)
  const sources = sourcesOf(spec)
  const files = new Map<string, { path: string; ranges: readonly CidrRange[] }>()
  const errors: PolicyError[] = []
  for (const [name, { source }] of sources) {
    if (source.kind !== 'file') continue
    try {
      files.set(name, { path: source.path, ranges: readAddressFile(source.path, name, options) })
    } catch (err) {
      if (!(err instanceof PolicyLoadError)) throw err
      errors.push(...err.errors)
    }
  }
  if (errors.length > 0) throw new PolicyLoadError(errors)
  const next: Loaded = { request, spec, digests, files }
  const policy = compiled(next)
  current = next
  const top = spec.top
  return {
    kind: 'loaded',
    policy,
    sites: [...spec.sites.keys()],
    warnings: plain(spec.warnings),
    sources: [...sources].map(([name, { source, widens }]) => ({ name, source, widens })),
    fileAddresses: [...files].map(([name, f]) => ({ name, count: f.ranges.length })),
    reads: [...digests.keys()],
    topLevel: {
      allowedHosts: top.allowedHosts?.length ?? 0,
      trustedProxies: top.trustedProxies?.ranges.length ?? 0,
      allowedCidrNets: top.allowedCidrNets?.ranges.length ?? 0,
    },
  }
}

/** Reads the address files again; a bad one keeps its last good ranges. */
function rereadFiles(loaded: Loaded): LoaderReply {
  const changed: { name: string; count: number }[] = []
  const unchangedNames: string[] = []
  const failed: { name: string; errors: PlainError[]; count: number }[] = []
  for (const [name, file] of loaded.files) {
    try {
      let bytes: Buffer | undefined
      const ranges = readAddressFile(file.path, name, {
        maxPolicyBytes: loaded.request.maxPolicyBytes,
        onRead: (_, b) => {
          bytes = b
        },
      })
      if (bytes) loaded.digests.set(file.path, digest(bytes))
      if (sameRanges(file.ranges, ranges)) {
        unchangedNames.push(name)
        continue
      }
      file.ranges = ranges
      changed.push({ name, count: ranges.length })
    } catch (err) {
      if (!(err instanceof PolicyLoadError)) throw err
      failed.push({ name, errors: plain(err.errors), count: file.ranges.length })
    }
  }
  return {
    kind: 'files',
    changed,
    unchanged: unchangedNames,
    failed,
    policy: changed.length > 0 ? compiled(loaded) : undefined,
  }
}

function handle(request: LoaderRequest): LoaderReply {
  try {
    switch (request.kind) {
      case 'load':
        return load(request)
      case 'addresses':
        kubeAddresses = new Map(request.addresses)
        return current ? { kind: 'compiled', policy: compiled(current) } : { kind: 'unchanged' }
      case 'files':
        return current ? rereadFiles(current) : { kind: 'unchanged' }
    }
  } catch (err) {
    if (err instanceof PolicyLoadError) return { kind: 'failed', errors: plain(err.errors) }
    return { kind: 'crashed', message: (err as Error).stack ?? String(err) }
  }
}

parentPort?.on('message', (request: LoaderRequest) => {
  parentPort?.postMessage(handle(request))
})
