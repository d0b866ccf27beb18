// The technician's app (issue 20): enrollment by the desk's one-time code, then the jobs of
// the technician's assignment index, kept on the device by automerge-repo's IndexedDB storage
// and synced with the edge over its WebSocket (`/sync?token=`) whenever there is a network.
//
// What it writes is only what a device may (ARCHITECTURE.md, "The technician's app"): the
// server's write authority (shared/src/authority*) refuses anything else with an `error`
// message, which the app shows.

import { ImmutableString, Repo, cbor, decodeHeads, initializeWasm } from "@automerge/automerge-repo/slim"
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

import { hex, jobDigest, sha256Hex, signAcknowledgement } from "./ack.js"
import * as device from "./device.js"
import { has, language, setLanguage, t } from "./i18n.js"
import { jobJson, missingBeforeSigning } from "./job.js"
import { resolveWork, unresolved } from "./conflicts.js"
import { reportView } from "./report.js"
import * as visitSteps from "./visit.js"

/** What the page shows, in one place: `render()` draws it. */
const state = {
  screen: "loading", // loading | enroll | jobs | job | sign
  openJob: null, // the url of the job shown on the "job" screen
  identity: null,
  revoked: false,
  connected: false,
  enrollError: null,
  busy: false,
  indexReady: false,
  jobs: new Map(), // url -> {handle, error, heads, summary}
  jobOrder: [],
  // url -> the job's row as last drawn from its document ({id, customer, product, stage,
  // sync}), kept in IndexedDB: the list is drawn from these at start, before automerge's
  // WebAssembly and the 200 documents are loaded, and each row is replaced once its
  // document is here (issue 20's start-up figure; the Rust SDK keeps summaries likewise).
  summaries: new Map(),
  serverHeads: new Map(), // documentId -> heads the server was last seen holding
  stored: new Set(), // documentIds flushed to IndexedDB
  errors: [],
  missing: null, // what the open job lacks before signing, once asked (`request completion`)
  pendingCompletion: new Set(), // documentIds whose completion waits for the upload
  chosen: new Map(), // "<job> <group> <field key>" -> the index of the value kept (conflicts)
}

/** The customer's signing, kept across redraws (a sync can redraw at any moment): the
 *  report's language, the pad's strokes, the name and the survey as filled in. */
let signing = null

let repo = null
let adapter = null
let serverStorageId = null

const $ = selector => document.querySelector(selector)

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (name === "text") node.textContent = value
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value)
    else node.setAttribute(name, value === true ? "" : String(value))
  }
  for (const child of children) if (child) node.append(child)
  return node
}

/** A scalar the Rust side writes as a string (automerge gives an ImmutableString). */
const str = value => (value === undefined || value === null ? "" : value.toString())

/** Where a job stands, in the board's terms (server/src/edge/board.rs, `Facts::stage`). */
export function stage(doc) {
  if ((doc.timeline ?? []).some(e => str(e?.kind) === "cancelled")) return "cancelled"
  const ms = value => (value instanceof Date ? value.getTime() : typeof value === "number" ? value : null)
  const requested = doc.completion ? ms(doc.completion.at) : null
  const answered = doc.report ? ms(doc.report.at) : null
  if (requested !== null && (answered === null || answered < requested)) return "completed"
  const report = doc.report ? str(doc.report.status) : ""
  if (report === "signed") return "signed"
  if (report === "refused") return "refused"
  if (doc.visit?.arrival) return "on_site"
  if (doc.visit?.appointment) return "assigned"
  return "new"
}

/** Whether the server was last seen holding every change this device has of the job
 *  (`entry.heads`: the handle's heads as of its last change; `handle.heads()` encodes them
 *  afresh on every call, too slow for a list of 200 jobs on every redraw). */
function syncState(entry) {
  const ours = entry.heads ?? []
  const theirs = state.serverHeads.get(entry.handle.documentId)
  if (!theirs) return "never_synced"
  return ours.every(h => theirs.includes(h)) ? "synced" : "unsynced"
}

/** A redraw once per frame, for what the network and storage change (a job arriving, the
 *  server's heads): with 200 jobs they come by the hundred, and each full redraw costs. What
 *  a person does redraws at once (`render`). */
let drawQueued = false
function renderSoon() {
  if (drawQueued) return
  drawQueued = true
  requestAnimationFrame(() => {
    drawQueued = false
    render()
  })
}

function render() {
  document.documentElement.lang = language() === "zh" ? "zh-CN" : "en"
  document.title = t("title")
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t)
  $("#lang").textContent = t("switch_to")
  const net = $("#net")
  const online = navigator.onLine
  const enrolled = state.identity !== null
  net.dataset.state = state.revoked ? "revoked" : !online ? "offline" : !enrolled ? "not_enrolled" : state.connected ? "online" : "connecting"
  net.textContent = t(net.dataset.state)
  const main = $("#main")
  // What the technician is typing survives a redraw (a sync can come in at any moment).
  const drafts = {}
  for (const node of main.querySelectorAll("input, textarea")) {
    if (node.id && node.value !== node.defaultValue) drafts[node.id] = node.value
  }
  const focused = document.activeElement?.id
  const selection = [document.activeElement?.selectionStart, document.activeElement?.selectionEnd]
  main.replaceChildren(...screen())
  for (const [id, value] of Object.entries(drafts)) {
    const node = document.getElementById(id)
    if (node) node.value = value
  }
  const again = focused ? document.getElementById(focused) : null
  if (again && main.contains(again)) {
    again.focus()
    if (typeof selection[0] === "number" && "setSelectionRange" in again) again.setSelectionRange(...selection)
  }
}

function screen() {
  if (state.screen === "loading") return [el("p", { id: "loading", text: t("loading") })]
  if (state.screen === "enroll") return enrollScreen()
  if (state.screen === "job") return jobScreen()
  if (state.screen === "sign") return signScreen()
  return jobsScreen()
}

