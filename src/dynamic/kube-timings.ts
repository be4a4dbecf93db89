// How long the Kubernetes sources wait and retry: apart from k8s-nodes.ts, which loads
// @kubernetes/client-node and is itself loaded only by a policy with a Kubernetes source.

/** How long Kubernetes calls may take, and how retries back off. */
export interface KubeTimings {
  /** The first retry delay after a failed list or watch; it doubles up to retryMaxMs. */
  readonly retryInitialMs: number
  readonly retryMaxMs: number
  /** A list that has not answered by then failed (a hung or unreachable API server). */
  readonly listTimeoutMs: number
  /**
   * A watch silent for this long is given up and counts as failed: the API server is asked to
   * end every watch within WATCH_TIMEOUT_SECONDS, so silence past it means a dead connection.
   */
  readonly watchIdleMs: number
}

/** Asked of the API server for every watch; it then ends it cleanly and the watch resumes. */
export const WATCH_TIMEOUT_SECONDS = 300

export const DEFAULT_KUBE_TIMINGS: KubeTimings = {
  retryInitialMs: 500,
  retryMaxMs: 30_000,
  listTimeoutMs: 30_000,
  watchIdleMs: (WATCH_TIMEOUT_SECONDS + 60) * 1000,
}
