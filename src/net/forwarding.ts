// The syntax of forwarding headers: a node (an address, maybe with a port) as x-forwarded-for,
// x-real-ip and RFC 7239 `for=` write it, and RFC 7239 `Forwarded` elements.

import { type Ip, parseIpRange, parseIpV6Range } from './ip.js'

const COLON = 0x3a
const OPEN = 0x5b // [
const CLOSE = 0x5d // ]
/** `[`, the longest address (45 characters), `]` and `:`. */
const NODE_SCAN = 48

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
  // Colons and the bracket are looked for within the entry's first NODE_SCAN characters only:
  // an address is at most 45, so a later `]` or first colon cannot make one, and a later second
  // colon fails the port check below. indexOf would run on to the end of a long header instead.
  let colon = -1
  let second = -1
  let close = -1
  const scanEnd = Math.min(end, start + NODE_SCAN)
  for (let i = start; i < scanEnd; i++) {
    const c = text.charCodeAt(i)
    if (c === COLON) {
      if (colon < 0) colon = i
      else if (second < 0) second = i
    } else if (c === CLOSE && close < 0) close = i
  }
  if (text.charCodeAt(start) === OPEN) {
    if (close < 0) return undefined
    if (close + 1 < end) {
      if (text.charCodeAt(close + 1) !== COLON) return undefined
      if (!isPort(text, close + 2, end, obfuscatedPort)) return undefined
    }
    return parseIpV6Range(text, start + 1, close)
  }
  if (colon < 0) {
    return text.charCodeAt(end - 1) === CLOSE ? undefined : parseIpRange(text, start, end)
  }
  if (second < 0) {
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

const TOKEN_RUN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]*/y
// A quoted-string: what lies between its quotes; a backslash escapes the next character.
const QUOTED = /"((?:[^"\\]|\\[\s\S])*)"/y

/** Reads a token at pos, before `end`; returns its end (pos when there is none). */
function tokenEnd(text: string, pos: number, end: number): number {
  // A sticky regex scans in native code, several times faster than a loop over char codes.
  TOKEN_RUN.lastIndex = pos
  TOKEN_RUN.test(text)
  return Math.min(TOKEN_RUN.lastIndex, end)
}

/**
 * The longest entry of a client-address header read (an `x-forwarded-for` element, an
 * `x-real-ip` value, a `Forwarded` element): room for `for=`, `by=`, `proto=` and a `host=` of a
 * full DNS name with a port. A longer one is not an address (or, as a host header, unreadable),
 * so no entry costs more than this to split, trim or parse, however a client pads it (SPEC
 * "Bounded work").
 */
export const MAX_CHAIN_ENTRY = 1024

/**
 * Where the `Forwarded` element that ends at `end` begins, found by scanning leftwards for a comma
 * outside a quoted string (a quote preceded by an odd run of backslashes is escaped). Leftwards,
 * so that a quote a client left open further left cannot swallow the elements a trusted proxy
 * appended on the right. -1 when the element begins before `floor` or is longer than
 * MAX_CHAIN_ENTRY: either way it cannot be read.
 */
export function forwardedElementStart(value: string, end: number, floor: number): number {
  if (end === 0) return floor === 0 ? 0 : -1
  // Most elements hold no quote: then the nearest comma is the boundary. The searches run on the
  // element's window only (a slice is a view, not a copy): lastIndexOf scans backwards one
  // character at a time, so it must not be left to cross a whole padded header.
  const from = Math.max(0, end - MAX_CHAIN_ENTRY - 1)
  const window = from === 0 && end === value.length ? value : value.slice(from, end)
  const at = window.lastIndexOf(',')
  const start = at < 0 ? from : from + at + 1
  if (end - start > MAX_CHAIN_ENTRY || (at < 0 && from > 0)) return -1
  if (window.indexOf('"', at + 1) < 0) return start < floor ? -1 : start
  return quotedElementStart(value, end, Math.max(floor, from))
}

function quotedElementStart(value: string, end: number, floor: number): number {
  let quoted = false
  // Down to floor - 1: an element that begins at floor has its comma there.
  for (let i = end - 1; i >= Math.max(0, floor - 1); i--) {
    const c = value.charCodeAt(i)
    if (c === 0x22 /* " */) {
      let slashes = 0
      while (i - slashes - 1 >= floor && value.charCodeAt(i - slashes - 1) === 0x5c) slashes++
      if (slashes % 2 === 0) quoted = !quoted
      i -= slashes
    } else if (c === 0x2c /* , */ && !quoted) {
      return i + 1
    }
  }
  return floor === 0 ? 0 : -1
}