function enrollScreen() {
  const form = el(
    "form",
    { id: "enroll", onsubmit: onEnroll },
    el("h2", { text: t("enroll_heading") }),
    el("p", { class: "help", text: t("enroll_help") }),
    el("label", { for: "code", text: t("code_label") }),
    el("input", {
      id: "code",
      name: "code",
      autocomplete: "one-time-code",
      autocapitalize: "characters",
      spellcheck: "false",
      inputmode: "text",
      placeholder: "XXXX-XXXX-XXXX",
      required: true,
    }),
    el("button", { type: "submit", class: "primary", disabled: state.busy, text: state.busy ? t("enrolling") : t("enroll_button") }),
  )
  if (state.enrollError) form.append(el("p", { id: "enroll-error", class: "error", role: "alert", text: state.enrollError }))
  return [form]
}

function jobsScreen() {
  const out = [el("p", { id: "who", class: "who", text: t("device_line", { device: state.identity.deviceId, technician: state.identity.technician }) })]
  if (state.revoked) out.push(el("p", { id: "revoked", class: "revoked-help", role: "alert", text: t("revoked_help") }))
  for (const message of state.errors) out.push(el("p", { class: "error server-error", role: "alert", text: t("server_error", { message }) }))
  out.push(el("h2", { text: t("jobs_heading") }))
  if (!state.identity.indexUrl) {
    out.push(el("p", { id: "no-index", text: t("no_index") }))
    return out
  }
  if (!state.indexReady) {
    out.push(el("p", { text: t("loading") }))
    return out
  }
  if (state.jobOrder.length === 0) {
    out.push(el("p", { id: "no-jobs", text: t("no_jobs") }))
    return out
  }
  const list = el("ul", { id: "jobs" })
  for (const url of state.jobOrder) {
    const entry = state.jobs.get(url)
    const row = entry?.summary ?? state.summaries.get(url)
    if (!row) {
      list.append(el("li", { class: "job loading", "data-url": url, text: entry?.error ? t("job_unreadable") : t("job_loading") }))
      continue
    }
    list.append(
      el(
        "li",
        {
          class: "job",
          "data-job": row.id,
          "data-stage": row.stage,
          "data-sync": row.sync,
          "data-stored": String(state.stored.has(row.id)),
          // Drawn from the summary kept on the device, its document not loaded yet.
          "data-from": entry?.summary ? "document" : "summary",
          role: "button",
          tabindex: "0",
          onclick: () => openJob(url),
          onkeydown: e => (e.key === "Enter" || e.key === " ") && openJob(url),
        },
        el("div", { class: "customer", text: row.customer }),
        el("div", { class: "product", text: [t(`kind_${row.kind}`), row.model, row.serial].filter(Boolean).join(" · ") }),
        el("div", { class: "facts" },
          el("span", { class: `stage stage-${row.stage}`, text: t(`status_${row.stage}`) }),
          el("span", { class: `sync sync-${row.sync}`, text: t(row.sync) }),
        ),
      ),
    )
  }
  out.push(list)
  return out
}

function openJob(url) {
  state.openJob = url
  state.screen = "job"
  history.pushState({ job: url }, "", `#job`)
  render()
  scrollTo(0, 0)
}

addEventListener("popstate", () => {
  if (state.screen === "sign") {
    state.screen = "job"
    render()
  } else if (state.screen === "job") {
    state.screen = "jobs"
    state.missing = null
    render()
  }
})

const when = date => (date instanceof Date ? date.toLocaleString(language() === "zh" ? "zh-CN" : "en-GB") : "")

function jobScreen() {
  const entry = state.jobs.get(state.openJob)
  if (!entry?.handle) return jobsScreen()
  const handle = entry.handle
  const doc = handle.doc()
  const at = stage(doc)
  const sync = syncState(entry)
  const out = [el("button", { type: "button", id: "back", class: "back", onclick: () => history.back(), text: t("back") })]
  for (const message of state.errors) out.push(el("p", { class: "error server-error", role: "alert", text: t("server_error", { message }) }))
  out.push(
    el("section", { id: "job", "data-job": handle.documentId, "data-stage": at, "data-sync": sync, "data-heads": decodeHeads(handle.heads()).sort().join(" ") },
      el("h2", { text: str(doc.customer?.name) }),
      el("div", { class: "facts" },
        el("span", { class: `stage stage-${at}`, text: t(`status_${at}`) }),
        el("span", { class: `sync sync-${sync}`, text: t(sync) }),
      ),
      el("dl", {},
        el("dt", { text: t("fault") }), el("dd", { text: str(doc.request?.fault_description) }),
        el("dt", { text: t("site") }), el("dd", { text: str(doc.customer?.site_address) }),
      ),
    ),
  )
  const conflicts = conflictSection(handle)
  if (conflicts) out.push(conflicts)
  // R3 the appointment call, R32 the safety briefing (visit.js).
  const steps = visitContext()
  out.push(...visitSteps.beforeArrival(steps, handle, doc, at))
  // R2: arrival.
  const arrival = doc.visit?.arrival
  out.push(
    el("section", { class: "step", id: "step-arrival" },
      el("h3", { text: t("arrival") }),
      arrival
        ? el("p", { id: "arrived", text: t("arrived_at", { time: when(arrival) }) })
        : el("button", { type: "button", id: "arrive", class: "primary", onclick: () => visit.arrive(handle), text: t("arrive_button") }),
    ),
  )
  // R7: the fault cause and the solution, scalar strings as the schema has them.
  const cause = el("textarea", { id: "fault-cause", rows: "3" })
  cause.defaultValue = str(doc.diagnosis?.fault_cause)
  const solution = el("textarea", { id: "solution", rows: "3" })
  solution.defaultValue = str(doc.diagnosis?.solution)
  out.push(
    el("form", { class: "step", id: "step-diagnosis", onsubmit: e => { e.preventDefault(); visit.diagnosis(handle, cause.value, solution.value) } },
      el("h3", {}, el("label", { for: "fault-cause", text: t("fault_cause") })),
      cause,
      el("h3", {}, el("label", { for: "solution", text: t("solution") })),
      solution,
      el("button", { type: "submit", class: "primary", text: t("save") }),
    ),
  )
  // R7: the customer's opinion.
  const opinion = el("textarea", { id: "customer-opinion", rows: "2" })
  opinion.defaultValue = str(doc.customer_opinion)
  out.push(
    el("form", { class: "step", id: "step-opinion", onsubmit: e => { e.preventDefault(); visit.opinion(handle, opinion.value) } },
      el("h3", {}, el("label", { for: "customer-opinion", text: t("customer_opinion") })),
      opinion,
      el("button", { type: "submit", class: "primary", text: t("save") }),
    ),
  )
  // Parts, labour and travel, photos, R16 training, approvals and R28 expenses (visit.js).
  out.push(...visitSteps.onSite(steps, handle, doc, at))
  // R11: check-out with the desk.
  const checkOut = doc.visit?.check_out
  const note = el("textarea", { id: "check-out-note", rows: "2" })
  out.push(
    checkOut
      ? el("section", { class: "step", id: "step-check-out" },
          el("h3", { text: t("check_out") }),
          el("p", { id: "checked-out", text: t("checked_out_at", { time: when(checkOut.at) }) }),
          el("p", { text: str(checkOut.note) }),
        )
      : el("form", { class: "step", id: "step-check-out", onsubmit: e => { e.preventDefault(); visit.checkOut(handle, note.value) } },
          el("h3", {}, el("label", { for: "check-out-note", text: t("check_out_note") })),
          note,
          el("button", { type: "submit", class: "primary", text: t("check_out_button") }),
        ),
  )
  out.push(completionStep(handle, doc))
  return out
}

