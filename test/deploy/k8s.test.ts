import { spawnSync } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse, parseAllDocuments } from 'yaml'
import { compilePolicy } from '../../src/policy/compile.js'
import { parsePolicy } from '../../src/policy/load.js'
import { ROOT } from '../support/protos.js'
import { skipLoudly } from '../support/system.js'

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects as YAML gives them
type Obj = any

const PLACEHOLDER_IMAGE = 'registry.invalid/hostguard'

/** A kustomize of v5 or later, the version the manifests are written for: kubectl's built-in
 * one (kubectl 1.27 and later), else the standalone binary .ci/run installs. */
function findKustomize(): string[] | undefined {
  const kubectl = spawnSync('kubectl', ['version', '--client', '--output=json'], {
    encoding: 'utf8',
  })
  if (kubectl.status === 0) {
    const major = /^v(\d+)\./.exec(JSON.parse(kubectl.stdout).kustomizeVersion ?? '')?.[1]
    if (Number(major) >= 5) return ['kubectl', 'kustomize']
  }
  for (const bin of [join(ROOT, '.tools', 'go', 'bin', 'kustomize'), 'kustomize']) {
    if (spawnSync(bin, ['build', '--help']).status === 0) return [bin, 'build']
  }
  return undefined
}
const kustomize = findKustomize()
const have = kustomize !== undefined

interface Rendered {
  objects: Obj[]
  stderr: string
}

function renderAt(dir: string): Rendered {
  const [cmd = '', ...args] = kustomize ?? []
  const run = spawnSync(cmd, [...args, dir], { encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`kustomize ${dir} failed: ${run.stderr}`)
  return { objects: parseAllDocuments(run.stdout).map((d) => d.toJS()), stderr: run.stderr }
}

const render = (dir: string): Rendered => renderAt(join(ROOT, 'k8s', dir))

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

const deployDoc = readFileSync(join(ROOT, 'docs', 'deploy.md'), 'utf8')
const codeBlocks = (lang: string) =>
  [...deployDoc.matchAll(new RegExp(`^\`\`\`${lang}\\n([\\s\\S]*?)^\`\`\`$`, 'gm'))].map(
    (m) => m[1] ?? '',
  )

/** docs/deploy.md's overlay, written where it says it lives: ops/hostguard/, beside a
 * checkout of hostguard at hostguard/ (here a link to this repository). */
function renderDocOverlay(): Rendered {
  const overlay = codeBlocks('yaml').find((b) => b.includes('kind: Kustomization'))
  expect(overlay, 'a Kustomization in docs/deploy.md').toBeDefined()
  const top = mkdtempSync(join(tmpdir(), 'hostguard-overlay-'))
  symlinkSync(ROOT, join(top, 'hostguard'))
  const dir = join(top, 'ops', 'hostguard')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'kustomization.yaml'), overlay ?? '')
  // The operator's policy: the shipped one stands in for it.
  writeFileSync(join(dir, 'policy.yaml'), readFileSync(join(ROOT, 'k8s', 'base', 'policy.yaml')))
  return renderAt(dir)
}

const haveKubectl = spawnSync('kubectl', ['version', '--client']).status === 0

/** The Secret that `kubectl -n NS create secret generic NAME --from-file=KEY=FILE…` makes. */
function secretFromCommand(argv: string[], cwd: string): Obj {
  const at = (name: string) => argv[argv.indexOf(name) + 1]
  const files = argv.filter((a) => a.startsWith('--from-file=')).map((a) => a.slice(12).split('='))
  return {
    kind: 'Secret',
    metadata: { name: at('generic'), namespace: at('-n') },
    data: Object.fromEntries(
      files.map(([key = '', file = '']) => [key, readFileSync(join(cwd, file)).toString('base64')]),
    ),
  }
}

/** The policy of a rendered ConfigMap, loaded with its secret file where `secretDir` holds it. */
function loadPolicy(text: string, secretFile: string, secretDir: string) {
  return parsePolicy(
    text.replace(secretFile, join(secretDir, secretFile.slice(secretFile.lastIndexOf('/') + 1))),
    'configmap/policy.yaml',
    {},
  )
}

