// The rest of the visit in the technician's app (issue 20 point 3): the R3 appointment call,
// the R32 safety briefing, the parts used (R7, R10, R18), labour and travel (R10), photos
// (attachments) and, for an installation, the R16 training. main.js's job screen draws these
// steps (`beforeArrival`, `onSite`) beside its own (arrival, diagnosis, opinion, check-out).
//
// Each step writes what the Rust SDK writes for it (shared/src/job/doc.rs through
// client-sdk/src/edit.rs), with the same paths, value types and change messages: times are
// automerge timestamps, strings scalar strings, money and counts integers (JavaScript writes
// an integral number as an int), a record (briefing, training) a whole new map, a part line a
// new map appended to `parts`. Only paths a device may write (shared/src/authority.rs); a
// write the server refuses comes back as its `error` message, which main.js shows.

import { ImmutableString } from "@automerge/automerge-repo/slim"

import { sha256Hex } from "./ack.js"
import * as device from "./device.js"
import { t } from "./i18n.js"

const S = value => new ImmutableString(value)

/** The digests whose bytes the edge has not confirmed yet (device.js's `pendingBlobs`). */
let pending = new Set()
let pendingKnown = false

/** Re-reads which attachments wait for upload (after a capture, after an upload round). */
export async function notePending() {
  pending = new Set((await device.pendingBlobs()).map(p => p.digest))
  pendingKnown = true
}

/** Choices that are not text fields (main.js keeps typed text across redraws, not these). */
const choice = { photoKind: "before", warranty: null, approvalKind: "extension", receipt: null }
/** What a step refused before writing, by step id, in words. */
const problems = new Map()

/** Minor units (cents, fen) from what the technician typed in major units (`12.5`, `12.50`). */
export function minorUnits(text) {
  const s = String(text).trim()
  if (!/^\d{1,9}(\.\d{1,2})?$/.test(s)) return null
  const [whole, frac = ""] = s.split(".")
  return Number(whole) * 100 + Number(frac.padEnd(2, "0"))
}

const major = minor => `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, "0")}`