/** R8, R9, R13: `request completion`, the customer's signature and the branch's answer. */
function completionStep(handle, doc) {
  const id = handle.documentId
  const section = el("section", { class: "step", id: "step-completion" }, el("h3", { text: t("completion_heading") }))
  const ack = doc.acknowledgement
  if (ack) {
    section.append(el("p", { id: "acknowledged", text: t("signed_by", { name: str(ack.signer_name), time: when(ack.signed_at) }) }))
  }
  const at = stage(doc)
  const report = doc.report
  if (state.pendingCompletion.has(id)) {
    section.append(el("p", { id: "outcome", "data-outcome": "waiting_upload", text: t("waiting_upload") }))
  } else if (at === "completed") {
    section.append(el("p", { id: "outcome", "data-outcome": "waiting", text: t("waiting_report") }))
  } else if (at === "signed") {
    section.append(el("p", { id: "outcome", class: "signed", "data-outcome": "signed", "data-report": str(report.report_id), text: t("report_signed", { id: str(report.report_id) }) }))
  } else if (at === "refused") {
    const reasons = el("ul", { id: "refusal-reasons" })
    for (const r of report.reasons ?? []) {
      const code = str(r.code)
      // In words: ours where the code is known, else the server's own message.
      reasons.append(el("li", { "data-code": code, text: `${str(r.rule)} · ${has(code) ? t(code) : str(r.message)}` }))
    }
    section.append(el("div", { id: "outcome", class: "error", "data-outcome": "refused" }, el("p", { text: t("report_refused") }), reasons))
  }
  if (state.missing && state.missing.id === id && state.missing.items.length > 0) {
    const list = el("ul", { id: "missing" })
    for (const m of state.missing.items) list.append(el("li", { "data-code": m.code, text: `${m.rule} · ${t(m.code, m.vars)}` }))
    section.append(el("div", { class: "error", role: "alert" }, el("p", { text: t("missing_heading") }), list))
  }
  const open = at !== "completed" && at !== "signed" && at !== "cancelled" && !state.pendingCompletion.has(id)
  if (open) {
    const again = ack && at === "refused"
    section.append(
      el("button", {
        type: "button",
        id: "request-completion",
        class: "primary",
        onclick: () => void requestCompletion(handle),
        text: t(again ? "request_again" : "request_completion"),
      }),
    )
  }
  return section
}

/** What visit.js's steps need from here: how to draw, who writes, what to redo after a write. */
function visitContext() {
  return {
    el,
    str,
    when,
    technician: state.identity.technician,
    message: visit.message,
    render,
    flushPending,
    refreshMissing(handle) {
      if (state.missing) state.missing.items = beforeSigning(handle)
    },
  }
}

/** What a merge left in disagreement in the job (conflicts.js), read once per state. */
const conflictMemo = new Map() // documentId -> {heads, groups}
function conflictsOf(handle) {
  const heads = handle.heads().join(",")
  const known = conflictMemo.get(handle.documentId)
  if (known?.heads === heads) return known.groups
  const groups = unresolved(handle.doc())
  conflictMemo.set(handle.documentId, { heads, groups })
  return groups
}

/** Before signing: what the job lacks, then every unresolved group (the edge's signer
 *  refuses them with `unresolved_conflict`). */
function beforeSigning(handle) {
  const items = missingBeforeSigning(jobJson(handle.doc()))
  for (const g of conflictsOf(handle)) items.push({ rule: g.rule, code: g.code, vars: {}, group: g.group })
  return items
}

/** The conflict section of the job screen: each group in disagreement, every value of each
 *  field in words with who wrote it and when, a choice per field, and `keep` that writes the
 *  group as `JobDoc::resolve` does (a part line is the desk's). */
