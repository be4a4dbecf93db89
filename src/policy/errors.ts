/** Every policy error code; docs/errors.md documents each (checked by a test, both ways). */
export const POLICY_ERROR_CODES = [
  'POLICY_FILE_UNREADABLE',
  'POLICY_YAML_SYNTAX',
  'POLICY_YAML_ALIASES',
  'POLICY_TOO_MANY_SITES',
  'POLICY_TOO_MANY_ENTRIES',
  'POLICY_NOT_A_MAPPING',
  'POLICY_VERSION',
  'POLICY_UNKNOWN_KEY',
  'POLICY_TYPE',
  'POLICY_REQUIRED',
  'POLICY_CIDR_INVALID',
  'POLICY_CIDR_HOST_BITS',
  'POLICY_CIDR_MAPPED_PREFIX',
  'POLICY_SOURCE_INVALID',
  'POLICY_ADDRESS_FILE_UNREADABLE',
  'POLICY_HOST_PATTERN_EMPTY',
  'POLICY_HOST_PATTERN_INVALID',
  'POLICY_HOST_PATTERN_WILDCARD',
  'POLICY_HOST_PATTERN_PORT',
  'POLICY_HOST_PATTERN_IPV6_UNBRACKETED',
  'POLICY_HOST_PATTERN_TRAILING_DOT',
  'POLICY_HEADER_NAME_INVALID',
  'POLICY_TRUSTED_HEADER_UNKNOWN',
  'POLICY_TRUSTED_HEADER_CONFLICT',
  'POLICY_SITE_NAME_INVALID',
  'POLICY_SITE_ALLOWS_NOTHING',
  'POLICY_SECRET_SOURCE',
  'POLICY_SECRET_UNREADABLE',
  'POLICY_SECRET_EMPTY',
  'POLICY_HEALTH_PATH_INVALID',
  'POLICY_DENY_STATUS',
] as const

/** Valid but risky: printed and logged as warnings; `validate --strict` makes them errors. */
export const POLICY_WARNING_CODES = [
  'POLICY_WARN_TRUSTS_ANY_PROXY',
  'POLICY_WARN_ANY_HOST',
  'POLICY_WARN_DRY_RUN',
  'POLICY_WARN_HEALTH_CHECK_ANY_PATH',
  'POLICY_WARN_CLIENT_ALLOW_EMPTY',
  'POLICY_WARN_SECRET_SHORT',
] as const

export type PolicyErrorCode =
  | (typeof POLICY_ERROR_CODES)[number]
  | (typeof POLICY_WARNING_CODES)[number]

function isWarning(code: PolicyErrorCode): boolean {
  return (POLICY_WARNING_CODES as readonly string[]).includes(code)
}

/** Where an error or warning is: file, 1-based line and column, and the field path (`sites.blog.allowedHosts[1]`). */
export interface SourcePos {
  readonly file: string
  readonly line: number
  readonly col: number
  readonly field: string
}

export class PolicyError extends Error {
  override name = 'PolicyError'
  readonly code: PolicyErrorCode
  readonly at: SourcePos
  readonly detail: string

  constructor(code: PolicyErrorCode, at: SourcePos, detail: string) {
    const kind = isWarning(code) ? 'warning: ' : ''
    super(`${at.file}:${at.line}:${at.col} ${at.field}: ${kind}${detail} [${code}]`)
    this.code = code
    this.at = at
    this.detail = detail
  }
}

/** A policy that failed to load, with every error found (never only the first). */
export class PolicyLoadError extends Error {
  override name = 'PolicyLoadError'
  readonly errors: readonly PolicyError[]

  constructor(errors: readonly PolicyError[]) {
    super(errors.map((e) => e.message).join('\n'))
    this.errors = errors
  }
}
