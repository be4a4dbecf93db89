import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse, parseAllDocuments } from 'yaml'
import { compilePolicy } from '../../src/policy/compile.js'
import { parsePolicy } from '../../src/policy/load.js'
import { ROOT } from '../support/protos.js'
import { skipLoudly } from '../support/system.js'

const haveKustomize = spawnSync('kubectl', ['kustomize', '--help']).status === 0

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects as YAML gives them
type Obj = any

function render(dir: string): Obj[] {
  const out = execFileSync('kubectl', ['kustomize', join(ROOT, 'k8s', dir)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  return parseAllDocuments(out).map((d) => d.toJS())
}

function one(objects: Obj[], kind: string, name?: string): Obj {
  const found = objects.filter(
    (o) => o.kind === kind && (name === undefined || o.metadata.name === name),
  )
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1)
  return found[0]
}

/** `--flag=value` from the container args. */
function flag(container: Obj, name: string): string | undefined {
  const arg = (container.args as string[]).find((a) => a.startsWith(`--${name}=`))
  return arg?.slice(name.length + 3)
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v)
}

describe('k8s/base (kubectl kustomize)', () => {
  skipLoudly(
    !haveKustomize,
    'kubectl (Debian kubernetes-client) is missing: the manifests were NOT rendered.',
  )
  const objects = haveKustomize ? render('base') : []
  const deployment = haveKustomize ? one(objects, 'Deployment', 'hostguard') : undefined
  const pod = deployment?.spec.template
  const container = pod?.spec.containers[0]
  const service = haveKustomize ? one(objects, 'Service', 'hostguard') : undefined
  const portOf = (name: string) => container.ports.find((p: Obj) => p.name === name).containerPort

  it.skipIf(!haveKustomize)('probes and Service ports are the ports serve is given', () => {
    expect(Number(flag(container, 'grpc-port'))).toBe(9000)
    expect(Number(flag(container, 'http-port'))).toBe(9001)
    expect(portOf('grpc')).toBe(9000)
    expect(portOf('http-metrics')).toBe(9001)
    expect(container.readinessProbe.grpc).toEqual({
      port: 9000,
      service: 'envoy.service.auth.v3.Authorization',
    })
    expect(container.livenessProbe.grpc.port).toBe(9000)
    const grpc = service.spec.ports.find((p: Obj) => p.name === 'grpc')
    expect(grpc).toMatchObject({ port: 9000, targetPort: 'grpc', appProtocol: 'grpc' })
    expect(service.spec.ports.find((p: Obj) => p.name === 'http-metrics').targetPort).toBe(
      'http-metrics',
    )
    expect(matches(service.spec.selector, pod.metadata.labels)).toBe(true)
  })

  it.skipIf(!haveKustomize)(
    'mounts the ConfigMap key that --policy names, as a directory, and the Secret the policy reads',
    () => {
      const policyPath = flag(container, 'policy') ?? ''
      const mount = container.volumeMounts.find((m: Obj) =>
        policyPath.startsWith(`${m.mountPath}/`),
      )
      const volume = pod.spec.volumes.find((v: Obj) => v.name === mount.name)
      expect(mount.subPath).toBeUndefined() // a subPath mount never sees ConfigMap updates
      const configMap = one(objects, 'ConfigMap', volume.configMap.name)
      const key = policyPath.slice(mount.mountPath.length + 1)
      expect(Object.keys(configMap.data)).toEqual([key])

      const policy = parse(configMap.data[key])
      const secretFile: string = policy.healthCheck.value.file
      const secretMount = container.volumeMounts.find((m: Obj) =>
        secretFile.startsWith(`${m.mountPath}/`),
      )
      const secretVolume = pod.spec.volumes.find((v: Obj) => v.name === secretMount.name)
      const secret = one(objects, 'Secret', secretVolume.secret.secretName)
      const secretKey = secretFile.slice(secretMount.mountPath.length + 1)
      expect(Object.keys(secret.data)).toEqual([secretKey])

      // The policy loads, with its secret file where the Secret would put it.
      const dir = mkdtempSync(join(tmpdir(), 'hostguard-k8s-'))
      writeFileSync(join(dir, secretKey), Buffer.from(secret.data[secretKey], 'base64'))
      const local = configMap.data[key].replace(secretFile, join(dir, secretKey))
      expect(() => compilePolicy(parsePolicy(local, 'configmap/policy.yaml', {}))).not.toThrow()
    },
  )

  it.skipIf(!haveKustomize)(
    'runs non-root, read-only, without capabilities or a service-account token',
    () => {
      expect(pod.spec.securityContext.runAsNonRoot).toBe(true)
      expect(pod.spec.automountServiceAccountToken).toBe(false)
      expect(container.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      })
      expect(container.resources.requests).toBeDefined()
      expect(container.resources.limits.memory).toBeDefined()
      expect(deployment.spec.replicas).toBe(2)
      expect(pod.spec.topologySpreadConstraints.length).toBeGreaterThan(0)
      expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThan(
        Number(flag(container, 'grace-period')),
      )
    },
  )

  it.skipIf(!haveKustomize)(
    'selects its own Pods from the PDB, the NetworkPolicy and the ServiceMonitor',
    () => {
      expect(
        matches(one(objects, 'PodDisruptionBudget').spec.selector.matchLabels, pod.metadata.labels),
      ).toBe(true)
      const netpol = one(objects, 'NetworkPolicy')
      expect(matches(netpol.spec.podSelector.matchLabels, pod.metadata.labels)).toBe(true)
      const ports = netpol.spec.ingress.flatMap((r: Obj) => r.ports.map((p: Obj) => p.port))
      for (const p of ports) expect(container.ports.map((c: Obj) => c.name)).toContain(p)
      const monitor = one(objects, 'ServiceMonitor')
      expect(matches(monitor.spec.selector.matchLabels, service.metadata.labels)).toBe(true)
      expect(monitor.spec.namespaceSelector.matchNames).toContain(service.metadata.namespace)
      expect(service.spec.ports.map((p: Obj) => p.name)).toContain(monitor.spec.endpoints[0].port)
    },
  )

  it.skipIf(!haveKustomize)(
    'ships the Grafana dashboard of monitoring/, labelled for Grafana',
    () => {
      const dashboard = one(objects, 'ConfigMap', 'hostguard-dashboard')
      expect(dashboard.metadata.labels.grafana_dashboard).toBe('1')
      expect(JSON.parse(dashboard.data['hostguard.json'])).toEqual(
        JSON.parse(readFileSync(join(ROOT, 'monitoring', 'grafana-dashboard.json'), 'utf8')),
      )
    },
  )

  it.skipIf(!haveKustomize)(
    'k8s/overlays/k8s-nodes adds a ServiceAccount that may list and watch Nodes',
    () => {
      const overlay = render('overlays/k8s-nodes')
      const sa = one(overlay, 'ServiceAccount', 'hostguard')
      const role = one(overlay, 'ClusterRole', 'hostguard-nodes')
      expect(role.rules).toEqual([
        { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
      ])
      const binding = one(overlay, 'ClusterRoleBinding', 'hostguard-nodes')
      expect(binding.subjects).toEqual([
        { kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace },
      ])
      const podSpec = one(overlay, 'Deployment', 'hostguard').spec.template.spec
      expect(podSpec.serviceAccountName).toBe(sa.metadata.name)
      expect(podSpec.automountServiceAccountToken).toBe(true)
      // Its policy follows the Nodes, and their last known addresses go to a mounted cache dir.
      const config = one(overlay, 'ConfigMap', 'hostguard-policy')
      const dir = mkdtempSync(join(tmpdir(), 'hostguard-k8s-'))
      writeFileSync(join(dir, 'health-check'), 'x')
      const local = config.data['policy.yaml'].replace(
        '/etc/hostguard/secrets/health-check',
        join(dir, 'health-check'),
      )
      const spec = parsePolicy(local, 'policy.yaml', {})
      expect(spec.top.allowedCidrNets?.sources.map((source) => source.name)).toEqual(['k8s:nodes'])
      const container = podSpec.containers[0]
      const cacheDir = flag(container, 'cache-dir')
      const mount = container.volumeMounts.find((m: Obj) => m.mountPath === cacheDir)
      expect(podSpec.volumes.find((v: Obj) => v.name === mount.name).emptyDir).toBeDefined()
      expect(flag(container, 'policy')).toBe('/etc/hostguard/policy/policy.yaml')
    },
  )

  it.skipIf(!haveKustomize)(
    "Istio's provider points at the Service's gRPC port, and the policies name the provider",
    () => {
      const mesh = parse(
        parse(readFileSync(join(ROOT, 'k8s', 'istio', 'mesh-config.yaml'), 'utf8')).data.mesh,
      )
      const provider = mesh.extensionProviders[0]
      expect(provider.envoyExtAuthzGrpc).toMatchObject({
        service: `${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local`,
        port: service.spec.ports.find((p: Obj) => p.name === 'grpc').port,
        failOpen: false,
      })
      for (const file of [
        'authorization-policy-gateway.yaml',
        'authorization-policy-workload.yaml',
      ]) {
        const policy = parse(readFileSync(join(ROOT, 'k8s', 'istio', file), 'utf8'))
        expect(policy).toMatchObject({
          apiVersion: 'security.istio.io/v1',
          kind: 'AuthorizationPolicy',
          spec: { action: 'CUSTOM', provider: { name: provider.name } },
        })
        expect(Object.keys(policy.spec).sort()).toEqual(['action', 'provider', 'rules', 'selector'])
      }
    },
  )
})