function conflictSection(handle) {
  const groups = conflictsOf(handle)
  if (groups.length === 0) return null
  const id = handle.documentId
  const section = el("section", { class: "step conflict", id: "conflicts", role: "alert" },
    el("h3", { text: t("conflict_heading") }),
    el("p", { class: "help", text: t("conflict_help") }),
  )
  for (const g of groups) {
    const current = handle.doc()
    const form = el("form", { class: "conflict-group", "data-group": g.group })
    if (g.group.startsWith("part:")) form.append(el("p", { text: t("conflict_part", { line: g.group.slice(5) }) }))
    for (const f of g.fields) {
      const name = `${id} ${g.group} ${f.key}`
      // What the field reads as now (automerge's pick) is chosen until the technician picks.
      const reads = readField(current, f.field)
      const picked = state.chosen.get(name) ?? Math.max(0, f.values.findIndex(v => v.value === reads))
      const set = el("fieldset", { class: "conflict-field", "data-field": f.field }, el("legend", { text: t(`field_${f.key}`) }))
      f.values.forEach((v, i) => {
        const input = el("input", {
          type: "radio",
          name,
          id: `conflict-${g.group}-${f.key}-${i}`,
          value: String(i),
          checked: i === picked,
          onchange: () => state.chosen.set(name, i),
        })
        const who = v.by ? t("written_by", { by: v.by, time: v.at ? when(new Date(v.at)) : "" }) : t("written_by_someone")
        set.append(el("label", { class: "conflict-value", "data-by": v.by ?? "", for: input.id }, input,
          el("span", { class: "value", text: v.value === "" || v.value === null ? t("empty_value") : String(v.value) }),
          el("span", { class: "by", text: who }),
        ))
      })
      form.append(set)
    }
    if (g.group === "work") {
      form.append(el("button", { type: "submit", class: "primary", id: "keep-work", text: t("keep_chosen") }))
      form.addEventListener("submit", e => {
        e.preventDefault()
        const chosen = {}
        for (const f of g.fields) {
          const i = Number(form.querySelector(`input[name="${id} ${g.group} ${f.key}"]:checked`)?.value ?? 0)
          chosen[f.key] = f.values[i]?.value ?? null
        }
        resolveWork(handle, chosen, state.identity.technician)
        for (const key of [...state.chosen.keys()]) if (key.startsWith(`${id} work `)) state.chosen.delete(key)
        if (state.missing?.id === id) state.missing.items = beforeSigning(handle)
        render()
      })
    } else {
      form.append(el("p", { class: "help", text: t("conflict_part_desk") }))
    }
    section.append(form)
  }
  return section
}

/** A field of the conflict list (`diagnosis.fault_cause`, `parts[id=…].quantity`) as it reads. */
function readField(doc, path) {
  const line = /^parts\[id=(.*)\]\.(\w+)$/.exec(path)
  const value = line
    ? (doc.parts ?? []).find(p => str(p?.id) === line[1])?.[line[2]]
    : path.split(".").reduce((o, k) => o?.[k], doc)
  if (value instanceof Date) return value.getTime()
  return typeof value === "number" || typeof value === "boolean" ? value : value === undefined || value === null ? null : str(value)
}

/** `request completion`: with no acknowledgement, or one the job no longer matches (it
 *  changed after the customer signed, e.g. the desk's edit merged in), the customer is asked
 *  to sign (again); with a matching one, the branch is asked again (after a refusal). */
async function requestCompletion(handle) {
  const ack = handle.doc().acknowledgement
  if (ack && (await jobDigest(jobJson(handle.doc()))) === str(ack.job_digest)) {
    visit.requestCompletion(handle)
    return
  }
  askToSign(handle)
}

/** Before the signature: every missing item listed, in words, or the report for the
 *  customer to read and sign. */
function askToSign(handle) {
  const items = beforeSigning(handle)
  state.missing = { id: handle.documentId, items }
  if (items.length === 0) {
    signing = {
      url: state.openJob,
      lang: language(),
      strokes: [],
      name: "",
      survey: { attitude: null, skill: null, punctuality: null, service_items: null },
      suggestions: "",
      problems: [],
      busy: false,
      pad: null,
    }
    state.screen = "sign"
    history.pushState({ sign: state.openJob }, "", "#sign")
    render()
    scrollTo(0, 0)
    return
  }
  render()
  document.getElementById("missing")?.scrollIntoView({ block: "center" })
}

/** The signature pad: one canvas kept across redraws, strokes captured from pointer events
 *  (finger, pen or mouse) as integer device pixels, as the acknowledgement's mark has them. */
function signaturePad() {
  if (signing.pad) return signing.pad
  const ratio = Math.max(1, Math.round(devicePixelRatio || 1))
  const canvas = el("canvas", { id: "signature-pad", "aria-label": t("signature_label") })
  const width = Math.min(600, document.documentElement.clientWidth - 60)
  const height = 180
  canvas.style.width = `${width}px`
  canvas.style.height = `${height}px`
  canvas.width = width * ratio
  canvas.height = height * ratio
  const ctx = canvas.getContext("2d")
  ctx.fillStyle = "#fff"
  ctx.fillRect(0, 0, canvas.width, canvas.height)
  ctx.lineWidth = 2.5 * ratio
  ctx.lineCap = "round"
  ctx.lineJoin = "round"
  ctx.strokeStyle = "#111"
  let current = null
  const point = e => {
    const box = canvas.getBoundingClientRect()
    return [Math.round((e.clientX - box.left) * ratio), Math.round((e.clientY - box.top) * ratio)]
  }
  canvas.addEventListener("pointerdown", e => {
    e.preventDefault()
    clearProblems()
    canvas.setPointerCapture?.(e.pointerId)
    current = [point(e)]
    signing.strokes.push(current)
    ctx.beginPath()
    ctx.moveTo(...current[0])
    ctx.lineTo(current[0][0] + 0.1, current[0][1])
    ctx.stroke()
  })
  canvas.addEventListener("pointermove", e => {
    if (!current) return
    e.preventDefault()
    const p = point(e)
    const last = current[current.length - 1]
    if (p[0] === last[0] && p[1] === last[1]) return
    current.push(p)
    ctx.beginPath()
    ctx.moveTo(...last)
    ctx.lineTo(...p)
    ctx.stroke()
  })
  const end = () => {
    current = null
  }
  canvas.addEventListener("pointerup", end)
  canvas.addEventListener("pointercancel", end)
  const clear = () => {
    signing.strokes = []
    ctx.fillStyle = "#fff"
    ctx.fillRect(0, 0, canvas.width, canvas.height)
  }
  signing.pad = { canvas, clear }
  return signing.pad
}

