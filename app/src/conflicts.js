// What a merge left in disagreement (issue 20: two technicians on one job), read from the
// automerge document exactly as the Rust side reads it (shared/src/job/doc/coherence.rs,
// `unresolved`; shared/src/job/doc/competing.rs, `competing`), so the app lists the groups the
// edge's signer would refuse with `unresolved_conflict`, and resolves them as the SDK and the
// desk do (`JobDoc::resolve`).
//
// The rule (coherence.rs): the fields of a group (the work: fault cause, category, solution,
// labour; a part line's number, quantity, price and warranty) belong together. A group is
// torn when a field holds several different concurrent values (automerge's conflict), or when
// two of its fields were written by changes neither of which had the other in its history.
// Each value is shown with who wrote it: the change message's trailer `by: <technician>`
// (competing.rs `authored`), else what another change of the same actor says.
//
// Not here: possible duplicate parts (the app adds no part lines yet).

import { Automerge as A, ImmutableString } from "@automerge/automerge-repo/slim"

/** The work group's fields: (map at the root, key, name in a resolution). */
const WORK_FIELDS = [
  ["diagnosis", "fault_cause", "fault_cause"],
  ["diagnosis", "fault_category", "fault_category"],
  ["diagnosis", "solution", "solution"],
  ["labour", "minutes", "labour_minutes"],
  ["labour", "rate_per_hour", "labour_rate_per_hour"],
]
const PART_FIELDS = ["part_number", "quantity", "unit_price", "warranty"]

const TRAILER = "\nby: "
const authorIn = message => {
  const at = (message ?? "").lastIndexOf(TRAILER)
  const by = at < 0 ? "" : message.slice(at + TRAILER.length).trim()
  return by === "" ? null : by
}

/** A scalar as the comparison and the page use it: strings as strings, times as ms. */
function plain(type, value) {
  if (type === "timestamp") return value instanceof Date ? value.getTime() : Number(value)
  if (type === "str" || type === "text") return String(value)
  return value
}

/** The change graph and its authors, read once per document state. */
class History {
  constructor(doc) {
    this.byHash = new Map()
    this.byActor = new Map()
    this.authorOfActor = new Map()
    for (const m of A.getChangesMetaSince(doc, [])) {
      this.byHash.set(m.hash, m)
      if (!this.byActor.has(m.actor)) this.byActor.set(m.actor, [])
      this.byActor.get(m.actor).push(m)
      const by = authorIn(m.message)
      if (by && !this.authorOfActor.has(m.actor)) this.authorOfActor.set(m.actor, by)
    }
    this.ancestors = new Map()
  }

  /** The change that made op `opId` (`counter@actor`). */
  changeOf(opId) {
    const at = opId.indexOf("@")
    const counter = Number(opId.slice(0, at))
    return (this.byActor.get(opId.slice(at + 1)) ?? []).find(m => m.startOp <= counter && counter <= m.maxOp) ?? null
  }

  before(a, b) {
    let seen = this.ancestors.get(b)
    if (!seen) {
      seen = new Set()
      const todo = [...(this.byHash.get(b)?.deps ?? [])]
      while (todo.length > 0) {
        const h = todo.pop()
        if (seen.has(h)) continue
        seen.add(h)
        todo.push(...(this.byHash.get(h)?.deps ?? []))
      }
      this.ancestors.set(b, seen)
    }
    return seen.has(a)
  }

  ordered(a, b) {
    return a === b || this.before(a, b) || this.before(b, a)
  }

  /** A value with who wrote it and when (the writer's clock, advisory). */
  written(value, meta) {
    return {
      value,
      change: meta?.hash ?? "",
      by: authorIn(meta?.message) ?? (meta ? this.authorOfActor.get(meta.actor) ?? null : null),
      at: meta && meta.time > 0 ? meta.time * 1000 : null,
    }
  }

  /** Every value `key` holds in object `obj` (several when written concurrently). */
  writers(backend, obj, key) {
    if (!obj) return []
    const out = []
    for (const v of backend.getAll(obj, key)) {
      if (v[0] === "null") continue
      // A scalar is [type, value, op]; a text object ["text", its id] (the op that made it).
      const [value, op] = v[0] === "text" ? [backend.text(v[1]), v[1]] : [plain(v[0], v[1]), v[2]]
      const meta = op === undefined ? null : this.changeOf(String(op))
      if (meta) out.push({ value, meta })
    }
    return out
  }

