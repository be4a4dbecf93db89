import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { ROOT } from '../support/protos.js'
import { spawnServe } from '../support/server.js'

// No Docker engine runs here: check what the Dockerfile relies on, and run the production
// install it makes.
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .filter((l) => l && !l.startsWith('#'))
const copies = [...dockerfile.matchAll(/^COPY (?!--from)(.+) (\S+)$/gm)].flatMap((m) =>
  (m[1] ?? '').split(' '),
)
const runtime = dockerfile.slice(dockerfile.lastIndexOf('FROM '))
/** The runtime stage's ENV lines, as the container's process sees them. */
const imageEnv = Object.fromEntries(
  [...runtime.matchAll(/^ENV (\w+)=(.*)$/gm)].map((m) => [m[1] ?? '', m[2] ?? '']),
)

describe('Dockerfile', () => {
  it('copies only paths that exist and that .dockerignore lets through', () => {
    expect(copies.sort()).toEqual(
      [
        'examples',
        'package-lock.json',
        'package-lock.json',
        'package.json',
        'package.json',
        'proto',
        'src',
        'tsconfig.json',
      ].sort(),
    )
    for (const path of copies) {
      expect(existsSync(join(ROOT, path)), path).toBe(true)
      expect(ignored, path).not.toContain(path)
    }
  })

  it('runs, as a non-root user, a command that exists after npm run build', () => {
    expect(runtime).toMatch(/^USER 10001:10001$/m)
    expect(runtime).toContain('COPY --from=build /src/dist ./dist')
    expect(runtime).toContain('npm ci --omit=dev --ignore-scripts')
    expect(runtime).toContain('ENTRYPOINT ["node", "dist/main.js"]')
    expect(existsSync(join(ROOT, 'dist', 'main.js'))).toBe(true)
    const cmd = JSON.parse(/^CMD (.+)$/m.exec(runtime)?.[1] ?? '[]') as string[]
    expect(cmd.slice(0, 2)).toEqual(['serve', '--policy'])
    expect(existsSync(join(ROOT, cmd[2] ?? ''))).toBe(true)
  })

  it('bounds the young generation, which sets peak memory under a burst (docs/operations.md)', () => {
    expect(imageEnv).toEqual({ NODE_ENV: 'production', NODE_OPTIONS: '--max-semi-space-size=8' })
  })

  it('its production install (no dev dependencies) starts the server with the image env', {
    timeout: 180_000,
  }, async () => {
    const app = mkdtempSync(join(tmpdir(), 'hostguard-image-'))
    for (const path of ['package.json', 'package-lock.json', 'dist', 'proto', 'examples'])
      cpSync(join(ROOT, path), join(app, path), { recursive: true })
    await promisify(execFile)(
      'npm',
      ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'],
      { cwd: app, env: { ...process.env, NODE_ENV: 'production' } },
    )
    expect(existsSync(join(app, 'node_modules', 'typescript'))).toBe(false)
    // Node refuses to start on a NODE_OPTIONS flag it does not allow there.
    const server = spawnServe(
      join(app, 'examples', 'policy.yaml'),
      [],
      join(app, 'dist', 'main.js'),
      {
        ...process.env,
        ...imageEnv,
      },
    )
    try {
      const { httpPort } = await server.started()
      expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(200)
    } finally {
      server.child.kill('SIGTERM')
    }
  })
})
