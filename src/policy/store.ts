import type { CompiledPolicy } from '../decision/types.js'

/**
 * The policy in force. A reload builds the next policy off to the side and swaps it in with one
 * assignment, so each request, reading `current` once, sees exactly one policy.
 */
export class PolicyStore {
  #current: CompiledPolicy | undefined

  get current(): CompiledPolicy | undefined {
    return this.#current
  }

  swap(next: CompiledPolicy): void {
    this.#current = next
  }
}