  /** The paths of the fields breaking the rule (coherence.rs `History::torn`). */
  torn(fields) {
    const bad = fields.map(f => f.ws.some(w => w.value !== f.ws[0].value))
    for (let i = 0; i < fields.length; i += 1) {
      for (let j = i + 1; j < fields.length; j += 1) {
        const a = fields[i].ws
        const b = fields[j].ws
        if (a.length === 0 || b.length === 0) continue
        if (!a.some(x => b.some(y => this.ordered(x.meta.hash, y.meta.hash)))) bad[i] = bad[j] = true
      }
    }
    return fields.filter((_, i) => bad[i])
  }
}

/** Every torn group of the job `doc` (automerge-repo's `handle.doc()`), in the Rust side's
 *  order (work, then part lines in list order): `{group, code, rule, fields: [{field, key,
 *  values: [{value, by, at}]}]}`. */
export function unresolved(doc) {
  const history = new History(doc)
  const backend = A.getBackend(doc)
  const out = []
  const work = []
  for (const [map, key, name] of WORK_FIELDS) {
    const obj = doc[map] ? A.getObjectId(doc, map) : null
    if (obj) work.push({ field: `${map}.${key}`, key: name, ws: history.writers(backend, obj, key) })
  }
  const torn = history.torn(work)
  if (torn.length > 0) out.push(group(history, "work", "R7", torn))
  for (const line of doc.parts ?? []) {
    const id = line?.id?.toString()
    const obj = line ? A.getObjectId(line) : null
    if (!id || !obj) continue
    const fields = PART_FIELDS.map(key => ({ field: `parts[id=${id}].${key}`, key, ws: history.writers(backend, obj, key) }))
    const tornLine = history.torn(fields)
    if (tornLine.length > 0) out.push(group(history, `part:${id}`, "R10", tornLine))
  }
  return out
}

function group(history, name, rule, fields) {
  return {
    group: name,
    code: "unresolved_conflict",
    rule,
    fields: fields.map(f => ({
      field: f.field,
      key: f.key,
      // Distinct values, each with its first writer (the document's order).
      values: f.ws
        .filter((w, i) => f.ws.findIndex(x => x.value === w.value) === i)
        .map(w => history.written(w.value, w.meta)),
    })),
  }
}

const int = v => (typeof v === "number" ? v : Number(v ?? 0))
const text = v => (v === undefined || v === null ? null : v.toString())

/** Puts `value` under `key` in the change, deleting first so this change writes it (and ends
 *  a per-field conflict); `null` deletes it (coherence.rs `force`). */
function force(obj, key, value) {
  if (key in obj) delete obj[key]
  if (value !== null && value !== undefined) obj[key] = value
}

/** Resolves the work group as `JobDoc::resolve` does: every field of the group written in one
 *  change (`chosen` by the technician, the others as they read now), with the record of who,
 *  when and what under `resolutions` (its `values` the canonical JSON of `Resolution::Work`).
 *  Only paths a device may write (shared/src/authority.rs). */
export function resolveWork(handle, chosen, technician) {
  const now = handle.doc()
  const pick = (name, current) => (name in chosen ? chosen[name] : current)
  const resolution = {
    group: "work",
    fault_cause: pick("fault_cause", text(now.diagnosis?.fault_cause)),
    fault_category: pick("fault_category", text(now.diagnosis?.fault_category)),
    solution: pick("solution", text(now.diagnosis?.solution)),
    labour: {
      minutes: int(pick("labour_minutes", now.labour?.minutes)),
      rate_per_hour: int(pick("labour_rate_per_hour", now.labour?.rate_per_hour)),
    },
  }
  const id = Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, "0")).join("")
  const s = v => (v === null ? null : new ImmutableString(v))
  handle.change(d => {
    if (!d.diagnosis) d.diagnosis = {}
    force(d.diagnosis, "fault_cause", s(resolution.fault_cause))
    force(d.diagnosis, "fault_category", s(resolution.fault_category))
    force(d.diagnosis, "solution", s(resolution.solution))
    if (!d.labour) d.labour = {}
    force(d.labour, "minutes", resolution.labour.minutes)
    force(d.labour, "rate_per_hour", resolution.labour.rate_per_hour)
    if (!d.resolutions) d.resolutions = {}
    d.resolutions[id] = {
      group: new ImmutableString("work"),
      by: new ImmutableString(technician),
      at: new Date(),
      values: new ImmutableString(JSON.stringify(resolution)),
    }
  }, { message: `Resolve work (issue 15)${TRAILER}${technician}` })
  return id
}
