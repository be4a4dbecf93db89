// A local HTTP server that speaks the Kubernetes list/watch protocol for /api/v1/nodes, enough
// for @kubernetes/client-node's informer: a NodeList with metadata.resourceVersion, `?watch=true`
// streams of newline-delimited ADDED/MODIFIED/DELETED/BOOKMARK events resumed from a
// resourceVersion, label selectors, and the faults: 410 Gone, dropped watches, an outage.

import { writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { join } from 'node:path'

export interface FakeNode {
  readonly name: string
  readonly labels?: Record<string, string>
  /** [type, address] pairs: [['InternalIP', '10.0.12.34'], ['ExternalIP', '203.0.113.9']]. */
  readonly addresses: readonly (readonly [string, string])[]
}

interface Event {
  readonly rv: number
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'
  readonly node: FakeNode
}

interface Watcher {
  readonly res: ServerResponse
  readonly selector: string
}

function nodeObject(node: FakeNode, rv: number) {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: node.name, resourceVersion: String(rv), labels: node.labels ?? {} },
    status: { addresses: node.addresses.map(([type, address]) => ({ type, address })) },
  }
}

/** Equality-based selectors (`k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-joined): what the tests use. */
function matches(node: FakeNode, selector: string): boolean {
  const labels = node.labels ?? {}
  return selector
    .split(',')
    .filter((r) => r.trim() !== '')
    .every((requirement) => {
      const r = requirement.trim()
      const ne = r.split('!=')
      if (ne.length === 2) return labels[ne[0] as string] !== ne[1]
      const eq = r.split(/==?/)
      if (eq.length === 2) return labels[eq[0] as string] === eq[1]
      return r.startsWith('!') ? !(r.slice(1) in labels) : r in labels
    })
}

export class FakeKubeApi {
  readonly #nodes = new Map<string, { node: FakeNode; rv: number }>()
  readonly #history: Event[] = []
  readonly #watchers = new Set<Watcher>()
  readonly #sockets = new Set<Socket>()
  #server: Server | undefined
  #rv = 100
  /** Watches from a resourceVersion older than this get 410 Gone (etcd compaction). */
  #compactedBefore = 0
  #port = 0
  /** While true, lists are accepted and never answered (a hung API server). */
  hangLists = false
  /** While true, watch requests are held unanswered until releaseWatches() (a slow API server). */
  holdWatches = false
  readonly #held: { res: ServerResponse; selector: string; from: number }[] = []
  /** Requests seen, as "list" or "watch@RV", in order. */
  readonly requests: string[] = []
  /** The label selector of each watch request, in order. */
  readonly #watchSelectors: string[] = []

  get url(): string {
    return `http://127.0.0.1:${this.#port}`
  }

