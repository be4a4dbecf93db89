// Node objects → address ranges. Apart from k8s-nodes.ts so that a policy without Kubernetes
// sources never loads @kubernetes/client-node (only its types are imported here).

import type { V1Node } from '@kubernetes/client-node'
import type { CidrRange } from '../net/cidr.js'
import { parseIp } from '../net/ip.js'
import type { NodeAddressType } from '../policy/schema.js'

/** The ranges of `types` addresses of `nodes`, one /32 or /128 each, sorted and without repeats. */
export function nodeRanges(
  nodes: readonly V1Node[],
  types: readonly NodeAddressType[],
  sourceName: string,
): CidrRange[] {
  const byAddress = new Map<string, CidrRange>()
  for (const node of nodes) {
    for (const address of node.status?.addresses ?? []) {
      if (!(types as readonly string[]).includes(address.type)) continue
      const ip = parseIp(address.address)
      if (ip === undefined || byAddress.has(address.address)) continue
      const origin = `${sourceName} → node ${node.metadata?.name ?? '(unnamed)'}`
      byAddress.set(address.address, { ip, prefix: ip.family === 4 ? 32 : 128, origin })
    }
  }
  return [...byAddress.keys()].sort().map((address) => byAddress.get(address) as CidrRange)
}
