// The syntax of forwarding headers: a node (an address, maybe with a port) as x-forwarded-for,
// x-real-ip and RFC 7239 `for=` write it, and RFC 7239 `Forwarded` elements.

import { type Ip, parseIpRange, parseIpV6Range } from './ip.js'

const COLON = 0x3a
const OPEN = 0x5b // [
const CLOSE = 0x5d // ]

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39
}

/** A port: 1-5 digits, or with `obfuscated`, RFC 7239's `_` followed by letters, digits, `._-`. */
function isPort(text: string, start: number, end: number, obfuscated: boolean): boolean {
  if (start >= end) return false
  if (obfuscated && text.charCodeAt(start) === 0x5f)
    return /^_[A-Za-z0-9._-]+$/.test(text.slice(start, end))
  if (end - start > 5) return false
  for (let i = start; i < end; i++) if (!isDigit(text.charCodeAt(i))) return false
  return Number(text.slice(start, end)) <= 65535
}

/**
 * The address in text[start, end): `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]`,
 * `[2001:db8::1]:80` and, where `bareV6` (x-forwarded-for), `2001:db8::1`. RFC 7239 `for=` nodes
 * always bracket IPv6 and may use obfuscated ports. Undefined for anything else, including
 * `unknown` and obfuscated identifiers (`_hidden`).
 */
export function parseNode(
  text: string,
  start: number,
  end: number,
  bareV6: boolean,
  obfuscatedPort = false,
): Ip | undefined {
  if (start >= end) return undefined
  if (text.charCodeAt(start) === OPEN) {
    const close = text.indexOf(']', start)
    if (close < 0 || close >= end) return undefined
    if (close + 1 < end) {
      if (text.charCodeAt(close + 1) !== COLON) return undefined
      if (!isPort(text, close + 2, end, obfuscatedPort)) return undefined
    }
    return parseIpV6Range(text, start + 1, close)
  }
  const colon = text.indexOf(':', start)
  if (colon < 0 || colon >= end) {
    return text.charCodeAt(end - 1) === CLOSE ? undefined : parseIpRange(text, start, end)
  }
  const second = text.indexOf(':', colon + 1)
  if (second < 0 || second >= end) {
    // One colon: IPv4 with a port (an IPv6 address has at least two colons).
    if (!isPort(text, colon + 1, end, obfuscatedPort)) return undefined
    const ip = parseIpRange(text, start, colon)
    return ip?.family === 4 ? ip : undefined
  }
  return bareV6 ? parseIpV6Range(text, start, end) : undefined
}

/** One RFC 7239 element: its `for=` and `host=` values, unquoted; or malformed. */
export interface ForwardedElement {
  readonly malformed: boolean
  readonly for: string | undefined
  readonly host: string | undefined
}

const MALFORMED: ForwardedElement = { malformed: true, for: undefined, host: undefined }

// RFC 7230 tchar
const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/y

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09
}

/** The first index in text[start, end) that is not a space or tab (HTTP's OWS). */
export function owsStart(text: string, start: number, end: number): number {
  let i = start
  while (i < end && isOws(text.charCodeAt(i))) i++
  return i
}

/** One past the last index in text[start, end) that is not a space or tab. */
export function owsEnd(text: string, start: number, end: number): number {
  let i = end
  while (i > start && isOws(text.charCodeAt(i - 1))) i--
  return i
}

/** Reads a token at pos; returns its end (pos when there is none). */
function tokenEnd(text: string, pos: number): number {
  let i = pos
  for (;;) {
    TCHAR.lastIndex = i
    if (!TCHAR.test(text)) return i
    i++
  }
}

/**
 * Splits a `Forwarded` value into elements, left to right. A syntax error makes only its own
 * element malformed: parsing goes on after the next comma, so that the elements a trusted proxy
 * appended on the right are still read (a walk from the right stops at the malformed one).
 */
export function parseForwarded(value: string): ForwardedElement[] {
  const elements: ForwardedElement[] = []
  const n = value.length
  let pos = 0
  let forValue: string | undefined
  let hostValue: string | undefined
  let seen = new Set<string>()
  let pairs = 0

  const finish = (): void => {
    if (pairs > 0) elements.push({ malformed: false, for: forValue, host: hostValue })
    forValue = undefined
    hostValue = undefined
    seen = new Set()
    pairs = 0
  }
  const fail = (): void => {
    elements.push(MALFORMED)
    const comma = value.indexOf(',', pos)
    pos = comma < 0 ? n : comma + 1
    forValue = undefined
    hostValue = undefined
    seen = new Set()
    pairs = 0
  }

  while (pos < n) {
    while (pos < n && isOws(value.charCodeAt(pos))) pos++
    if (pos >= n) break
    const c = value.charCodeAt(pos)
    if (c === 0x2c /* , */) {
      finish()
      pos++
      continue
    }
    if (c === 0x3b /* ; */) {
      pos++
      continue
    }
    const nameEnd = tokenEnd(value, pos)
    if (nameEnd === pos || value.charCodeAt(nameEnd) !== 0x3d /* = */) {
      fail()
      continue
    }
    const name = value.slice(pos, nameEnd).toLowerCase()
    pos = nameEnd + 1
    let parsed: string
    if (value.charCodeAt(pos) === 0x22 /* " */) {
      let out = ''
      let i = pos + 1
      let closed = false
      while (i < n) {
        const q = value.charCodeAt(i)
        if (q === 0x22) {
          closed = true
          break
        }
        if (q === 0x5c /* \ */) i++
        if (i < n) out += value[i]
        i++
      }
      if (!closed) {
        fail()
        continue
      }
      parsed = out
      pos = i + 1
    } else {
      const end = tokenEnd(value, pos)
      if (end === pos) {
        fail()
        continue
      }
      parsed = value.slice(pos, end)
      pos = end
    }
    // RFC 7239 §4: a parameter must not occur more than once in an element.
    if (seen.has(name)) {
      fail()
      continue
    }
    seen.add(name)
    pairs++
    if (name === 'for') forValue = parsed
    else if (name === 'host') hostValue = parsed
    while (pos < n && isOws(value.charCodeAt(pos))) pos++
    const next = value.charCodeAt(pos)
    if (pos < n && next !== 0x3b && next !== 0x2c) fail()
  }
  finish()
  return elements
}
