// Header names as a request carries them: tokens (node:http's parser refuses any other byte), in
// whatever case the sender wrote.

/**
 * `raw` is `lower` in any case. Tokens are ASCII, so only A-Z need folding, and a name is
 * compared without making its lower case.
 */
export function equalsLowerCase(raw: string, lower: string): boolean {
  if (raw.length !== lower.length) return false
  for (let i = 0; i < lower.length; i++) {
    let c = raw.charCodeAt(i)
    if (c >= 0x41 && c <= 0x5a) c |= 0x20
    if (c !== lower.charCodeAt(i)) return false
  }
  return true
}