/** The refusal of an unsigned attempt goes once the customer writes or signs (no redraw:
 *  the field being typed in keeps its focus). */
function clearProblems() {
  signing.problems = []
  for (const node of document.querySelectorAll(".sign-problem")) node.remove()
}

function signScreen() {
  const entry = state.jobs.get(signing?.url)
  // Signed (or given up): the job screen, until the way back arrives.
  if (!entry?.handle) return jobScreen()
  const handle = entry.handle
  const job = jobJson(handle.doc())
  const out = [el("button", { type: "button", id: "back", class: "back", onclick: () => history.back(), text: t("cancel") })]
  for (const message of state.errors) out.push(el("p", { class: "error server-error", role: "alert", text: t("server_error", { message }) }))
  out.push(el("h2", { text: t("sign_heading") }))
  // The report in the customer's language, whatever the app is read in.
  const languages = el("div", { class: "report-lang", role: "group", "aria-label": t("report_language") }, el("span", { text: t("report_language") }))
  for (const [lang, label] of [["zh", "中文"], ["en", "English"]]) {
    languages.append(
      el("button", {
        type: "button",
        id: `report-lang-${lang}`,
        class: signing.lang === lang ? "chosen" : undefined,
        "aria-pressed": String(signing.lang === lang),
        onclick: () => {
          signing.lang = lang
          render()
        },
        text: label,
      }),
    )
  }
  out.push(languages, reportView(job, signing.lang, el))
  const pad = signaturePad()
  const form = el(
    "form",
    { class: "step", id: "sign-form", onsubmit: e => { e.preventDefault(); void sign(handle) } },
    el("h3", { text: t("signature_label") }),
    pad.canvas,
    el("button", { type: "button", id: "clear-signature", class: "secondary", onclick: () => pad.clear(), text: t("clear_signature") }),
    el("label", { for: "signer-name", text: t("signer_name") }),
  )
  const name = el("input", {
    id: "signer-name",
    class: "plain",
    autocomplete: "name",
    oninput: e => {
      signing.name = e.target.value
      clearProblems()
    },
  })
  name.value = signing.name
  form.append(name, el("h3", { text: t("survey_heading") }))
  for (const question of ["attitude", "skill", "punctuality", "service_items"]) {
    const group = el("fieldset", { class: "survey", id: `survey-${question}` }, el("legend", { text: t(`survey_${question}`) }))
    for (const score of [1, 2, 3, 4, 5, null]) {
      const chosen = signing.survey[question] === score
      group.append(
        el("button", {
          type: "button",
          class: chosen ? "score chosen" : "score",
          "data-score": score === null ? "none" : String(score),
          "aria-pressed": String(chosen),
          onclick: () => {
            signing.survey[question] = score
            render()
          },
          text: score === null ? t("not_answered") : String(score),
        }),
      )
    }
    form.append(group)
  }
  const suggestions = el("textarea", { id: "suggestions", rows: "2", oninput: e => (signing.suggestions = e.target.value) })
  suggestions.value = signing.suggestions
  form.append(el("label", { for: "suggestions", text: t("suggestions") }), suggestions)
  for (const problem of signing.problems) form.append(el("p", { class: "error sign-problem", role: "alert", text: problem }))
  form.append(el("button", { type: "submit", id: "sign", class: "primary", disabled: signing.busy, text: signing.busy ? t("signing") : t("sign_button") }))
  out.push(form)
  return out
}

/** The canvas as PNG bytes. */
function padPng(canvas) {
  return new Promise((resolve, reject) =>
    canvas.toBlob(blob => (blob ? blob.arrayBuffer().then(b => resolve(new Uint8Array(b)), reject) : reject(new Error("no PNG"))), "image/png"),
  )
}

const sameHeads = (a, b) => a.length === b.length && a.every(h => b.includes(h))

/** The customer signs: the pad's image kept and attached (kind `signature`, as the SDK's
 *  `attach`), then the device signs the acknowledgement over the job as it is now, with
 *  the strokes as the mark (docs/REPORT-FORMAT.md §4), and asks for completion once the
 *  image has reached the branch. */
async function sign(handle) {
  signing.problems = []
  if (signing.name.trim() === "") signing.problems.push(t("need_signer_name"))
  if (!signing.strokes.some(s => s.length > 0)) signing.problems.push(t("need_signature"))
  if (signing.problems.length > 0 || signing.busy) {
    render()
    return
  }
  signing.busy = true
  render()
  try {
    const id = handle.documentId
    const technician = state.identity.technician
    const png = await padPng(signing.pad.canvas)
    const digest = await sha256Hex(png)
    await device.keepBlob(id, digest, png)
    if (!handle.doc().attachments?.[digest]) {
      handle.change(d => {
        if (!d.attachments) d.attachments = {}
        d.attachments[digest] = {
          kind: new ImmutableString("signature"),
          media_type: new ImmutableString("image/png"),
          size: png.length,
          name: new ImmutableString("signature.png"),
          at: new Date(),
          by: new ImmutableString(technician),
        }
      }, visit.message("Attach signature image (R8)"))
    }
    const draft = {
      signer_name: signing.name.trim(),
      signature: { type: "strokes", strokes: signing.strokes.filter(s => s.length > 0) },
      signed_at: Date.now(),
      survey: { ...signing.survey, suggestions: signing.suggestions.trim() },
    }
    // Signed over the heads it was read at; written only if nothing came in meanwhile.
    for (let attempt = 0; ; attempt += 1) {
      const heads = decodeHeads(handle.heads())
      const job = jobJson(handle.doc())
      const missing = beforeSigning(handle)
      if (missing.length > 0) {
        state.missing = { id, items: missing }
        signing = null
        history.back() // to the job, which lists them
        return
      }
      const ack = await signAcknowledgement(job, heads, draft, state.identity.deviceId, state.identity.keys.privateKey)
      if (!sameHeads(heads, decodeHeads(handle.heads()))) {
        if (attempt < 5) continue
        throw new Error("the job keeps changing: sign again")
      }
      handle.change(d => {
        d.acknowledgement = acknowledgementValue(ack)
      }, visit.message("Record acknowledgement (R8, R9)"))
      break
    }
    state.pendingCompletion.add(id)
    await device.put("pendingCompletion", [...state.pendingCompletion])
    signing = null
    state.missing = null
    history.back() // to the job, which shows the outcome
    void flushPending()
  } catch (e) {
    signing.busy = false
    signing.problems.push(String(e?.message ?? e))
    render()
  }
}

