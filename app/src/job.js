// The job as JSON (docs/REPORT-FORMAT.md §3), read from the automerge document the way the
// Rust reader reads it (shared/src/job/doc/read.rs): timestamps as integer milliseconds,
// scalar strings and text alike as strings, an optional field absent or `null` as `null`,
// technicians once each in first-seen order, attachments as an array sorted by digest. It is
// what the device acknowledges (ack.js hashes it), so it must give the Rust side's bytes: the
// end-to-end test has the edge check the digest the app signed.
//
// Left out: `expenses` (the R28 claims the desk approved, read from `approvals`). The
// acknowledged content removes them anyway, and the app never signs a report, so nothing the
// app hashes depends on them.
//
// Also here: what a job still lacks before the customer may sign, as `shared::rules::
// completeness` lists it (R7, R11, R16), so the technician sees every item at once.

const ms = value => {
  if (value instanceof Date) return value.getTime()
  if (typeof value === "number") return value
  return null
}
const text = value => (value === undefined || value === null ? "" : value.toString())
const optText = value => (value === undefined || value === null ? null : value.toString())
const optMs = value => (value === undefined || value === null ? null : ms(value))
const int = value => (typeof value === "number" ? value : Number(value ?? 0))

function record(value, read) {
  return value === undefined || value === null ? null : read(value)
}

const base64 = bytes => {
  let binary = ""
  for (const b of bytes) binary += String.fromCharCode(b)
  return btoa(binary)
}

/** The signature mark as JSON: strokes of integer points, or an image's bytes in base64. */
export function markJson(mark) {
  if (text(mark?.type) === "image") {
    return { type: "image", mime: text(mark.mime), data: base64(mark.data ?? new Uint8Array()) }
  }
  return { type: "strokes", strokes: (mark?.strokes ?? []).map(s => s.map(p => [int(p[0]), int(p[1])])) }
}

function acknowledgementJson(a) {
  const survey = {}
  for (const name of ["attitude", "skill", "punctuality", "service_items"]) {
    if (a.survey?.[name] !== undefined && a.survey?.[name] !== null) survey[name] = int(a.survey[name])
  }
  survey.suggestions = text(a.survey?.suggestions)
  return {
    signer_name: text(a.signer_name),
    signature: markJson(a.signature),
    signed_at: ms(a.signed_at),
    survey,
    device_id: text(a.device_id),
    job_digest: text(a.job_digest),
    heads: (a.heads ?? []).map(text),
    device_signature: text(a.device_signature),
  }
}

function reportJson(r) {
  if (text(r.status) === "refused") {
    return {
      status: "refused",
      at: ms(r.at),
      reasons: (r.reasons ?? []).map(x => ({ rule: text(x.rule), code: text(x.code), message: text(x.message) })),
    }
  }
  return { status: "signed", at: ms(r.at), report_id: text(r.report_id), digest: text(r.digest), supersedes: optText(r.supersedes) }
}

