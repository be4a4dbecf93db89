// Protocol Buffers wire format, only as much as hostguard needs: a bounds-checked reader that
// returns false instead of throwing, and field writers for precomputed answer parts. Field numbers
// live in decode.ts and encode.ts, never here.

const VARINT = 0
const FIXED64 = 1
export const LEN = 2
const START_GROUP = 3
const END_GROUP = 4
const FIXED32 = 5

/**
 * bytes[start, end) as UTF-8 text; invalid sequences become U+FFFD. Node's own `utf8Slice`, which
 * `Buffer.toString('utf8', …)` calls after its argument handling: ~85 ns instead of ~145 for the
 * short values of a request (it is on Buffer.prototype in every Node release, but untyped;
 * toString stands in if a release ever drops it).
 */
export const utf8Text: (bytes: Buffer, start: number, end: number) => string =
  typeof (Buffer.prototype as { utf8Slice?: unknown }).utf8Slice === 'function'
    ? (bytes, start, end) =>
        (bytes as Buffer & { utf8Slice(start: number, end: number): string }).utf8Slice(start, end)
    : (bytes, start, end) => bytes.toString('utf8', start, end)

/** Nested groups deeper than this are treated as malformed rather than followed. */
const MAX_GROUP_DEPTH = 32

export class WireReader {
  pos: number
  /** Set by `field()`: the field number and wire type just read. */
  fieldNumber = 0
  wireType = 0
  /** Set by `length()`: the end of the length-delimited value just read. */
  valueEnd = 0

  readonly buf: Buffer
  readonly end: number

  constructor(buf: Buffer, start: number, end: number) {
    this.buf = buf
    this.pos = start
    this.end = end
  }

  /** Reads a varint of up to 53 bits; -1 when truncated or longer than ten bytes. */
  varint(): number {
    // Field keys below 16 and lengths below 128 (nearly every one in a CheckRequest) are one
    // byte: read them without the loop, so that this small method inlines.
    const pos = this.pos
    if (pos < this.end) {
      const b = this.buf[pos] ?? 0x80
      if (b < 0x80) {
        this.pos = pos + 1
        return b
      }
    }
    return this.longVarint()
  }

  private longVarint(): number {
    let result = 0
    let scale = 1
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) return -1
      const b = this.buf[this.pos++] ?? 0
      result += (b & 0x7f) * scale
      if (b < 0x80) return result
      scale *= 128
    }
    return -1
  }

  /** Reads a field key; false at a malformed key (field number 0, unknown wire type). */
  field(): boolean {
    const key = this.varint()
    if (key < 8) return false
    // A key fits 32 bits for any field number protobuf allows; larger is not a CheckRequest.
    if (key > 0xffffffff) return false
    this.fieldNumber = key >>> 3
    this.wireType = key & 7
    return this.wireType <= FIXED32
  }

  /** Reads a length prefix and sets `valueEnd`; false when it runs past the end. */
  length(): boolean {
    const n = this.varint()
    if (n < 0 || n > this.end - this.pos) return false
    this.valueEnd = this.pos + n
    return true
  }

  /** Skips the value of the field just read (unknown fields are skipped, as protobuf requires). */
  skip(): boolean {
    return this.skipValue(this.wireType, this.fieldNumber, 0)
  }

  private skipValue(wireType: number, fieldNumber: number, depth: number): boolean {
    switch (wireType) {
      case VARINT:
        return this.varint() >= 0
      case FIXED64:
        return this.advance(8)
      case FIXED32:
        return this.advance(4)
      case LEN:
        if (!this.length()) return false
        this.pos = this.valueEnd
        return true
      case START_GROUP:
        if (depth >= MAX_GROUP_DEPTH) return false
        for (;;) {
          if (!this.field()) return false
          if (this.wireType === END_GROUP) return this.fieldNumber === fieldNumber
          if (!this.skipValue(this.wireType, this.fieldNumber, depth + 1)) return false
        }
      default:
        return false
    }
  }

  private advance(n: number): boolean {
    if (this.end - this.pos < n) return false
    this.pos += n
    return true
  }
}

// Writers: each returns the complete field (key, length, value) as bytes.

function varintBytes(n: number): number[] {
  const out: number[] = []
  let v = n
  while (v >= 0x80) {
    out.push((v % 128) | 0x80)
    v = Math.floor(v / 128)
  }
  out.push(v)
  return out
}

export function varintField(fieldNumber: number, value: number): Buffer {
  return Buffer.from([...varintBytes(fieldNumber * 8 + VARINT), ...varintBytes(value)])
}

function bytesField(fieldNumber: number, value: Uint8Array): Buffer {
  const head = Buffer.from([...varintBytes(fieldNumber * 8 + LEN), ...varintBytes(value.length)])
  return Buffer.concat([head, value])
}

export function stringField(fieldNumber: number, value: string): Buffer {
  return bytesField(fieldNumber, Buffer.from(value, 'utf8'))
}

export function messageField(fieldNumber: number, ...parts: Uint8Array[]): Buffer {
  return bytesField(fieldNumber, Buffer.concat(parts))
}

export function varintSize(n: number): number {
  let size = 1
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) size++
  return size
}

/** Writes into a buffer of the exact size computed beforehand; `done` checks that it is full. */
export class WireWriter {
  readonly buf: Buffer
  pos = 0

  constructor(buf: Buffer) {
    this.buf = buf
  }

  varint(n: number): void {
    let v = n
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 128) | 0x80
      v = Math.floor(v / 128)
    }
    this.buf[this.pos++] = v
  }

  /** A LEN field's one-byte key and its length; the body follows. */
  len(key: number, length: number): void {
    this.buf[this.pos++] = key
    this.varint(length)
  }

  bytes(b: Uint8Array): void {
    this.buf.set(b, this.pos)
    this.pos += b.length
  }

  ascii(s: string): void {
    this.pos += this.buf.write(s, this.pos, 'latin1')
  }

  done(): Buffer {
    if (this.pos !== this.buf.length)
      throw new Error(`encoded ${this.pos} bytes into ${this.buf.length}`)
    return this.buf
  }
}