/** More parameters than this make an element malformed (each costs a token scan and a lookup). */
const MAX_FORWARDED_PARAMETERS = 16

const FOR = 1
const HOST = 2
/** RFC 7239's parameters by lower-case name, each a bit (no string made for them per request). */
const PARAMETERS: readonly [string, number][] = [
  ['for', FOR],
  ['host', HOST],
  ['by', 4],
  ['proto', 8],
]

/** The bit of the parameter named by value[start, end) in any case; 0 for an extension. */
function parameterBit(value: string, start: number, end: number): number {
  for (const [name, bit] of PARAMETERS) {
    if (name.length !== end - start) continue
    let k = 0
    while (k < name.length && (value.charCodeAt(start + k) | 0x20) === name.charCodeAt(k)) k++
    if (k === name.length) return bit
  }
  return 0
}

/**
 * One RFC 7239 element in value[start, end): its `for=` and `host=` values, unquoted; MALFORMED
 * at any syntax error; undefined when the element is empty (`, ,` between elements).
 */
export function parseForwardedElement(
  value: string,
  start: number,
  end: number,
): ForwardedElement | undefined {
  let pos = start
  let forValue: string | undefined
  let hostValue: string | undefined
  let seen = 0 // RFC 7239's four parameters, by PARAMETERS' bits; others are kept in `others`
  let others: Set<string> | undefined
  let pairs = 0
  while (pos < end) {
    while (pos < end && isOws(value.charCodeAt(pos))) pos++
    if (pos >= end) break
    if (value.charCodeAt(pos) === 0x3b /* ; */) {
      pos++
      continue
    }
    const nameEnd = tokenEnd(value, pos, end)
    if (nameEnd === pos || nameEnd >= end || value.charCodeAt(nameEnd) !== 0x3d /* = */)
      return MALFORMED
    const bit = parameterBit(value, pos, nameEnd)
    const name = bit === 0 ? value.slice(pos, nameEnd).toLowerCase() : ''
    pos = nameEnd + 1
    let parsed: string
    if (pos < end && value.charCodeAt(pos) === 0x22 /* " */) {
      QUOTED.lastIndex = pos
      const quoted = QUOTED.exec(value)
      if (quoted === null || QUOTED.lastIndex > end) return MALFORMED
      const inner = quoted[1] ?? ''
      parsed = inner.includes('\\') ? inner.replace(/\\([\s\S])/g, '$1') : inner
      pos = QUOTED.lastIndex
    } else {
      const valueEnd = tokenEnd(value, pos, end)
      if (valueEnd === pos) return MALFORMED
      parsed = value.slice(pos, valueEnd)
      pos = valueEnd
    }
    // RFC 7239 §4: a parameter must not occur more than once in an element.
    if (bit !== 0) {
      if ((seen & bit) !== 0) return MALFORMED
      seen |= bit
      if (bit === FOR) forValue = parsed
      else if (bit === HOST) hostValue = parsed
    } else {
      others ??= new Set()
      if (others.has(name)) return MALFORMED
      others.add(name)
    }
    // RFC 7239 defines four parameters; a real element carries a few more at most.
    if (++pairs > MAX_FORWARDED_PARAMETERS) return MALFORMED
    while (pos < end && isOws(value.charCodeAt(pos))) pos++
    if (pos < end && value.charCodeAt(pos) !== 0x3b) return MALFORMED
  }
  return pairs === 0 ? undefined : { malformed: false, for: forValue, host: hostValue }
}

/**
 * A `Forwarded` value's elements, left to right, split as the client walk splits them (from the
 * right). Empty elements are left out; at a malformed one, [MALFORMED] alone. Undefined when there are
 * more than `max`, empty ones included, or one is longer than MAX_CHAIN_ENTRY. With `from`, only
 * the elements that begin at or after it (an element boundary) are read.
 */
export function parseForwarded(
  value: string,
  max = Number.POSITIVE_INFINITY,
  from = 0,
): ForwardedElement[] | undefined {
  const elements: ForwardedElement[] = []
  let end = value.length
  // Empty elements count too: each costs a split, and `,,,…` must not be free to repeat.
  for (let count = 1; ; count++) {
    if (count > max) return undefined
    const start = forwardedElementStart(value, end, from)
    if (start < 0) return undefined
    const element = parseForwardedElement(value, start, end)
    // One malformed element makes the whole header unreadable: no need to read on.
    if (element === MALFORMED) return [MALFORMED]
    if (element !== undefined) elements.push(element)
    if (start <= from) return elements.reverse()
    end = start - 1
  }
}