/** The acknowledgement as the Rust SDK writes it (`schema::write_acknowledgement`): strings
 *  as scalar strings, `signed_at` a timestamp, points and scores integers, and a score not
 *  answered no key at all. */
function acknowledgementValue(ack) {
  const survey = { suggestions: new ImmutableString(ack.survey.suggestions) }
  for (const name of ["attitude", "skill", "punctuality", "service_items"]) {
    if (ack.survey[name] !== undefined) survey[name] = ack.survey[name]
  }
  return {
    signer_name: new ImmutableString(ack.signer_name),
    signature: { type: new ImmutableString("strokes"), strokes: ack.signature.strokes },
    signed_at: new Date(ack.signed_at),
    survey,
    device_id: new ImmutableString(ack.device_id),
    job_digest: new ImmutableString(ack.job_digest),
    heads: ack.heads.map(h => new ImmutableString(h)),
    device_signature: new ImmutableString(ack.device_signature),
  }
}

/** Uploads the pending attachments, then asks for completion of every job waiting for them
 *  (the branch refuses a report while a referenced image has not reached it). */
let flushing = false
async function flushPending() {
  if (flushing || !navigator.onLine || state.revoked || !repo) return
  flushing = true
  try {
    const token = await currentToken()
    if (!token) return
    const outcomes = await device.uploadPending(token)
    await visitSteps.notePending()
    for (const o of outcomes) if (!o.uploaded && o.code !== "unreachable") state.errors.push(`${o.code}: ${o.message}`)
    const waiting = new Set((await device.pendingBlobs()).map(p => p.job))
    for (const id of [...state.pendingCompletion]) {
      if (waiting.has(id)) continue
      const entry = [...state.jobs.values()].find(e => e.handle?.documentId === id)
      if (!entry) continue
      visit.requestCompletion(entry.handle)
      state.pendingCompletion.delete(id)
    }
    await device.put("pendingCompletion", [...state.pendingCompletion])
  } finally {
    flushing = false
    render()
  }
}

/** The visit's steps, written exactly as the Rust SDK writes them (shared/src/job/doc.rs:
 *  `set_arrival`, `set_fault_cause`, `check_out`): the same paths and value types (times as
 *  automerge timestamps, strings as scalar strings, a check-out as a whole new map), and the
 *  same change message with the author trailer (`job::doc::competing::authored`), so the
 *  desk's conflict view can say who wrote what. Only paths a device may write. */
const visit = {
  message(text) {
    return { message: `${text}\nby: ${state.identity.technician}` }
  },
  arrive(handle) {
    handle.change(d => {
      d.visit.arrival = new Date()
    }, visit.message("Set visit.arrival (R2)"))
  },
  diagnosis(handle, cause, solution) {
    visit.text(handle, ["diagnosis", "fault_cause"], cause)
    visit.text(handle, ["diagnosis", "solution"], solution)
  },
  opinion(handle, text) {
    visit.text(handle, ["customer_opinion"], text)
  },
  /** One scalar string field (R7), written only when it changed; empty clears it. */
  text(handle, path, text) {
    const value = text.trim()
    const parent = d => path.slice(0, -1).reduce((o, k) => o[k], d)
    const key = path[path.length - 1]
    if (value === str(parent(handle.doc())?.[key])) return
    handle.change(d => {
      if (value === "") delete parent(d)[key]
      else parent(d)[key] = new ImmutableString(value)
    }, visit.message(`${value === "" ? "Clear" : "Set"} ${path.join(".")} (R7)`))
    if (state.missing) state.missing.items = beforeSigning(handle)
  },
  /** Asks the branch to sign the report (`Job::completion`, as the SDK's
   *  `request_completion`): once the customer signed and the image reached the branch. */
  requestCompletion(handle) {
    // After the branch's answer by its clock, whatever this phone's: the signer takes a
    // request no later than its last answer for answered.
    const answered = handle.doc().report?.at
    const after = answered instanceof Date ? answered.getTime() + 1 : 0
    handle.change(d => {
      d.completion = { at: new Date(Math.max(Date.now(), after)), by: new ImmutableString(state.identity.technician) }
    }, visit.message("Request completion"))
  },
  checkOut(handle, note) {
    handle.change(d => {
      d.visit.check_out = {
        at: new Date(),
        by: new ImmutableString(state.identity.technician),
        note: new ImmutableString(note.trim()),
      }
    }, visit.message("Record visit.check_out (R11)"))
    if (state.missing) state.missing.items = beforeSigning(handle)
  },
}