describe('k8s/ (kustomize v5)', () => {
  skipLoudly(
    !have,
    "kustomize v5 is missing (kubectl 1.27 or later has it; Debian's kubernetes-client 1.20 is too old): the manifests were NOT rendered. Install it with `GOBIN=$PWD/.tools/go/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0`.",
  )
  const base = have ? render('base') : { objects: [], stderr: '' }
  const objects = base.objects
  const deployment = have ? one(objects, 'Deployment', 'hostguard') : undefined
  const pod = deployment?.spec.template
  const container = pod?.spec.containers[0]
  const service = have ? one(objects, 'Service', 'hostguard') : undefined
  const portOf = (name: string) => container.ports.find((p: Obj) => p.name === name).containerPort
  const secretVolume = pod?.spec.volumes.find((v: Obj) => v.secret !== undefined)
  const secretMount = container?.volumeMounts.find((m: Obj) => m.name === secretVolume?.name)

  it.skipIf(!have)(
    'the base, the overlays, the components and the overlay in docs/deploy.md render without a warning',
    () => {
      expect(base.stderr).toBe('')
      expect(render('overlays/k8s-nodes').stderr).toBe('')
      const doc = renderDocOverlay()
      expect(doc.stderr).toBe('')
      // The document's overlay uses every component there is.
      const components = readdirSync(join(ROOT, 'k8s', 'components'))
      const overlay = parse(codeBlocks('yaml').find((b) => b.includes('kind: Kustomization')) ?? '')
      expect(overlay.components.map((c: string) => c.split('/').at(-1)).sort()).toEqual(
        components.sort(),
      )
    },
  )

  it.skipIf(!have)('probes and Service ports are the ports serve is given', () => {
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
    expect(Number(flag(container, 'authz-port'))).toBe(9002)
    expect(portOf('authz')).toBe(9002)
    expect(service.spec.ports.find((p: Obj) => p.name === 'authz')).toMatchObject({
      port: 9002,
      targetPort: 'authz',
    })
    expect(matches(service.spec.selector, pod.metadata.labels)).toBe(true)
  })

  it.skipIf(!have)(
    'ships no usable image: a placeholder that cannot be pulled, which the documented overlay replaces',
    () => {
      const images = objects.flatMap((o) =>
        (o.spec?.template?.spec?.containers ?? []).map((c: Obj) => c.image),
      )
      expect(images).toEqual([PLACEHOLDER_IMAGE])
      const doc = one(renderDocOverlay().objects, 'Deployment', 'hostguard')
      const image: string = doc.spec.template.spec.containers[0].image
      expect(image).not.toContain('.invalid')
      expect(image).toMatch(/^[\w.-]+(:\d+)?\/[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$/)
      expect(deployDoc).toContain(`docker push ${image}`)
    },
  )

  it.skipIf(!have)(
    'ships no Secret: the documented command creates the one the Deployment mounts, with the key the policy reads',
    () => {
      expect(objects.filter((o) => o.kind === 'Secret')).toEqual([])
      expect(secretVolume.secret.optional).toBeUndefined() // the Pods wait for it
      const command = codeBlocks('sh')
        .flatMap((b) => b.split('\n'))
        .find((l) => l.includes('create secret generic'))
      expect(command, 'kubectl create secret in docs/deploy.md').toBeDefined()
      // The Secret the documented command makes from a value like the documented one.
      const dir = mkdtempSync(join(tmpdir(), 'hostguard-secret-'))
      writeFileSync(join(dir, 'health-check'), `${'0f'.repeat(32)}\n`)
      const argv = (command ?? '').split(' ').slice(1)
      const secret = secretFromCommand(argv, dir)
      expect(secret.metadata).toEqual({
        name: secretVolume.secret.secretName,
        namespace: deployment.metadata.namespace,
      })
      // And the command itself, run on the client side only: it is one kubectl accepts.
      if (haveKubectl) {
        const created = spawnSync('kubectl', [...argv, '--dry-run=client', '--output=json'], {
          cwd: dir,
          encoding: 'utf8',
        })
        expect(created.stderr).toBe('')
        expect(JSON.parse(created.stdout)).toMatchObject(secret)
      } else
        process.stderr.write(
          '\n*** kubectl is missing: the documented `kubectl create secret` was NOT run.\n',
        )

      const configMap = one(objects, 'ConfigMap', 'hostguard-policy')
      const text: string = configMap.data['policy.yaml']
      const secretFile: string = parse(text).healthCheck.value.file
      expect(secretFile.startsWith(`${secretMount.mountPath}/`)).toBe(true)
      const key = secretFile.slice(secretMount.mountPath.length + 1)
      expect(Object.keys(secret.data)).toEqual([key])
      // The policy loads with the Secret's value where the kubelet would put it.
      writeFileSync(join(dir, key), Buffer.from(secret.data[key], 'base64'))
      expect(() => compilePolicy(loadPolicy(text, secretFile, dir))).not.toThrow()
    },
  )

  it.skipIf(!have)('mounts the ConfigMap key that --policy names, as a directory', () => {
    const policyPath = flag(container, 'policy') ?? ''
    const mount = container.volumeMounts.find((m: Obj) => policyPath.startsWith(`${m.mountPath}/`))
    const volume = pod.spec.volumes.find((v: Obj) => v.name === mount.name)
    expect(mount.subPath).toBeUndefined() // a subPath mount never sees ConfigMap updates
    const configMap = one(objects, 'ConfigMap', volume.configMap.name)
    expect(Object.keys(configMap.data)).toEqual([policyPath.slice(mount.mountPath.length + 1)])
    // The documented overlay replaces it under the same name, so the mount still finds it.
    const doc = renderDocOverlay().objects
    expect(one(doc, 'ConfigMap', volume.configMap.name).data).toEqual(configMap.data)
  })

  it.skipIf(!have)(
    'names one secret path everywhere: README, docs, k8s and examples point into the Secret mount',
    () => {
      const files = [
        'README.md',
        ...readdirSync(join(ROOT, 'docs')).map((f) => `docs/${f}`),
        ...readdirSync(join(ROOT, 'examples')).map((f) => `examples/${f}`),
        ...readdirSync(join(ROOT, 'k8s'), { recursive: true, encoding: 'utf8' }).map(
          (f) => `k8s/${f}`,
        ),
      ].filter((f) => /\.(md|ya?ml)$/.test(f))
      const paths = files.flatMap((f) =>
        [...readFileSync(join(ROOT, f), 'utf8').matchAll(/\/[\w./-]*secrets\/[\w.-]+/g)].map(
          (m) => `${f}: ${m[0]}`,
        ),
      )
      expect(paths.length).toBeGreaterThan(3)
      for (const p of paths) expect(p).toMatch(new RegExp(`: ${secretMount.mountPath}/[\\w.-]+$`))
    },
  )

  it.skipIf(!have)(
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

  it.skipIf(!have)('selects its own Pods from the PDB and the NetworkPolicy', () => {
    expect(
      matches(one(objects, 'PodDisruptionBudget').spec.selector.matchLabels, pod.metadata.labels),
    ).toBe(true)
    const netpol = one(objects, 'NetworkPolicy')
    expect(matches(netpol.spec.podSelector.matchLabels, pod.metadata.labels)).toBe(true)
    const ports = netpol.spec.ingress.flatMap((r: Obj) => r.ports.map((p: Obj) => p.port))
    expect(ports.sort()).toEqual(container.ports.map((c: Obj) => c.name).sort())
  })

  it.skipIf(!have)(
    'has a headless Service, which envoy/edge.yaml and tcp.yaml resolve: every ready Pod an address',
    () => {
      expect(service.spec.clusterIP).toBe('None')
      expect(service.spec.publishNotReadyAddresses).toBeUndefined()
      const fqdn = `${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local`
      const grpc = service.spec.ports.find((p: Obj) => p.name === 'grpc')
      for (const file of ['edge.yaml', 'tcp.yaml']) {
        const envoy = parse(readFileSync(join(ROOT, 'envoy', file), 'utf8'))
        const cluster = envoy.static_resources.clusters.find((c: Obj) => c.name === 'hostguard')
        expect(cluster.type, file).toBe('STRICT_DNS')
        expect(
          cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address,
          file,
        ).toEqual({ address: fqdn, port_value: grpc.port })
      }
    },
  )

  it.skipIf(!have)(
    "the NetworkPolicy admits the callers' Pods by their own labels, each documented in docs/deploy.md",
    () => {
      const [grpc, metrics] = one(objects, 'NetworkPolicy').spec.ingress
      // Each peer is as written: no label of hostguard's is added to another workload's selector.
      const peers = grpc.from.map((p: Obj) => p.podSelector)
      expect(peers).toEqual([
        { matchLabels: { istio: 'ingressgateway' } },
        { matchExpressions: [{ key: 'istio.io/gateway-name', operator: 'Exists' }] },
        { matchLabels: { 'security.istio.io/tlsMode': 'istio' } },
        { matchLabels: { 'hostguard.io/client': 'true' } },
      ])
      for (const p of grpc.from) expect(p.namespaceSelector).toEqual({})
      const section = deployDoc.slice(deployDoc.indexOf('### NetworkPolicy labels'))
      for (const peer of peers) {
        for (const [k, v] of Object.entries(peer.matchLabels ?? {}))
          expect(section).toContain(`\`${k}: ${v === 'true' ? '"true"' : v}\``)
        for (const e of peer.matchExpressions ?? []) expect(section).toContain(`\`${e.key}\``)
      }
      // The ingress gateway that the gateway AuthorizationPolicy sends to hostguard is admitted.
      const gateway = parse(
        readFileSync(join(ROOT, 'k8s', 'istio', 'authorization-policy-gateway.yaml'), 'utf8'),
      )
      expect(
        peers.some(
          (p: Obj) => p.matchLabels && matches(p.matchLabels, gateway.spec.selector.matchLabels),
        ),
      ).toBe(true)
      expect(metrics.from).toEqual([
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
          podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } },
        },
      ])
      // The documented overlay's patch moves Prometheus's namespace (a replace of a missing
      // path would fail the render).
      const docPolicy = one(renderDocOverlay().objects, 'NetworkPolicy')
      expect(
        docPolicy.spec.ingress[1].from[0].namespaceSelector.matchLabels[
          'kubernetes.io/metadata.name'
        ],
      ).toBe('observability')
    },
  )

  it.skipIf(!have)(
    'the NetworkPolicy admits only the HTTP proxies to the authz port, each documented in docs/deploy.md',
    () => {
      const rules = one(objects, 'NetworkPolicy').spec.ingress
      const authz = rules.filter((r: Obj) => r.ports.some((p: Obj) => p.port === 'authz'))
      expect(authz).toHaveLength(1)
      expect(authz[0].ports).toEqual([{ port: 'authz', protocol: 'TCP' }])
      const peers = authz[0].from.map((p: Obj) => p.podSelector)
      expect(peers).toEqual([
        {
          matchLabels: {
            'app.kubernetes.io/name': 'ingress-nginx',
            'app.kubernetes.io/component': 'controller',
          },
        },
        { matchLabels: { 'app.kubernetes.io/name': 'traefik' } },
        { matchLabels: { 'app.kubernetes.io/name': 'caddy-ingress-controller' } },
        { matchLabels: { 'hostguard.io/client': 'true' } },
      ])
      for (const p of authz[0].from)
        expect(Object.keys(p).sort()).toEqual(['namespaceSelector', 'podSelector'])
      // No other rule opens it, and no rule is open to every Pod or address.
      for (const r of rules) {
        expect(r.from.length).toBeGreaterThan(0)
        for (const p of r.from) expect(p.podSelector).not.toEqual({})
      }
      const section = deployDoc.slice(deployDoc.indexOf('### NetworkPolicy labels'))
      for (const peer of peers)
        for (const [k, v] of Object.entries(peer.matchLabels))
          expect(section).toContain(`\`${k}: ${v === 'true' ? '"true"' : v}\``)
      // The Traefik middleware's address is this Service's authz port.
      const auth = parseAllDocuments(
        readFileSync(join(ROOT, 'proxies', 'traefik', 'middleware.yaml'), 'utf8'),
      )
        .map((d) => d.toJS())
        .find((o: Obj) => o.spec.forwardAuth !== undefined)
      const url = new URL(auth.spec.forwardAuth.address)
      expect(url.hostname).toBe(
        `${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local`,
      )
      expect(Number(url.port)).toBe(service.spec.ports.find((p: Obj) => p.name === 'authz').port)
    },
  )

  it.skipIf(!have)(
    'needs no Prometheus Operator: the ServiceMonitor is a component, which scrapes one Service',
    () => {
      expect(objects.filter((o) => o.apiVersion.startsWith('monitoring.coreos.com/'))).toEqual([])
      const doc = renderDocOverlay().objects
      const monitor = one(doc, 'ServiceMonitor')
      const scraped = doc.filter(
        (o) =>
          o.kind === 'Service' &&
          matches(monitor.spec.selector.matchLabels, o.metadata.labels ?? {}) &&
          monitor.spec.namespaceSelector.matchNames.includes(o.metadata.namespace) &&
          o.spec.ports.some((p: Obj) => p.name === monitor.spec.endpoints[0].port),
      )
      expect(scraped.map((s) => s.metadata.name)).toEqual([service.metadata.name])
    },
  )

  it.skipIf(!have)('ships the Grafana dashboard of monitoring/, labelled for Grafana', () => {
    const dashboard = one(objects, 'ConfigMap', 'hostguard-dashboard')
    expect(dashboard.metadata.labels.grafana_dashboard).toBe('1')
    expect(JSON.parse(dashboard.data['hostguard.json'])).toEqual(
      JSON.parse(readFileSync(join(ROOT, 'monitoring', 'grafana-dashboard.json'), 'utf8')),
    )
  })

  it.skipIf(!have)(
    'k8s/overlays/k8s-nodes adds a ServiceAccount that may list and watch Nodes',
    () => {
      const overlay = render('overlays/k8s-nodes').objects
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
      const text: string = one(overlay, 'ConfigMap', 'hostguard-policy').data['policy.yaml']
      const dir = mkdtempSync(join(tmpdir(), 'hostguard-k8s-'))
      writeFileSync(join(dir, 'health-check'), '0f'.repeat(32))
      const spec = loadPolicy(text, parse(text).healthCheck.value.file, dir)
      expect(spec.top.allowedCidrNets?.sources.map((source) => source.name)).toEqual(['k8s:nodes'])
      const overlaid = podSpec.containers[0]
      const cacheDir = flag(overlaid, 'cache-dir')
      const mount = overlaid.volumeMounts.find((m: Obj) => m.mountPath === cacheDir)
      expect(podSpec.volumes.find((v: Obj) => v.name === mount.name).emptyDir).toBeDefined()
      expect(flag(overlaid, 'policy')).toBe(flag(container, 'policy'))
      expect(overlaid.image).toBe(PLACEHOLDER_IMAGE)
    },
  )

  it.skipIf(!have)(
    "Istio's provider is a mesh config fragment that calls the component's ClusterIP Service, fails closed, and answers an outage apart from a deny",
    () => {
      const helm = parse(readFileSync(join(ROOT, 'k8s', 'istio', 'istiod-values.yaml'), 'utf8'))
      const operator = parse(
        readFileSync(join(ROOT, 'k8s', 'istio', 'istio-operator.yaml'), 'utf8'),
      )
      // Fragments merged into an installation: nothing but the extension provider.
      expect(Object.keys(helm)).toEqual(['meshConfig'])
      expect(Object.keys(helm.meshConfig)).toEqual(['extensionProviders'])
      expect(operator).toMatchObject({
        apiVersion: 'install.istio.io/v1alpha1',
        kind: 'IstioOperator',
      })
      expect(operator.spec).toEqual(helm)
      expect(helm.meshConfig.extensionProviders).toHaveLength(1)
      const provider = helm.meshConfig.extensionProviders[0]

      const mesh = one(renderDocOverlay().objects, 'Service', 'hostguard-istio')
      expect(mesh.spec.clusterIP).toBeUndefined() // not headless: Istio balances over its endpoints
      expect(matches(mesh.spec.selector, pod.metadata.labels)).toBe(true)
      const policy = parse(one(objects, 'ConfigMap', 'hostguard-policy').data['policy.yaml'])
      expect(provider.envoyExtAuthzGrpc).toEqual({
        service: `${mesh.metadata.name}.${mesh.metadata.namespace}.svc.cluster.local`,
        port: mesh.spec.ports.find((p: Obj) => p.name === 'grpc').port,
        timeout: '0.2s',
        failOpen: false,
        statusOnError: '503',
      })
      expect(Number(provider.envoyExtAuthzGrpc.statusOnError)).not.toBe(policy.deny?.status ?? 403)

      for (const file of [
        'authorization-policy-gateway.yaml',
        'authorization-policy-workload.yaml',
      ]) {
        const authz = parse(readFileSync(join(ROOT, 'k8s', 'istio', file), 'utf8'))
        expect(authz).toMatchObject({
          apiVersion: 'security.istio.io/v1',
          kind: 'AuthorizationPolicy',
          spec: { action: 'CUSTOM', provider: { name: provider.name } },
        })
        expect(Object.keys(authz.spec).sort()).toEqual(['action', 'provider', 'rules', 'selector'])
        // Every request is checked: no path is exempt from hostguard (health checks that pass
        // through Envoy are the policy's healthCheck, on its paths).
        expect(authz.spec.rules, file).toEqual([{}])
      }
      expect(policy.healthCheck.paths).toEqual(['/health-check/'])
    },
  )

  it.skipIf(!have)('docs/deploy.md names every file of k8s/ it describes, and they exist', () => {
    const named = [...deployDoc.matchAll(/`(k8s\/[\w./-]+)`/g)].map((m) => m[1] ?? '')
    expect(named.length).toBeGreaterThan(5)
    for (const path of named) expect(existsSync(join(ROOT, path)), path).toBe(true)
    const overlayPaths = codeBlocks('yaml')
      .flatMap((b) => [...b.matchAll(/\.\.\/\.\.\/hostguard\/(k8s\/[\w/-]+)/g)])
      .map((m) => m[1] ?? '')
    expect(overlayPaths.length).toBeGreaterThan(2)
    for (const path of overlayPaths) expect(existsSync(join(ROOT, path)), path).toBe(true)
  })
})