/** The job document `doc` (automerge-repo's `handle.doc()`) as the job's JSON. */
export function jobJson(doc) {
  const visit = doc.visit ?? {}
  const job = {
    schema_version: int(doc.schema_version),
    job_id: text(doc.job_id),
    branch_id: text(doc.branch_id),
    kind: text(doc.kind),
    request: {
      channel: text(doc.request?.channel),
      received_at: ms(doc.request?.received_at),
      fault_description: text(doc.request?.fault_description),
      requested_arrival: optMs(doc.request?.requested_arrival),
    },
    customer: {
      id: text(doc.customer?.id),
      name: text(doc.customer?.name),
      contact: text(doc.customer?.contact),
      site_address: text(doc.customer?.site_address),
    },
    product: {
      model: text(doc.product?.model),
      serial: text(doc.product?.serial),
      product_type: text(doc.product?.product_type),
      purchase_date: optText(doc.product?.purchase_date),
      warranty_end: optText(doc.product?.warranty_end),
    },
    technicians: [...new Set((doc.technicians ?? []).map(text))],
    visit: {
      appointment: optMs(visit.appointment),
      arrival: optMs(visit.arrival),
      safety_briefing: record(visit.safety_briefing, b => ({ at: ms(b.at), by: text(b.by), notes: text(b.notes) })),
      check_out: record(visit.check_out, c => ({ at: ms(c.at), by: text(c.by), note: text(c.note) })),
    },
    diagnosis: {
      fault_cause: optText(doc.diagnosis?.fault_cause),
      fault_category: optText(doc.diagnosis?.fault_category),
      solution: optText(doc.diagnosis?.solution),
    },
    parts: (doc.parts ?? []).map(p => ({
      id: text(p.id),
      part_number: text(p.part_number),
      name: text(p.name),
      specification: text(p.specification),
      quantity: int(p.quantity),
      unit_price: int(p.unit_price),
      warranty: Boolean(p.warranty),
    })),
    labour: { minutes: int(doc.labour?.minutes), rate_per_hour: int(doc.labour?.rate_per_hour) },
    travel: { distance_m: int(doc.travel?.distance_m), cost: int(doc.travel?.cost) },
    billing: {
      mode: text(doc.billing?.mode),
      currency: text(doc.billing?.currency),
      invoice_number: optText(doc.billing?.invoice_number),
    },
    handover: record(doc.handover, h => ({
      items: text(h.items),
      reason: text(h.reason),
      promised_completion: optMs(h.promised_completion),
      taken_at: ms(h.taken_at),
      technician: text(h.technician),
      customer_signer: text(h.customer_signer),
    })),
    customer_opinion: optText(doc.customer_opinion),
    acknowledgement: record(doc.acknowledgement, acknowledgementJson),
    completion: record(doc.completion, c => ({ at: ms(c.at), by: text(c.by) })),
    report: record(doc.report, reportJson),
    timeline: (doc.timeline ?? []).map(e => ({ at: ms(e.at), actor: text(e.actor), kind: text(e.kind), text: text(e.text) })),
    notes: text(doc.notes),
  }
  // Left out when none was recorded (§3), as the Rust side serialises it.
  if (visit.training !== undefined && visit.training !== null) {
    const t = visit.training
    job.visit.training = { at: ms(t.at), by: text(t.by), trainees: (t.trainees ?? []).map(text), topics: text(t.topics) }
  }
  const attachments = Object.entries(doc.attachments ?? {})
    .filter(([, a]) => a !== null && typeof a === "object")
    .map(([digest, a]) => ({
      digest,
      kind: text(a.kind),
      media_type: text(a.media_type),
      size: int(a.size),
      name: text(a.name),
      at: ms(a.at),
      by: text(a.by),
    }))
    .sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0))
  if (attachments.length > 0) job.attachments = attachments
  return job
}

const blank = s => s === null || s === undefined || String(s).trim() === ""

/** What `job` (its JSON) still lacks before the customer is asked to sign, every item at
 *  once: `shared::rules::completeness` without its R8 items (the signature is what comes
 *  next). Each is `{rule, code}`; the words are i18n's `missing_<code>`. */
export function missingBeforeSigning(job) {
  const missing = []
  const add = (rule, code, vars = {}) => missing.push({ rule, code, vars })
  if (job.kind === "repair") {
    if (blank(job.diagnosis.fault_cause)) add("R7", "missing_fault_cause")
    if (blank(job.diagnosis.solution)) add("R7", "missing_solution")
  }
  for (const part of job.parts) if (blank(part.name)) add("R7", "missing_part_name", { line: part.id })
  if (blank(job.customer_opinion)) add("R7", "missing_customer_opinion")
  if (job.visit.check_out === null) add("R11", "missing_check_out")
  if (job.kind === "installation") {
    const training = job.visit.training
    if (!training) add("R16", "missing_training")
    else {
      if (training.trainees.every(blank)) add("R16", "missing_trainee")
      if (blank(training.topics)) add("R16", "missing_training_topics")
    }
  }
  return missing
}

/** What the customer pays and what the job costs (R10, `shared::rules::charges`): labour
 *  is minutes × rate / 60 rounded half up to the minor unit. */
export function charges(job) {
  let parts = 0
  let warrantyParts = 0
  for (const p of job.parts) {
    const line = p.quantity * p.unit_price
    parts += line
    if (p.warranty) warrantyParts += line
  }
  const labour = Math.floor((job.labour.minutes * job.labour.rate_per_hour * 2 + 60) / 120)
  const travel = job.travel.cost
  const cost = parts + labour + travel
  const customerPays = job.billing.mode === "warranty" ? 0 : parts - warrantyParts + labour + travel
  return { parts, partsUnderWarranty: warrantyParts, labour, travel, cost, customerPays }
}