  /** Listens (again, on the same port after down()). */
  async up(): Promise<void> {
    const server = createServer((req, res) => this.#handle(req, res))
    server.on('connection', (socket) => {
      this.#sockets.add(socket)
      socket.on('close', () => this.#sockets.delete(socket))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#port, '127.0.0.1', () => resolve())
    })
    this.#port = (server.address() as AddressInfo).port
    this.#server = server
  }

  /** An outage: stops listening and cuts every connection, watches included. */
  async down(): Promise<void> {
    const server = this.#server
    this.#server = undefined
    this.#watchers.clear()
    for (const socket of this.#sockets) socket.destroy()
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** A kubeconfig for this server, as client-node needs it for plain http. */
  writeKubeconfig(dir: string): string {
    const file = join(dir, 'kubeconfig.yaml')
    writeFileSync(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        `- name: fake\n  cluster:\n    server: ${this.url}\n    insecure-skip-tls-verify: true`,
        'users:',
        '- name: fake\n  user:\n    token: test-token',
        'contexts:',
        '- name: fake\n  context:\n    cluster: fake\n    user: fake',
        'current-context: fake',
        '',
      ].join('\n'),
    )
    return file
  }

  set(node: FakeNode): void {
    const type = this.#nodes.has(node.name) ? 'MODIFIED' : 'ADDED'
    this.#event(type, node)
    this.#nodes.set(node.name, { node, rv: this.#rv })
  }

  delete(name: string): void {
    const entry = this.#nodes.get(name)
    if (!entry) return
    this.#nodes.delete(name)
    this.#event('DELETED', entry.node)
  }

  /** Ends every open watch, as an API server or a load balancer in front of it does. */
  dropWatches(): void {
    for (const w of this.#watchers) w.res.end()
    this.#watchers.clear()
  }

  /** Compacts history: open watches get an ERROR 410 event and end; resuming from before fails. */
  expire(): void {
    this.#compactedBefore = this.#rv + 1
    for (const w of this.#watchers) {
      const status = {
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        reason: 'Expired',
        code: 410,
      }
      w.res.end(
        `${JSON.stringify({ type: 'ERROR', object: { ...status, message: 'too old resource version' } })}\n`,
      )
    }
    this.#watchers.clear()
  }

  /** How many watches were asked for with this label selector ('' for none). */
  watchRequests(selector = ''): number {
    return this.#watchSelectors.filter((s) => s === selector).length
  }

  /** How many watch requests are held (holdWatches). */
  get heldWatches(): number {
    return this.#held.length
  }

  /**
   * Answers the held watch requests; resolves, once each of those answered has been closed by its
   * client, with how many were answered (one the client gave up before is not).
   */
  releaseWatches(): Promise<number> {
    const held = this.#held.splice(0)
    const answered = held.filter(({ res }) => !res.destroyed)
    const closed = answered.map(
      ({ res }) => new Promise<void>((resolve) => res.once('close', () => resolve())),
    )
    for (const { res, selector, from } of answered) this.#startWatch(res, selector, from)
    return Promise.all(closed).then(() => answered.length)
  }

  /** Sends a BOOKMARK event to every open watch, or to those of one label selector. */
  bookmark(selector?: string): void {
    for (const w of this.#watchers) {
      if (selector !== undefined && w.selector !== selector) continue
      const object = {
        kind: 'Node',
        apiVersion: 'v1',
        metadata: { resourceVersion: String(this.#rv) },
      }
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object })}\n`)
    }
  }

  get openWatches(): number {
    return this.#watchers.size
  }

  async close(): Promise<void> {
    await this.down()
  }

  #event(type: Event['type'], node: FakeNode): void {
    this.#rv++
    const event = { rv: this.#rv, type, node }
    this.#history.push(event)
    for (const w of this.#watchers) this.#send(w, event)
  }

  #send(w: Watcher, event: Event): void {
    if (!matches(event.node, w.selector)) return
    w.res.write(
      `${JSON.stringify({ type: event.type, object: nodeObject(event.node, event.rv) })}\n`,
    )
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake')
    if (url.pathname !== '/api/v1/nodes' || req.headers.authorization !== 'Bearer test-token') {
      res.writeHead(url.pathname === '/api/v1/nodes' ? 401 : 404).end()
      return
    }
    const selector = url.searchParams.get('labelSelector') ?? ''
    if (url.searchParams.get('watch') !== 'true') {
      this.requests.push('list')
      if (this.hangLists) return
      const items = [...this.#nodes.values()]
        .filter(({ node }) => matches(node, selector))
        .map(({ node, rv }) => nodeObject(node, rv))
      const list = {
        apiVersion: 'v1',
        kind: 'NodeList',
        metadata: { resourceVersion: String(this.#rv) },
        items,
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(list))
      return
    }
    const from = Number(url.searchParams.get('resourceVersion') ?? '0')
    this.requests.push(`watch@${from}`)
    this.#watchSelectors.push(selector)
    if (from < this.#compactedBefore) {
      res.writeHead(410, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ kind: 'Status', code: 410, reason: 'Expired' }))
      return
    }
    if (this.holdWatches) this.#held.push({ res, selector, from })
    else this.#startWatch(res, selector, from)
  }

  #startWatch(res: ServerResponse, selector: string, from: number): void {
    if (res.destroyed) return
    res.writeHead(200, { 'content-type': 'application/json' })
    res.flushHeaders()
    const watcher = { res, selector }
    // What happened after `from`, then live events.
    for (const event of this.#history) if (event.rv > from) this.#send(watcher, event)
    this.#watchers.add(watcher)
    res.on('close', () => this.#watchers.delete(watcher))
  }
}