async function onEnroll(event) {
  event.preventDefault()
  const code = $("#code").value.trim()
  state.enrollError = null
  if (!navigator.onLine) {
    state.enrollError = t("enroll_offline")
    render()
    return
  }
  state.busy = true
  render()
  try {
    state.identity = await device.enroll(code)
    state.busy = false
    await startSync()
  } catch (e) {
    state.busy = false
    // The server's refusal in words, with its stable code; anything else is the network.
    state.enrollError =
      e instanceof device.Refused
        ? `${has(e.code) ? t(e.code) : e.message} (${e.code})`
        : t("unreachable", { message: e.message })
    render()
  }
}

/** A token worth dialling with: the one held while fresh, else a renewal by the key. */
async function currentToken() {
  const held = await device.get("token")
  if (device.fresh(held) || !navigator.onLine) return held
  try {
    return await device.renew(state.identity)
  } catch (e) {
    if (e instanceof device.Refused && (e.code === "revoked" || e.code === "unknown_device")) {
      await revokedNow(e.message)
      return null
    }
    return held // Unreachable now: try again later.
  }
}

/** The server said this device is revoked (its socket closed with the reason, or a renewal
 *  refused): say so, keep it so across reloads, and stop dialling: no reconnect loop
 *  (ARCHITECTURE.md, "A device never retries a refusal forever"). What is on the device stays. */
async function revokedNow(message) {
  if (state.revoked) return
  state.revoked = true
  state.connected = false
  try {
    adapter?.disconnect()
  } catch {
    // Never connected: nothing to close.
  }
  await device.put("revoked", message || "revoked")
  render()
}

/** The socket was refused before it opened (a browser is told only 1006, never the 401's
 *  reason): the token may be stale or the device revoked. A renewal by the key says which;
 *  one at a time. */
let renewing = false
async function renewAfterRefusal() {
  if (renewing || state.revoked || !navigator.onLine) return
  renewing = true
  try {
    const token = await device.renew(state.identity)
    if (adapter) adapter.url = syncUrl(token)
  } catch (e) {
    if (e instanceof device.Refused && (e.code === "revoked" || e.code === "unknown_device")) await revokedNow(e.message)
  } finally {
    renewing = false
  }
}

/** Wraps automerge-repo's adapter so a revocation ends its retries: the close says why
 *  (1008 and the server's reason on a live socket), and a socket refused before opening
 *  asks the renewal why; once revoked it never dials again. */
function watchRefusals(ws) {
  let opened = false
  const connect = ws.connect.bind(ws)
  ws.connect = (...args) => {
    if (state.revoked) return
    opened = false
    connect(...args)
  }
  const onOpen = ws.onOpen
  ws.onOpen = () => {
    opened = true
    onOpen()
  }
  const onClose = ws.onClose
  ws.onClose = event => {
    if (state.revoked) return
    if (event?.code === 1008 && /revoked/i.test(event.reason ?? "")) {
      void revokedNow(event.reason)
      return
    }
    onClose(event)
    if (!opened) void renewAfterRefusal()
  }
}

function syncUrl(token) {
  const url = new URL("/sync", location.origin)
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:"
  url.searchParams.set("token", token.token)
  return url.toString()
}

const randomHex = n => hex(crypto.getRandomValues(new Uint8Array(n)))

async function startSync() {
  // The list may already be up, from the summaries, with a job open.
  if (state.screen === "loading" || state.screen === "enroll") state.screen = "jobs"
  state.revoked = Boolean(await device.get("revoked"))
  state.serverHeads = new Map(Object.entries((await device.get("serverHeads")) ?? {}))
  state.pendingCompletion = new Set((await device.get("pendingCompletion")) ?? [])
  render()
  const token = state.revoked ? null : await currentToken()
  const network = []
  if (token && !state.revoked) {
    adapter = new WebSocketClientAdapter(syncUrl(token), 3000)
    // The adapter only logs the server's `error` messages (a write the authority refused):
    // catch them to show them.
    const receive = adapter.receiveMessage.bind(adapter)
    adapter.receiveMessage = bytes => {
      try {
        const message = cbor.decode(new Uint8Array(bytes))
        if (message?.type === "error" && /\brevoked\b/.test(String(message.message))) {
          // Not a refused change: the device itself (the socket closes next).
          void revokedNow(String(message.message))
        } else if (message?.type === "error") {
          state.errors.push(String(message.message))
          render()
        }
      } catch {
        // The adapter reports what does not decode.
      }
      return receive(bytes)
    }
    watchRefusals(adapter)
    network.push(adapter)
  }
  repo = new Repo({
    storage: new IndexedDBStorageAdapter("fieldsync-docs"),
    network,
    // A device joins as its device id, with a suffix per app instance (the server checks).
    peerId: `${state.identity.deviceId}:app-${randomHex(4)}`,
  })
  repo.networkSubsystem.on("peer", ({ peerId }) => {
    state.connected = true
    serverStorageId = repo.getStorageIdOfPeer(peerId) ?? serverStorageId
    for (const entry of state.jobs.values()) if (entry.handle) noteServerHeads(entry)
    render()
    void flushPending()
  })
  repo.networkSubsystem.on("peer-disconnected", () => {
    state.connected = repo.peers.length > 0
    render()
  })
  setInterval(renewIfDue, 60_000)
  if (!state.identity.indexUrl && token && navigator.onLine) {
    const me = await device.me(token).catch(() => null)
    if (me?.assignment_index_url) {
      state.identity.indexUrl = me.assignment_index_url
      await device.put("identity", state.identity)
    }
  }
  render()
  if (state.identity.indexUrl) await followIndex(state.identity.indexUrl)
}

/** Renews the token once a third of its life is left; the adapter dials with the new one. */
async function renewIfDue() {
  void flushPending()
  if (!adapter || state.revoked) return
  const held = await device.get("token")
  if (device.fresh(held) || !navigator.onLine) return
  const token = await currentToken()
  if (token && token !== held) adapter.url = syncUrl(token)
  render()
}