/** `YYYY-MM-DDTHH:MM` in the phone's zone, as `<input type=datetime-local>` holds it. */
function localInput(date) {
  if (!(date instanceof Date)) return ""
  const p = n => String(n).padStart(2, "0")
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T${p(date.getHours())}:${p(date.getMinutes())}`
}

/** A part line id as the SDK makes one (`PartLineId::random`: a UUID v4, simple form). */
const partLineId = () => crypto.randomUUID().replaceAll("-", "")

/** The visit's writes, one automerge change each, as the SDK's typed edits make them. */
export const write = {
  /** R3: the appointment agreed with the customer on the call (`set_appointment`), and the
   *  call itself on the timeline as the desk records one (`desk::dispatch`): who called,
   *  for when, the fault as re-checked with the customer. */
  appointment(ctx, handle, at, faultRechecked) {
    handle.change(d => {
      d.visit.appointment = at
    }, ctx.message("Set visit.appointment (R3)"))
    handle.change(d => {
      d.timeline.push({
        at: new Date(),
        actor: S(ctx.technician),
        kind: S("appointment"),
        text: S(`appointment agreed for ${at.toISOString()} by ${ctx.technician}; fault re-checked: ${faultRechecked}`),
      })
    }, ctx.message("Timeline: appointment"))
  },
  /** R32 (`record_safety_briefing`): by this technician, now. */
  safetyBriefing(ctx, handle, notes) {
    handle.change(d => {
      d.visit.safety_briefing = { at: new Date(), by: S(ctx.technician), notes: S(notes) }
    }, ctx.message("Record visit.safety_briefing (R32)"))
  },
  /** R16 (`record_training`): who was trained and what it covered, by this technician, now. */
  training(ctx, handle, trainees, topics) {
    handle.change(d => {
      d.visit.training = { at: new Date(), by: S(ctx.technician), trainees: trainees.map(S), topics: S(topics) }
    }, ctx.message("Record visit.training (R16)"))
  },
  /** R7, R10, R18 (`add_part_with_id`): a new line at the end, with a fresh id. */
  addPart(ctx, handle, part) {
    const id = partLineId()
    handle.change(d => {
      d.parts.push({
        id: S(id),
        part_number: S(part.partNumber),
        name: S(part.name),
        specification: S(part.specification),
        quantity: part.quantity,
        unit_price: part.unitPrice,
        warranty: part.warranty,
      })
    }, ctx.message(`Add part ${part.name} (${id}) (R7)`))
    return id
  },
  /** `remove_part`: the line with `id`, wherever it is now. */
  removePart(ctx, handle, id) {
    handle.change(d => {
      for (let i = 0; i < d.parts.length; i += 1) {
        if (String(d.parts[i].id) === id) {
          d.parts.deleteAt(i)
          return
        }
      }
    }, ctx.message(`Remove part ${id}`))
  },
  /** R10 (`set_labour`, `set_travel`): each field written only when it changed. */
  labour(ctx, handle, minutes, ratePerHour) {
    const now = handle.doc().labour ?? {}
    if (now.minutes === minutes && now.rate_per_hour === ratePerHour) return
    handle.change(d => {
      if (d.labour.minutes !== minutes) d.labour.minutes = minutes
      if (d.labour.rate_per_hour !== ratePerHour) d.labour.rate_per_hour = ratePerHour
    }, ctx.message("Set labour"))
  },
  travel(ctx, handle, distanceM, cost) {
    const now = handle.doc().travel ?? {}
    if (now.distance_m === distanceM && now.cost === cost) return
    handle.change(d => {
      if (d.travel.distance_m !== distanceM) d.travel.distance_m = distanceM
      if (d.travel.cost !== cost) d.travel.cost = cost
    }, ctx.message("Set travel"))
  },
  /** R12, R18, R31, R28 (`approvals::request_approval`): a new request under a fresh id
   *  (`apr-` and 12 hex digits, as the SDK makes one), written whole once: kind, reason, who
   *  and when, the amount in minor units where there is one, an R28 claim's travel and the
   *  digest of its receipt photo. The desk's decision comes back inside it. */
  requestApproval(ctx, handle, request) {
    const id = `apr-${[...crypto.getRandomValues(new Uint8Array(6))].map(b => b.toString(16).padStart(2, "0")).join("")}`
    handle.change(d => {
      if (!d.approvals) d.approvals = {}
      const r = { kind: S(request.kind), reason: S(request.reason), requested_by: S(ctx.technician), requested_at: new Date() }
      if (request.amount !== null) r.amount = request.amount
      const e = request.expense
      if (e) {
        Object.assign(r, { date: S(e.date), from: S(e.from), to: S(e.to), category: S(e.category) })
        if (e.receipt) r.receipt = S(e.receipt)
      }
      d.approvals[id] = r
    }, ctx.message(`Request approval ${request.kind} (${RULE[request.kind]})`))
    return id
  },
  /** An attachment (`attach` in the SDK): the bytes kept on the device for upload, the
   *  reference (kind, media type, size, name, when, by whom) under its SHA-256. */
  async attach(ctx, handle, kind, bytes, name, mediaType) {
    const digest = await sha256Hex(bytes)
    await device.keepBlob(handle.documentId, digest, bytes)
    if (!handle.doc().attachments?.[digest]) {
      handle.change(d => {
        if (!d.attachments) d.attachments = {}
        d.attachments[digest] = {
          kind: S(kind),
          media_type: S(mediaType),
          size: bytes.length,
          name: S(name),
          at: new Date(),
          by: S(ctx.technician),
        }
      }, ctx.message(`Attach ${kind} image`))
    }
    await notePending()
    return digest
  },
}

function problem(ctx, id) {
  const text = problems.get(id)
  return text ? ctx.el("p", { class: "error step-problem", role: "alert", text }) : null
}

function refuse(ctx, id, text) {
  problems.set(id, text)
  ctx.render()
}

function done(ctx, handle, id) {
  problems.delete(id)
  ctx.refreshMissing(handle)
  ctx.render()
}

/** Whether the job may still change on site: not once the report is asked for or signed. */
const editable = stage => stage !== "completed" && stage !== "signed" && stage !== "cancelled"

/** The steps before arrival: the R3 appointment call and the R32 safety briefing. */
export function beforeArrival(ctx, handle, doc, stage) {
  const { el, str, when } = ctx
  const out = []
  // R3: the call to the customer, the time agreed, the fault re-checked.
  const appointment = doc.visit?.appointment
  // Checked here, not by the browser's `required`, so the refusal is in the app's words.
  const at = el("input", { id: "appointment-at", type: "datetime-local", class: "plain" })
  at.defaultValue = localInput(appointment)
  const recheck = el("textarea", { id: "fault-rechecked", rows: "2" })
  recheck.defaultValue = str(doc.request?.fault_description)
  out.push(
    el("form", {
      class: "step",
      id: "step-appointment",
      onsubmit: e => {
        e.preventDefault()
        const chosen = at.value ? new Date(at.value) : null
        if (!chosen || Number.isNaN(chosen.getTime())) return refuse(ctx, "appointment", t("need_appointment_time"))
        if (recheck.value.trim() === "") return refuse(ctx, "appointment", t("need_fault_rechecked"))
        write.appointment(ctx, handle, chosen, recheck.value.trim())
        done(ctx, handle, "appointment")
      },
    },
      el("h3", { text: t("appointment_heading") }),
      el("p", { class: "help", text: t("appointment_help") }),
      appointment ? el("p", { id: "appointment-agreed", text: t("appointment_at", { time: when(appointment) }) }) : null,
      el("label", { for: "appointment-at", text: t("appointment_time") }),
      at,
      el("label", { for: "fault-rechecked", text: t("fault_rechecked") }),
      recheck,
      problem(ctx, "appointment"),
      el("button", { type: "submit", class: "primary", text: t(appointment ? "appointment_change" : "appointment_record") }),
    ),
  )
  // R32: the safety briefing, before entering a production area.
  const briefing = doc.visit?.safety_briefing
  if (briefing) {
    out.push(
      el("section", { class: "step", id: "step-safety" },
        el("h3", { text: t("safety_heading") }),
        el("p", { id: "safety-recorded", text: t("safety_at", { time: when(briefing.at), by: str(briefing.by) }) }),
        el("p", { text: str(briefing.notes) }),
      ),
    )
  } else if (editable(stage)) {
    const notes = el("textarea", { id: "safety-notes", rows: "2" })
    out.push(
      el("form", {
        class: "step",
        id: "step-safety",
        onsubmit: e => {
          e.preventDefault()
          if (notes.value.trim() === "") return refuse(ctx, "safety", t("need_safety_notes"))
          write.safetyBriefing(ctx, handle, notes.value.trim())
          done(ctx, handle, "safety")
        },
      },
        el("h3", {}, el("label", { for: "safety-notes", text: t("safety_heading") })),
        el("p", { class: "help", text: t(doc.visit?.arrival ? "safety_help_arrived" : "safety_help") }),
        notes,
        problem(ctx, "safety"),
        el("button", { type: "submit", class: "primary", text: t("safety_record") }),
      ),
    )
  }
  return out
}

/** The steps on site after the diagnosis: parts, labour and travel, photos, R16 training,
 *  approvals and expenses. */
export function onSite(ctx, handle, doc, stage) {
  if (!pendingKnown) void notePending().then(ctx.render)
  const out = [partsStep(ctx, handle, doc, stage), chargesStep(ctx, handle, doc, stage), photosStep(ctx, handle, doc, stage)]
  if (ctx.str(doc.kind) === "installation") out.push(trainingStep(ctx, handle, doc, stage))
  out.push(approvalsStep(ctx, handle, doc, stage), expenseStep(ctx, handle, doc, stage))
  return out
}

/** The rule each kind of request answers to (`ApprovalKind::rule`). */
const RULE = { extension: "R12", other_solution: "R12", warranty_part: "R18", product_return: "R31", travel_expense: "R28" }

/** The job's requests, oldest first, each with the desk's decision in words. */
function approvalList(ctx, doc, currency) {
  const { el, str, when } = ctx
  const requests = Object.entries(doc.approvals ?? {})
    .filter(([, a]) => a && typeof a === "object")
    .sort(([x, a], [y, b]) => (a.requested_at?.getTime?.() ?? 0) - (b.requested_at?.getTime?.() ?? 0) || (x < y ? -1 : 1))
  const list = el("ul", { id: "approvals" })
  for (const [id, a] of requests) {
    const kind = str(a.kind)
    const d = a.decision
    const decided = d && typeof d === "object"
    const status = !decided ? "waiting" : d.approved === true ? "approved" : "refused"
    const amount = typeof a.amount === "number" ? ` · ${currency} ${major(a.amount)}` : ""
    const travel = kind === "travel_expense" ? ` · ${str(a.date)} ${str(a.from)} → ${str(a.to)} · ${str(a.category)}` : ""
    const words = decided
      ? t(`approval_${status}`, { by: str(d.by), time: when(d.at) }) + (str(d.note) ? `: ${str(d.note)}` : "")
      : t("approval_waiting")
    list.append(
      el("li", { class: "approval", "data-approval": id, "data-kind": kind, "data-state": status },
        el("span", { text: `${RULE[kind] ?? ""} ${t(`approval_kind_${kind}`)}${amount}${travel} · ${str(a.reason)}` }),
        el("span", { class: `decision decision-${status}`, text: words }),
        // R28: the receipt photo's own way to the branch.
        a.receipt
          ? el("span", {
              class: `upload upload-${pending.has(str(a.receipt)) ? "pending" : "uploaded"}`,
              "data-receipt-upload": pending.has(str(a.receipt)) ? "pending" : "uploaded",
              text: `${t("receipt")} · ${t(`upload_${pending.has(str(a.receipt)) ? "pending" : "uploaded"}`)}`,
            })
          : null,
      ),
    )
  }
  return { list, count: requests.length }
}

function approvalsStep(ctx, handle, doc, stage) {
  const { el, str } = ctx
  const currency = str(doc.billing?.currency)
  const section = el("section", { class: "step", id: "step-approvals" }, el("h3", { text: t("approvals_heading") }))
  const { list, count } = approvalList(ctx, { approvals: Object.fromEntries(Object.entries(doc.approvals ?? {}).filter(([, a]) => str(a?.kind) !== "travel_expense")) }, currency)
  section.append(count ? list : el("p", { text: t("no_approvals") }))
  if (!editable(stage)) return section
  const kind = el("select", { id: "approval-kind", onchange: e => (choice.approvalKind = e.target.value) },
    ...["extension", "other_solution", "warranty_part", "product_return"].map(k =>
      el("option", { value: k, selected: choice.approvalKind === k, text: `${RULE[k]} ${t(`approval_kind_${k}`)}` }),
    ),
  )
  const reason = el("textarea", { id: "approval-reason", rows: "2" })
  const amount = el("input", { id: "approval-amount", class: "plain", inputmode: "decimal", placeholder: "0.00" })
  section.append(
    el("form", {
      id: "approval-form",
      onsubmit: e => {
        e.preventDefault()
        const k = kind.value
        const text = reason.value.trim()
        const minor = amount.value.trim() === "" ? null : minorUnits(amount.value)
        if (text === "") return refuse(ctx, "approvals", t("need_approval_reason"))
        if (amount.value.trim() !== "" && (minor === null || minor <= 0)) return refuse(ctx, "approvals", t("need_amount"))
        if (k === "warranty_part" && minor === null) return refuse(ctx, "approvals", t("need_approval_amount"))
        reason.value = ""
        amount.value = ""
        write.requestApproval(ctx, handle, { kind: k, reason: text, amount: minor, expense: null })
        done(ctx, handle, "approvals")
      },
    },
      el("label", { for: "approval-kind", text: t("approval_kind") }), kind,
      el("label", { for: "approval-reason", text: t("approval_reason") }), reason,
      el("label", { for: "approval-amount", text: t("approval_amount", { currency }) }), amount,
      problem(ctx, "approvals"),
      el("button", { type: "submit", class: "primary", text: t("approval_ask") }),
    ),
  )
  return section
}

/** R28: a travel expense claim with its receipt photo (a `receipt` attachment). */
function expenseStep(ctx, handle, doc, stage) {
  const { el, str } = ctx
  const currency = str(doc.billing?.currency)
  const section = el("section", { class: "step", id: "step-expenses" }, el("h3", { text: t("expenses_heading") }))
  const { list, count } = approvalList(ctx, { approvals: Object.fromEntries(Object.entries(doc.approvals ?? {}).filter(([, a]) => str(a?.kind) === "travel_expense")) }, currency)
  if (count) {
    list.id = "expenses"
    section.append(list)
  }
  if (!editable(stage)) return section
  const input = (id, attrs = {}) => el("input", { id, class: "plain", autocomplete: "off", ...attrs })
  const date = input("expense-date", { type: "date" })
  const from = input("expense-from")
  const to = input("expense-to")
  const category = input("expense-category")
  const amount = input("expense-amount", { inputmode: "decimal", placeholder: "0.00" })
  const reason = el("textarea", { id: "expense-reason", rows: "2" })
  // The photo is held here once chosen: a redraw makes a new file input.
  const receipt = el("input", {
    type: "file",
    name: "receipt",
    class: "photo-input",
    accept: "image/*",
    capture: "environment",
    onchange: async e => {
      const file = e.target.files?.[0]
      e.target.value = ""
      if (!file) return
      const bytes = new Uint8Array(await file.arrayBuffer())
      if (bytes.length === 0) return refuse(ctx, "expenses", t("photo_empty"))
      choice.receipt = { bytes, name: file.name || "receipt.jpg", type: file.type || "application/octet-stream" }
      ctx.render()
    },
  })
  section.append(
    el("form", {
      id: "expense-form",
      onsubmit: async e => {
        e.preventDefault()
        const minor = minorUnits(amount.value)
        const fields = [date, from, to, category, reason].map(f => f.value.trim())
        if (fields.some(v => v === "")) return refuse(ctx, "expenses", t("need_expense_fields"))
        if (minor === null || minor <= 0) return refuse(ctx, "expenses", t("need_amount"))
        if (!choice.receipt) return refuse(ctx, "expenses", t("need_receipt"))
        const [day, fromText, toText, categoryText, reasonText] = fields
        for (const f of [date, from, to, category, amount, reason]) f.value = ""
        const photo = choice.receipt
        choice.receipt = null
        try {
          const digest = await write.attach(ctx, handle, "receipt", photo.bytes, photo.name, photo.type)
          write.requestApproval(ctx, handle, {
            kind: "travel_expense",
            reason: reasonText,
            amount: minor,
            expense: { date: day, from: fromText, to: toText, category: categoryText, receipt: digest },
          })
          done(ctx, handle, "expenses")
          void ctx.flushPending()
        } catch (err) {
          refuse(ctx, "expenses", String(err?.message ?? err))
        }
      },
    },
      el("label", { for: "expense-date", text: t("expense_date") }), date,
      el("label", { for: "expense-from", text: t("expense_from") }), from,
      el("label", { for: "expense-to", text: t("expense_to") }), to,
      el("label", { for: "expense-category", text: t("expense_category") }), category,
      el("label", { for: "expense-amount", text: t("approval_amount", { currency }) }), amount,
      el("label", { for: "expense-reason", text: t("approval_reason") }), reason,
      el("label", { class: "photo-take" }, el("span", { text: t("receipt_take") }), receipt),
      choice.receipt ? el("p", { id: "receipt-chosen", text: t("receipt_chosen", { name: choice.receipt.name }) }) : null,
      problem(ctx, "expenses"),
      el("button", { type: "submit", class: "primary", text: t("expense_claim") }),
    ),
  )
  return section
}

function partsStep(ctx, handle, doc, stage) {
  const { el, str } = ctx
  const currency = str(doc.billing?.currency)
  const open = editable(stage)
  const list = el("ul", { id: "parts" })
  for (const p of doc.parts ?? []) {
    const id = str(p.id)
    const line = [str(p.name), str(p.part_number), str(p.specification)].filter(Boolean).join(" · ")
    const money = `× ${Number(p.quantity)} · ${currency} ${major(Number(p.unit_price))} · ${t(p.warranty ? "part_warranty" : "part_billable")}`
    list.append(
      el("li", { class: "part", "data-part": id },
        el("span", { text: `${line} ${money}` }),
        open
          ? el("button", {
              type: "button",
              class: "secondary remove-part",
              "aria-label": t("part_remove_named", { name: str(p.name) }),
              onclick: () => {
                write.removePart(ctx, handle, id)
                done(ctx, handle, "parts")
              },
              text: t("part_remove"),
            })
          : null,
      ),
    )
  }
  const section = el("section", { class: "step", id: "step-parts" }, el("h3", { text: t("parts_heading") }))
  section.append((doc.parts ?? []).length ? list : el("p", { id: "no-parts", text: t("no_parts") }))
  if (!open) return section
  // Under warranty by default when the job is billed as warranty work (R10).
  const warrantyDefault = choice.warranty ?? str(doc.billing?.mode) === "warranty"
  const name = el("input", { id: "part-name", class: "plain", autocomplete: "off" })
  const number = el("input", { id: "part-number", class: "plain", autocomplete: "off" })
  const spec = el("input", { id: "part-spec", class: "plain", autocomplete: "off" })
  const quantity = el("input", { id: "part-qty", class: "plain", type: "number", min: "1", step: "1", inputmode: "numeric" })
  quantity.defaultValue = "1"
  const price = el("input", { id: "part-price", class: "plain", inputmode: "decimal", placeholder: "0.00" })
  const warranty = el("select", { id: "part-warranty", onchange: e => (choice.warranty = e.target.value === "warranty") },
    el("option", { value: "warranty", selected: warrantyDefault, text: t("part_warranty") }),
    el("option", { value: "billable", selected: !warrantyDefault, text: t("part_billable") }),
  )
  // The price list the desk gave the job (shared/src/job/price_list.rs): a part picked from
  // it fills the line with its number, specification and the desk's price, which is then
  // not typed over; a part not on the list is typed in (the SDK's `part add` likewise).
  const prices = (doc.price_list ?? []).map(item => ({
    partNumber: str(item.part_number),
    name: str(item.name),
    specification: str(item.specification),
    unitPrice: Number(item.unit_price),
  }))
  const pick = prices.length === 0
    ? null
    : el("select", {
        id: "price-item",
        onchange: e => {
          const item = prices.find(p => p.partNumber === e.target.value)
          name.value = item?.name ?? ""
          number.value = item?.partNumber ?? ""
          spec.value = item?.specification ?? ""
          price.value = item ? major(item.unitPrice) : ""
          for (const field of [name, number, spec, price]) field.readOnly = Boolean(item)
        },
      },
        el("option", { value: "", text: t("price_list_other") }),
        ...prices.map(p => el("option", {
          value: p.partNumber,
          text: [p.name, p.partNumber, p.specification, `${currency} ${major(p.unitPrice)}`].filter(Boolean).join(" · "),
        })),
      )
  section.append(
    el("form", {
      id: "part-form",
      onsubmit: e => {
        e.preventDefault()
        const qty = Number(quantity.value)
        const unitPrice = minorUnits(price.value === "" ? "0" : price.value)
        if (name.value.trim() === "") return refuse(ctx, "parts", t("need_part_name"))
        if (!Number.isInteger(qty) || qty < 1 || qty > 1_000_000) return refuse(ctx, "parts", t("need_quantity"))
        if (unitPrice === null) return refuse(ctx, "parts", t("need_amount"))
        const part = {
          name: name.value.trim(),
          partNumber: number.value.trim(),
          specification: spec.value.trim(),
          quantity: qty,
          unitPrice,
          warranty: warranty.value === "warranty",
        }
        // Emptied before the write: the change redraws at once, keeping what fields hold.
        for (const field of [name, number, spec, price]) {
          field.value = ""
          field.readOnly = false
        }
        if (pick) pick.value = ""
        quantity.value = "1"
        write.addPart(ctx, handle, part)
        done(ctx, handle, "parts")
      },
    },
      ...(pick ? [el("label", { for: "price-item", text: t("price_list") }), pick] : []),
      el("label", { for: "part-name", text: t("part_name") }), name,
      el("label", { for: "part-number", text: t("part_number") }), number,
      el("label", { for: "part-spec", text: t("part_spec") }), spec,
      el("label", { for: "part-qty", text: t("part_qty") }), quantity,
      el("label", { for: "part-price", text: t("part_price", { currency }) }), price,
      el("label", { for: "part-warranty", text: t("part_charged") }), warranty,
      problem(ctx, "parts"),
      el("button", { type: "submit", class: "primary", text: t("part_add") }),
    ),
  )
  return section
}

function chargesStep(ctx, handle, doc, stage) {
  const { el, str } = ctx
  const currency = str(doc.billing?.currency)
  const field = (id, value) => {
    const input = el("input", { id, class: "plain", inputmode: "decimal" })
    input.defaultValue = value
    return input
  }
  const minutes = field("labour-minutes", String(Number(doc.labour?.minutes ?? 0)))
  minutes.setAttribute("inputmode", "numeric")
  const rate = field("labour-rate", major(Number(doc.labour?.rate_per_hour ?? 0)))
  const km = field("travel-km", String(Number(doc.travel?.distance_m ?? 0) / 1000))
  const cost = field("travel-cost", major(Number(doc.travel?.cost ?? 0)))
  const open = editable(stage)
  for (const input of [minutes, rate, km, cost]) if (!open) input.setAttribute("readonly", "")
  return el("form", {
    class: "step",
    id: "step-charges",
    onsubmit: e => {
      e.preventDefault()
      const m = Number(minutes.value)
      const r = minorUnits(rate.value)
      const metres = /^\d{1,6}(\.\d{1,3})?$/.test(km.value.trim()) ? Math.round(Number(km.value) * 1000) : null
      const c = minorUnits(cost.value)
      if (!Number.isInteger(m) || m < 0 || m > 100_000) return refuse(ctx, "charges", t("need_minutes"))
      if (r === null || c === null) return refuse(ctx, "charges", t("need_amount"))
      if (metres === null) return refuse(ctx, "charges", t("need_distance"))
      write.labour(ctx, handle, m, r)
      write.travel(ctx, handle, metres, c)
      done(ctx, handle, "charges")
    },
  },
    el("h3", { text: t("charges_heading") }),
    el("label", { for: "labour-minutes", text: t("labour_minutes") }), minutes,
    el("label", { for: "labour-rate", text: t("labour_rate", { currency }) }), rate,
    el("label", { for: "travel-km", text: t("travel_km") }), km,
    el("label", { for: "travel-cost", text: t("travel_cost", { currency }) }), cost,
    problem(ctx, "charges"),
    open ? el("button", { type: "submit", class: "primary", text: t("save") }) : null,
  )
}

function photosStep(ctx, handle, doc, stage) {
  const { el, str, when } = ctx
  const section = el("section", { class: "step", id: "step-photos" }, el("h3", { text: t("photos_heading") }))
  const photos = Object.entries(doc.attachments ?? {})
    .filter(([, a]) => a && ["before", "after"].includes(str(a.kind)))
    .sort(([, a], [, b]) => (a.at?.getTime?.() ?? 0) - (b.at?.getTime?.() ?? 0))
  const list = el("ul", { id: "photos" })
  for (const [digest, a] of photos) {
    const upload = pending.has(digest) ? "pending" : "uploaded"
    list.append(
      el("li", { class: "photo", "data-digest": digest, "data-kind": str(a.kind), "data-upload": upload },
        el("span", { text: `${t(`photo_${str(a.kind)}`)} · ${str(a.name)} · ${Math.ceil(Number(a.size) / 1024)} KB · ${when(a.at)}` }),
        el("span", { class: `upload upload-${upload}`, text: t(`upload_${upload}`) }),
      ),
    )
  }
  section.append(photos.length ? list : el("p", { id: "no-photos", text: t("no_photos") }))
  if (!editable(stage)) return section
  const kind = el("select", { id: "photo-kind", onchange: e => (choice.photoKind = e.target.value) },
    ...["before", "after"].map(k => el("option", { value: k, selected: choice.photoKind === k, text: t(`photo_${k}`) })),
  )
  // No id: main.js keeps drafts by id, and a file input's value cannot be set back.
  const input = el("input", {
    type: "file",
    name: "photo",
    class: "photo-input",
    accept: "image/*",
    capture: "environment",
    onchange: async e => {
      const file = e.target.files?.[0]
      e.target.value = ""
      if (!file) return
      try {
        const bytes = new Uint8Array(await file.arrayBuffer())
        if (bytes.length === 0) return refuse(ctx, "photos", t("photo_empty"))
        await write.attach(ctx, handle, choice.photoKind, bytes, file.name || `${choice.photoKind}.jpg`, file.type || "application/octet-stream")
        done(ctx, handle, "photos")
        void ctx.flushPending()
      } catch (err) {
        refuse(ctx, "photos", String(err?.message ?? err))
      }
    },
  })
  section.append(
    el("label", { for: "photo-kind", text: t("photo_kind") }),
    kind,
    el("label", { class: "photo-take" }, el("span", { text: t("photo_take") }), input),
  )
  const refused = problem(ctx, "photos")
  if (refused) section.append(refused)
  return section
}

function trainingStep(ctx, handle, doc, stage) {
  const { el, str, when } = ctx
  const training = doc.visit?.training
  const trainees = el("textarea", { id: "trainees", rows: "2" })
  trainees.defaultValue = (training?.trainees ?? []).map(str).join("\n")
  const topics = el("textarea", { id: "training-topics", rows: "2" })
  topics.defaultValue = str(training?.topics)
  return el("form", {
    class: "step",
    id: "step-training",
    onsubmit: e => {
      e.preventDefault()
      const names = trainees.value.split(/[\n,，、]/).map(s => s.trim()).filter(Boolean)
      if (names.length === 0) return refuse(ctx, "training", t("missing_trainee"))
      if (topics.value.trim() === "") return refuse(ctx, "training", t("missing_training_topics"))
      write.training(ctx, handle, names, topics.value.trim())
      done(ctx, handle, "training")
    },
  },
    el("h3", { text: t("training_heading") }),
    training ? el("p", { id: "training-recorded", text: t("training_at", { time: when(training.at), by: str(training.by) }) }) : null,
    el("label", { for: "trainees", text: t("trainees") }), trainees,
    el("label", { for: "training-topics", text: t("training_topics") }), topics,
    problem(ctx, "training"),
    editable(stage) ? el("button", { type: "submit", class: "primary", text: t("training_record") }) : null,
  )
}
