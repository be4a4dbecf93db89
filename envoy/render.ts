// Fills a shipped Envoy bootstrap in for one machine: named clusters' endpoints, listeners' and
// the admin interface's addresses and ports. Envoy reads no environment variables, and
// --config-yaml appends repeated fields (a second endpoint list, a second listener) instead of
// replacing them, so the shipped file is rewritten: every other line, comments included, stays.
// The command line is render-cli.ts (npm run envoy:render); envoy/README.md shows it.

import { isIP } from 'node:net'
import { type Document, isMap, isSeq, parseDocument, type YAMLMap } from 'yaml'

export interface SocketAddress {
  /** Left as in the file when absent (listeners and admin only). */
  readonly address?: string
  readonly port: number
}

export interface Endpoint {
  readonly address: string
  readonly port: number
  /** Where Envoy's active health check goes, when not to `port` (health_check_config). */
  readonly healthCheckPort?: number
}

export interface RenderOptions {
  /** Cluster name → the endpoints that replace all of its load_assignment's. */
  readonly clusters?: ReadonlyMap<string, readonly Endpoint[]>
  /** Listener name → its new socket address; port 0 lets the kernel choose (see /listeners). */
  readonly listeners?: ReadonlyMap<string, SocketAddress>
  readonly admin?: SocketAddress
}

export class RenderError extends Error {
  override name = 'RenderError'
}

/** The bootstrap `source` (named `file` in errors) with `options` applied, as YAML text. */
export function renderBootstrap(source: string, file: string, options: RenderOptions): string {
  const doc = parseDocument(source)
  if (doc.errors.length > 0) throw new RenderError(`${file}: ${doc.errors[0]?.message}`)
  for (const [name, endpoints] of options.clusters ?? []) setCluster(doc, file, name, endpoints)
  for (const [name, socket] of options.listeners ?? []) {
    const listener = named(doc, file, 'listeners', name)
    setSocket(doc, listener, ['address', 'socket_address'], socket)
  }
  if (options.admin) {
    const admin = doc.get('admin', true)
    if (!isMap(admin)) throw new RenderError(`${file}: no admin section to set`)
    setSocket(doc, admin, ['address', 'socket_address'], options.admin)
  }
  return doc.toString({ lineWidth: 0 })
}

/** The entry of static_resources.<kind> whose name is `name`. */
function named(doc: Document, file: string, kind: string, name: string): YAMLMap {
  const list = doc.getIn(['static_resources', kind], true)
  const items = isSeq(list) ? list.items.filter(isMap) : []
  const found = items.find((item) => item.get('name') === name)
  if (found) return found
  const names = items.map((item) => String(item.get('name'))).join(', ')
  throw new RenderError(
    `${file}: no ${kind.replace(/s$/, '')} named "${name}" (it has: ${names || 'none'})`,
  )
}

function setCluster(doc: Document, file: string, name: string, endpoints: readonly Endpoint[]) {
  const cluster = named(doc, file, 'clusters', name)
  if (endpoints.length === 0) throw new RenderError(`cluster ${name}: no endpoints given`)
  // STATIC and EDS-less clusters take IP addresses only; STRICT_DNS and LOGICAL_DNS resolve names.
  const type = String(cluster.get('type') ?? 'STATIC')
  for (const e of endpoints) {
    if (type === 'STATIC' && isIP(e.address) === 0)
      throw new RenderError(
        `cluster ${name} is STATIC in ${file}: "${e.address}" must be an IP address`,
      )
  }
  // A health check on another port than the traffic's (http-service.yaml's /readyz) stays
  // the shipped one unless the endpoint gives its own.
  const shipped = cluster.getIn(
    ['load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'health_check_config'],
    false,
  ) as { toJSON(): unknown } | undefined
  const lbEndpoints = endpoints.map((e) => {
    const address = { socket_address: { address: e.address, port_value: e.port } }
    const health =
      e.healthCheckPort !== undefined ? { port_value: e.healthCheckPort } : shipped?.toJSON()
    return {
      endpoint: health === undefined ? { address } : { address, health_check_config: health },
    }
  })
  const node = doc.createNode([{ lb_endpoints: lbEndpoints }])
  // One endpoint a line, as the shipped files write them.
  const list = node.items[0]?.get('lb_endpoints', true)
  if (isSeq(list))
    for (const item of list.items) {
      const endpoint = isMap(item) ? item.get('endpoint', true) : undefined
      if (isMap(endpoint)) endpoint.flow = true
    }
  cluster.setIn(['load_assignment', 'endpoints'], node)
}

function setSocket(doc: Document, at: YAMLMap, path: string[], socket: SocketAddress): void {
  if (!isMap(at.getIn(path, true)))
    throw new RenderError(`${String(at.get('name') ?? 'admin')}: no ${path.join('.')} to set`)
  if (socket.address !== undefined) at.setIn([...path, 'address'], socket.address)
  at.setIn([...path, 'port_value'], doc.createNode(socket.port))
}

/** `HOST:PORT`, `[V6]:PORT`, or (with `portOnly`) a bare `PORT`. */
export function parseAddress(text: string, what: string, portOnly = false): SocketAddress {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text)
  const plain = /^([^:[\]]+):(\d+)$/.exec(text)
  const bare = portOnly ? /^(\d+)$/.exec(text) : null
  const [address, port] = bracketed
    ? [bracketed[1], bracketed[2]]
    : plain
      ? [plain[1], plain[2]]
      : bare
        ? [undefined, bare[1]]
        : [undefined, undefined]
  const value = Number(port)
  if (port === undefined || !Number.isInteger(value) || value > 65535)
    throw new RenderError(
      `${what}: "${text}" is not ${portOnly ? '[HOST:]PORT' : 'HOST:PORT'} (IPv6 as [ADDR]:PORT)`,
    )
  return address === undefined ? { port: value } : { address, port: value }
}
