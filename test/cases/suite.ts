// One case suite for every implementation of SPEC's decision (as hono runs one case file against
// each of its routers): check(), the reference evaluator of the differential fuzzer, `explain`,
// the live server and the benchmark's baseline. Each implementation gives one adapter, from a
// policy and a request to an Answer; runCases registers every case against it.

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Mode, Reason } from '../../src/decision/types.js'
import type { Answer } from './answer.js'
import type { CaseRequest } from './request.js'

export interface CasePolicy {
  readonly name: string
  /** The policy file (explain and the server read a file). */
  readonly file: string
  readonly text: string
  /** The environment it is loaded with. */
  readonly env: Readonly<Record<string, string>>
  /** The health-check secret that environment gives (the reference evaluator takes it as is). */
  readonly secret: string
}

/** The expected answer; `set` and `remove` are compared where a case gives them. */
export interface Want {
  readonly decision: 'allow' | 'deny'
  readonly reason: Reason
  /** Default `default`: the top level. */
  readonly site?: string
  /** Default `enforce`. */
  readonly mode?: Mode
  /** The resolved client; absent: unknown. */
  readonly client?: string | undefined
  /** The HTTP status of a denied answer; absent: the answer is an allow (dry run included). */
  readonly status?: number | undefined
  readonly set?: readonly string[]
  readonly remove?: readonly string[]
}

/**
 * SPEC "The answer": the forwarding headers hostguard knows, as SPEC lists them (not from src/:
 * the cases are written from SPEC). fuzz/reference.ts and bench/baseline.ts keep their own copy.
 */
export const FORWARDING: readonly string[] = [
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-scheme',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
]

/** The forwarding headers but `kept`: what an answer removes. */
export function forwardingExcept(...kept: string[]): string[] {
  return FORWARDING.filter((h) => !kept.includes(h))
}

export interface Case {
  readonly name: string
  readonly request: CaseRequest
  readonly want: Want
}

export interface CaseGroup {
  readonly policy: CasePolicy
  readonly cases: readonly Case[]
}

/** The variable inline policies take their health-check secret from. */
const SECRET_VARIABLE = 'HEALTH_SECRET'

const dir = mkdtempSync(join(tmpdir(), 'hostguard-cases-'))

/** A policy given as YAML text, written to a file of its own. */
export function inlinePolicy(name: string, text: string, secret = ''): CasePolicy {
  const file = join(dir, `${name}.yaml`)
  writeFileSync(file, text)
  return { name, file, text, env: secret === '' ? {} : { [SECRET_VARIABLE]: secret }, secret }
}

/** A policy file of the repository, loaded with an empty environment. */
export function filePolicy(name: string, file: string, secret: string): CasePolicy {
  return { name, file, text: readFileSync(file, 'utf8'), env: {}, secret }
}

interface Opened {
  decide(request: CaseRequest): Answer | Promise<Answer>
  close?(): void | Promise<void>
}

/** An implementation, ready to answer under one policy. */
export type Implementation = (policy: CasePolicy) => Opened | Promise<Opened>

/** The answer a case expects, with its defaults filled in. */
function expected(want: Want): Partial<Answer> {
  return {
    decision: want.decision,
    reason: want.reason,
    site: want.site ?? 'default',
    mode: want.mode ?? 'enforce',
    client: want.client,
    status: want.status,
    ...(want.set === undefined ? {} : { set: want.set }),
    ...(want.remove === undefined ? {} : { remove: [...want.remove].sort() }),
  }
}

/** The fields of `answer` that `want` speaks about. */
function compared(answer: Answer, want: Want): Partial<Answer> {
  const { decision, reason, site, mode, client, status, set, remove } = answer
  return {
    decision,
    reason,
    site,
    mode,
    client,
    status,
    ...(want.set === undefined ? {} : { set }),
    ...(want.remove === undefined ? {} : { remove }),
  }
}

/** Asserts that `answer` is what `want` expects. */
export function expectAnswer(answer: Answer, want: Want, what?: string): void {
  expect(compared(answer, want), what).toEqual(expected(want))
}

/** Registers every case of `groups` against `implementation`, one describe block per policy. */
export function runCases(implementation: Implementation, groups: readonly CaseGroup[]): void {
  for (const group of groups) {
    describe(`policy ${group.policy.name}`, () => {
      let opened: Opened | undefined
      beforeAll(async () => {
        opened = await implementation(group.policy)
      })
      afterAll(async () => {
        await opened?.close?.()
      })
      it.each(group.cases.map((c) => [c.name, c] as const))('%s', async (_, c) => {
        if (!opened) throw new Error(`${group.policy.name} did not open`)
        expectAnswer(await opened.decide(c.request), c.want)
      })
    })
  }
}
