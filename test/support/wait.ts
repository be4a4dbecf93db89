/** Polls `probe` every 20 ms until it returns true; fails after `ms` milliseconds. */
export async function until(
  ms: number,
  probe: () => boolean | Promise<boolean>,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if (
      await Promise.resolve()
        .then(probe)
        .catch(() => false)
    )
      return
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
