// Kubernetes label selector syntax (apimachinery labels.Parse): requirements joined by commas,
// each `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (v, …)`, `key notin (v, …)`, `key>N`, `key<N`.
const LABEL_NAME = '[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?'
const LABEL_KEY = `([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?${LABEL_NAME}`
const LABEL_VALUE = `(${LABEL_NAME})?`
const REQUIREMENT = new RegExp(
  `^\\s*(!?\\s*${LABEL_KEY}|${LABEL_KEY}\\s*(==?|!=)\\s*${LABEL_VALUE}|${LABEL_KEY}\\s+(in|notin)\\s*\\(\\s*${LABEL_NAME}(\\s*,\\s*${LABEL_NAME})*\\s*\\)|${LABEL_KEY}\\s*[<>]\\s*-?[0-9]+)\\s*$`,
)

/** Whether `selector` is a label selector the API server accepts; "" selects every Node. */
export function isLabelSelector(selector: string): boolean {
  if (selector.trim() === '') return true
  // Commas inside `in (…)` belong to the value list, not to the requirement list.
  const requirements = selector.match(/([^,(]|\([^)]*\))+/g) ?? []
  const rejoined = requirements.join(',')
  return rejoined === selector && requirements.every((r) => REQUIREMENT.test(r))
}
