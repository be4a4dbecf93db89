// Decision → the HTTP authorization answer (SPEC "HTTP authorization"): a status, the
// x-hostguard-* headers and a short body. Everything that depends only on the site and the
// reason is made once when the policy is compiled; per request only the client address is added.

import { STATUS_CODES } from 'node:http'
import { type AnswerSettings, denyBody, removedHeaders } from '../decision/answer.js'
import { denyStatusFor, isAllowReason, modeFor } from '../decision/evaluate.js'
import { type Decision, type HttpAnswers, REASONS, type Reason } from '../decision/types.js'
import { formatIp } from '../net/ip.js'
import type { Dialect } from './request.js'

export interface HttpAnswer {
  readonly status: number
  /** Name, value, name, value…: what node:http's writeHead takes as a flat array. */
  readonly headers: string[]
  readonly body: string
}

export const CLIENT_HEADER = 'x-hostguard-client'
export const STATUS_HEADER = 'x-hostguard-status'
/** Envoy's http_service removes the headers this lists from the request it lets through. */
const ENVOY_REMOVE_HEADER = 'x-envoy-auth-headers-to-remove'
const TEXT = ['content-type', 'text/plain; charset=utf-8']

export function prepareHttpAnswers(settings: AnswerSettings): HttpAnswers {
  const headers = new Map<Reason, readonly string[]>()
  const body = new Map<Reason, string>()
  for (const reason of REASONS) {
    const allowed = isAllowReason(reason)
    headers.set(reason, [
      'x-hostguard-decision',
      allowed ? 'allow' : 'deny',
      'x-hostguard-reason',
      reason,
      'x-hostguard-site',
      settings.name,
      'x-hostguard-mode',
      modeFor(settings.dryRun, reason),
    ])
    if (allowed) continue
    const status = denyStatusFor(reason, settings.denyStatus)
    body.set(reason, denyBody(STATUS_CODES[status], settings.showReason ? reason : undefined))
  }
  const list = (names: readonly string[]): [string, string] => {
    const [unknownClient, knownClient] = removedHeaders(names, settings.clientIpHeader)
    return [unknownClient.join(','), knownClient.join(',')]
  }
  return {
    headers,
    body,
    envoyRemove: [list(settings.removeUntrusted), list(settings.removeTrusted)],
  }
}

/** The answer for `decision` in `dialect`'s terms. */
export function answer(decision: Decision, dialect: Dialect): HttpAnswer {
  const { site, client, reason } = decision
  const headers = [...(site.http.headers.get(reason) ?? [])]
  const ip = client.ip === undefined ? undefined : formatIp(client.ip)
  if (ip !== undefined) headers.push(CLIENT_HEADER, ip)
  if (!decision.allowed && decision.mode === 'enforce') {
    headers.push(...TEXT)
    // nginx's auth_request turns every status but 401 and 403 into 500: the intended one rides
    // in a header for the shipped configuration to answer with.
    const status = dialect === 'nginx' ? 403 : decision.status
    if (dialect === 'nginx') headers.push(STATUS_HEADER, String(decision.status))
    const body = site.http.body.get(reason) ?? ''
    // ASCII: a status phrase and a reason.
    headers.push('content-length', String(body.length))
    return { status, headers, body }
  }
  if (dialect === 'envoy') {
    const remove = site.http.envoyRemove[client.peerTrusted ? 1 : 0][ip === undefined ? 0 : 1]
    if (remove !== '') headers.push(ENVOY_REMOVE_HEADER, remove)
    if (ip !== undefined && site.clientIpHeader !== undefined) headers.push(site.clientIpHeader, ip)
  }
  headers.push('content-length', '0')
  return { status: 200, headers, body: '' }
}
