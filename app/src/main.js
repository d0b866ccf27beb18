// The technician's app (issue 20): enrollment by the desk's one-time code, then the jobs of
// the technician's assignment index, kept on the device by automerge-repo's IndexedDB storage
// and synced with the edge over its WebSocket (`/sync?token=`) whenever there is a network.
//
// What it writes is only what a device may (ARCHITECTURE.md, "The technician's app"): the
// server's write authority (shared/src/authority*) refuses anything else with an `error`
// message, which the app shows.

import { ImmutableString, Repo, cbor, initializeWasm } from "@automerge/automerge-repo/slim"
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

import * as device from "./device.js"
import { has, language, setLanguage, t } from "./i18n.js"

/** What the page shows, in one place: `render()` draws it. */
const state = {
  screen: "loading", // loading | enroll | jobs | job
  openJob: null, // the url of the job shown on the "job" screen
  identity: null,
  revoked: false,
  connected: false,
  enrollError: null,
  busy: false,
  indexReady: false,
  jobs: new Map(), // url -> {handle, error}
  jobOrder: [],
  serverHeads: new Map(), // documentId -> heads the server was last seen holding
  stored: new Set(), // documentIds flushed to IndexedDB
  errors: [],
}

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

/** Whether the server was last seen holding every change this device has of the job. */
function syncState(entry) {
  const ours = entry.handle.heads() ?? []
  const theirs = state.serverHeads.get(entry.handle.documentId)
  if (!theirs) return "never_synced"
  return ours.every(h => theirs.includes(h)) ? "synced" : "unsynced"
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
    if (!entry?.handle || entry.handle.state !== "ready") {
      list.append(el("li", { class: "job loading", "data-url": url, text: entry?.error ? t("job_unreadable") : t("job_loading") }))
      continue
    }
    const doc = entry.handle.doc()
    const at = stage(doc)
    const sync = syncState(entry)
    const id = entry.handle.documentId
    list.append(
      el(
        "li",
        {
          class: "job",
          "data-job": id,
          "data-stage": at,
          "data-sync": sync,
          "data-stored": String(state.stored.has(id)),
          role: "button",
          tabindex: "0",
          onclick: () => openJob(url),
          onkeydown: e => (e.key === "Enter" || e.key === " ") && openJob(url),
        },
        el("div", { class: "customer", text: str(doc.customer?.name) }),
        el("div", { class: "product", text: [t(`kind_${str(doc.kind)}`), str(doc.product?.model), str(doc.product?.serial)].filter(Boolean).join(" · ") }),
        el("div", { class: "facts" },
          el("span", { class: `stage stage-${at}`, text: t(`status_${at}`) }),
          el("span", { class: `sync sync-${sync}`, text: t(sync) }),
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
  if (state.screen === "job") {
    state.screen = "jobs"
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
    el("section", { id: "job", "data-job": handle.documentId, "data-stage": at, "data-sync": sync },
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
  // R7: the fault cause, a scalar string as the schema has it.
  const cause = el("textarea", { id: "fault-cause", rows: "3" })
  cause.defaultValue = str(doc.diagnosis?.fault_cause)
  out.push(
    el("form", { class: "step", id: "step-diagnosis", onsubmit: e => { e.preventDefault(); visit.faultCause(handle, cause.value) } },
      el("h3", {}, el("label", { for: "fault-cause", text: t("fault_cause") })),
      cause,
      el("button", { type: "submit", class: "primary", text: t("save") }),
    ),
  )
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
  return out
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
  faultCause(handle, text) {
    const value = text.trim()
    const current = str(handle.doc().diagnosis?.fault_cause)
    if (value === current) return
    handle.change(d => {
      if (value === "") delete d.diagnosis.fault_cause
      else d.diagnosis.fault_cause = new ImmutableString(value)
    }, visit.message(`${value === "" ? "Clear" : "Set"} diagnosis.fault_cause (R7)`))
  },
  checkOut(handle, note) {
    handle.change(d => {
      d.visit.check_out = {
        at: new Date(),
        by: new ImmutableString(state.identity.technician),
        note: new ImmutableString(note.trim()),
      }
    }, visit.message("Record visit.check_out (R11)"))
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
      state.revoked = true
      await device.put("revoked", e.message)
      return null
    }
    return held // Unreachable now: try again later.
  }
}

function syncUrl(token) {
  const url = new URL("/sync", location.origin)
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:"
  url.searchParams.set("token", token.token)
  return url.toString()
}

const randomHex = n => Array.from(crypto.getRandomValues(new Uint8Array(n)), b => b.toString(16).padStart(2, "0")).join("")

async function startSync() {
  state.screen = "jobs"
  state.revoked = Boolean(await device.get("revoked"))
  state.serverHeads = new Map(Object.entries((await device.get("serverHeads")) ?? {}))
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
        if (message?.type === "error") {
          state.errors.push(String(message.message))
          render()
        }
      } catch {
        // The adapter reports what does not decode.
      }
      return receive(bytes)
    }
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
    for (const entry of state.jobs.values()) if (entry.handle) noteServerHeads(entry.handle)
    render()
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
    render()
  }
  index.on("change", update)
  update()
}

/** Keeps the heads the server declared for `handle` (automerge-repo records them per storage
 *  id from the server's sync messages), in IndexedDB too, so the sync state is known offline. */
function noteServerHeads(handle) {
  if (!serverStorageId || handle.state !== "ready") return
  const heads = handle.getRemoteHeads(serverStorageId)
  if (!heads) return
  const known = state.serverHeads.get(handle.documentId)
  if (known && known.length === heads.length && known.every(h => heads.includes(h))) return
  state.serverHeads.set(handle.documentId, heads)
  void device.put("serverHeads", Object.fromEntries(state.serverHeads))
  render()
}

function followJob(url) {
  const entry = { handle: null, error: null }
  state.jobs.set(url, entry)
  open(url)
    .then(async handle => {
      entry.handle = handle
      handle.on("change", render)
      handle.on("remote-heads", () => noteServerHeads(handle))
      // What the server said before this listener existed (the job came in with it).
      noteServerHeads(handle)
      render()
      // Kept on this device before it is said so (the job opens offline after a reload).
      await repo.flush([handle.documentId])
      state.stored.add(handle.documentId)
      render()
    })
    .catch(e => {
      entry.error = String(e)
      render()
    })
}

async function boot() {
  $("#lang").addEventListener("click", () => {
    setLanguage(language() === "zh" ? "en" : "zh")
    render()
  })
  addEventListener("online", render)
  addEventListener("offline", render)
  if ("serviceWorker" in navigator) {
    // The app shell, cached for opening with no network (sw.js).
    navigator.serviceWorker.register("sw.js", { scope: "./" }).catch(e => console.warn("service worker", e))
  }
  render()
  await initializeWasm(new URL("automerge.wasm", document.baseURI))
  state.identity = (await device.get("identity")) ?? null
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
