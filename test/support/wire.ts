// Protobuf wire bytes written by hand, so that a test can write what no encoder writes: field
// number 0, non-minimal varints, stray end-groups, wire types that do not match the schema.

/** `n` as a varint, with `extra` redundant bytes (0x80 … 0x00: the same value, non-minimal). */
export function varint(n: number, extra = 0): number[] {
  const out: number[] = []
  let v = n
  while (v >= 0x80) {
    out.push((v % 128) | 0x80)
    v = Math.floor(v / 128)
  }
  if (extra === 0) return [...out, v]
  return [...out, v | 0x80, ...Array<number>(extra - 1).fill(0x80), 0]
}

/** A field key: field number and wire type, with `extra` redundant varint bytes. */
export function key(field: number, wireType: number, extra = 0): number[] {
  return varint(field * 8 + wireType, extra)
}

/** A length-delimited field, its key and length padded with redundant bytes if asked. */
export function lenField(field: number, body: Uint8Array, keyPad = 0, lengthPad = 0): Buffer {
  return Buffer.concat([
    Buffer.from([...key(field, 2, keyPad), ...varint(body.length, lengthPad)]),
    body,
  ])
}