/** A document's handle once it is here: from IndexedDB at once, else when the server sends it. */
async function open(url) {
  const handle = await repo.find(url, { allowableStates: ["ready", "unavailable"] })
  if (handle.state !== "ready") await handle.whenReady(["ready"])
  return handle
}

async function followIndex(url) {
  const index = await open(url)
  const update = () => {
    const jobs = [...new Set((index.doc()?.jobs ?? []).map(str))]
    state.jobOrder = jobs
    state.indexReady = true
    for (const jobUrl of jobs) if (!state.jobs.has(jobUrl)) followJob(jobUrl)
    saveSummaries()
    renderSoon()
  }
  index.on("change", update)
  update()
}

/** Keeps the heads the server declared for the entry's job (automerge-repo records them per storage
 *  id from the server's sync messages), in IndexedDB too, so the sync state is known offline. */
function noteServerHeads(entry) {
  const handle = entry.handle
  if (!serverStorageId || handle.state !== "ready") return
  const heads = handle.getRemoteHeads(serverStorageId)
  if (!heads) return
  const known = state.serverHeads.get(handle.documentId)
  if (known && known.length === heads.length && known.every(h => heads.includes(h))) return
  state.serverHeads.set(handle.documentId, heads)
  saveSummaries()
  summarize(entry)
  renderSoon()
}

/** The job's row from its document, as `jobsScreen` draws it. */
function summarize(entry) {
  const doc = entry.handle.doc()
  entry.summary = {
    id: entry.handle.documentId,
    customer: str(doc.customer?.name),
    kind: str(doc.kind),
    model: str(doc.product?.model),
    serial: str(doc.product?.serial),
    stage: stage(doc),
    sync: syncState(entry),
  }
}

/** Writes what `make` gives under `key` in IndexedDB now, or as soon as the write before it
 *  ends: a burst of changes (200 jobs arriving) makes a few writes, never a queue of them,
 *  and the last state is written without delay (a reload right after loses nothing). */
const persisting = new Map()
function persist(key, make) {
  let slot = persisting.get(key)
  if (!slot) persisting.set(key, (slot = { running: false, again: false }))
  if (slot.running) {
    slot.again = true
    return
  }
  slot.running = true
  void (async () => {
    do {
      slot.again = false
      await device.put(key, make()).catch(e => console.warn(`keeping ${key}`, e))
    } while (slot.again)
    slot.running = false
  })()
}

/** The list's rows and order, and the server's heads, kept on the device. */
function saveSummaries() {
  persist("summaries", () => {
    const rows = {}
    for (const [url, entry] of state.jobs) {
      // Only a job kept on the device: its row must not promise one that is not.
      if (entry.summary && state.stored.has(entry.summary.id)) rows[url] = entry.summary
      else if (state.summaries.has(url)) rows[url] = state.summaries.get(url)
    }
    return { order: state.jobOrder, rows }
  })
  persist("serverHeads", () => Object.fromEntries(state.serverHeads))
}

function followJob(url) {
  const entry = { handle: null, error: null }
  state.jobs.set(url, entry)
  open(url)
    .then(async handle => {
      entry.handle = handle
      entry.heads = handle.heads() ?? []
      summarize(entry)
      handle.on("change", () => {
        entry.heads = handle.heads() ?? []
        summarize(entry)
        saveSummaries()
        // The job on screen redraws at once (what the technician just did); the list waits
        // for the frame.
        if (state.screen !== "jobs" && state.openJob === url) render()
        else renderSoon()
      })
      handle.on("remote-heads", () => noteServerHeads(entry))
      // What the server said before this listener existed (the job came in with it).
      noteServerHeads(entry)
      renderSoon()
      // Kept on this device before it is said so (the job opens offline after a reload).
      await repo.flush([handle.documentId])
      state.stored.add(handle.documentId)
      saveSummaries()
      renderSoon()
    })
    .catch(e => {
      entry.error = String(e)
      renderSoon()
    })
}

async function boot() {
  $("#lang").addEventListener("click", () => {
    setLanguage(language() === "zh" ? "en" : "zh")
    render()
  })
  addEventListener("online", () => {
    render()
    // The network is back: dial now, not at the adapter's next retry (up to 3 s away). Only
    // with no socket open or opening (`connect` drops the old socket's listeners).
    const socket = adapter?.socket
    const idle = !socket || socket.readyState === WebSocket.CLOSED || socket.readyState === WebSocket.CLOSING
    if (adapter?.peerId && !state.revoked && idle) adapter.connect(adapter.peerId, adapter.peerMetadata)
    // The uploads and completions kept while offline: over HTTP, not waiting for the socket.
    void flushPending()
  })
  addEventListener("offline", render)
  if ("serviceWorker" in navigator) {
    // The app shell, cached for opening with no network (sw.js).
    navigator.serviceWorker.register("sw.js", { scope: "./" }).catch(e => console.warn("service worker", e))
  }
  render()
  state.identity = (await device.get("identity")) ?? null
  if (state.identity) {
    // The list as it was last drawn, before automerge's WebAssembly and the documents load.
    const kept = await device.get("summaries")
    if (kept?.order?.length) {
      state.summaries = new Map(Object.entries(kept.rows ?? {}))
      state.jobOrder = kept.order
      state.indexReady = true
      for (const row of state.summaries.values()) state.stored.add(row.id)
      state.screen = "jobs"
      render()
    }
  }
  await initializeWasm(new URL("automerge.wasm", document.baseURI))
  if (!state.identity) {
    state.screen = (await device.hasEd25519()) ? "enroll" : "loading"
    if (state.screen === "loading") {
      $("#main").replaceChildren(el("p", { class: "error", text: t("no_webcrypto") }))
      return
    }
    render()
    return
  }
  await startSync()
}

boot().catch(e => {
  console.error(e)
  $("#main").replaceChildren(el("p", { class: "error", role: "alert", text: String(e?.message ?? e) }))
})
