// The customer's acknowledgement as the device signs it (R8, R9), byte for byte as
// docs/REPORT-FORMAT.md §1 and §4 say and as the Rust SDK does it (shared/src/report.rs:
// `acknowledged_content`, `sign_acknowledgement`; shared/src/canonical.rs): the acknowledged
// content's canonical JSON (RFC 8785) hashed with SHA-256, the statement over it signed with
// the device's WebCrypto Ed25519 key. Nothing here touches the page or automerge, so node
// runs it against the committed test vectors (app/test/vectors.mjs, run by
// tests/it/app_conformance.rs).

export const ACK_FORMAT = "fieldsync/acknowledgement/v1"

/** Ed25519 signatures in WebCrypto's spelling (Chromium 137+, Firefox 129+, Safari 17+, Node 20). */
const ED25519 = { name: "Ed25519" }

/** RFC 8785 (JCS) canonical JSON text of `value`. Numbers print as ECMAScript prints a
 *  double and strings are escaped as `JSON.stringify` escapes them, which is what JCS
 *  prescribes; members are sorted by UTF-16 code units (JavaScript's own string order). A
 *  non-finite number or a value JSON has no form for is refused rather than signing
 *  something else (every number here is already a double: the Rust canonicaliser's refusal
 *  of integers a double cannot hold has no counterpart to make). */
export function canonical(value) {
  if (value === null) return "null"
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false"
    case "string":
      return JSON.stringify(value)
    case "number":
      if (!Number.isFinite(value)) throw new Error(`canonical JSON has no form for ${value}`)
      // String(-0) is "0", as JCS wants.
      return String(value)
    case "object": {
      if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`
      const names = Object.keys(value)
        .filter(name => value[name] !== undefined)
        .sort()
      return `{${names.map(name => `${JSON.stringify(name)}:${canonical(value[name])}`).join(",")}}`
    }
    default:
      throw new Error(`canonical JSON has no form for a ${typeof value}`)
  }
}

const encoder = new TextEncoder()

export const hex = bytes => Array.from(new Uint8Array(bytes), b => b.toString(16).padStart(2, "0")).join("")

/** `hex(SHA-256(bytes))`; a string is hashed as its UTF-8 bytes. */
export async function sha256Hex(data) {
  const bytes = typeof data === "string" ? encoder.encode(data) : data
  return hex(await crypto.subtle.digest("SHA-256", bytes))
}

/** Document heads as they are signed: lowercase, sorted, without duplicates. */
export function normaliseHeads(heads) {
  return [...new Set(heads.map(h => String(h).toLowerCase()))].sort()
}

/** The acknowledged content (§4): the job (its JSON form, §3) with the acknowledgement,
 *  completion and report `null`, the timeline `[]`, the notes `""`, the check-out `null`
 *  (blanked, not removed), the receipts taken out of the attachments (the member removed if
 *  none is left) and the approved expenses removed. `job` is not changed. */
export function acknowledgedContent(job) {
  const content = structuredClone(job)
  content.acknowledgement = null
  content.completion = null
  content.report = null
  content.timeline = []
  content.notes = ""
  content.visit = { ...content.visit, check_out: null }
  if (Array.isArray(content.attachments)) {
    content.attachments = content.attachments.filter(a => a.kind !== "receipt")
    if (content.attachments.length === 0) delete content.attachments
  }
  delete content.expenses
  return content
}

/** `job_digest`: hex SHA-256 of the acknowledged content's canonical text. */
export async function jobDigest(job) {
  return sha256Hex(canonical(acknowledgedContent(job)))
}

/** The survey as it is signed: a score not answered (R9) is no member at all. */
export function surveyJson(survey) {
  const out = {}
  for (const name of ["attitude", "skill", "punctuality", "service_items"]) {
    const score = survey?.[name]
    if (score !== undefined && score !== null) out[name] = score
  }
  out.suggestions = survey?.suggestions ?? ""
  return out
}

/** The acknowledgement statement (§4) for `ack` on the job `jobId` of `branchId`. */
export async function statement(jobId, branchId, ack) {
  return {
    format: ACK_FORMAT,
    job_id: jobId,
    branch_id: branchId,
    device_id: ack.device_id,
    job_digest: ack.job_digest,
    heads: ack.heads,
    signer_name: ack.signer_name,
    signed_at: ack.signed_at,
    survey: surveyJson(ack.survey),
    signature_mark_digest: await sha256Hex(canonical(ack.signature)),
  }
}

/** Signs the customer's acknowledgement over `job` (its JSON form, read at `heads`) as
 *  `deviceId` with the device's private Ed25519 CryptoKey. `draft` is what the customer
 *  filled in: `{signer_name, signature (the mark), signed_at, survey}`. Returns the
 *  acknowledgement to write into the job. */
export async function signAcknowledgement(job, heads, draft, deviceId, privateKey) {
  const ack = {
    signer_name: draft.signer_name,
    signature: draft.signature,
    signed_at: draft.signed_at,
    survey: surveyJson(draft.survey),
    device_id: deviceId,
    job_digest: await jobDigest(job),
    heads: normaliseHeads(heads),
    device_signature: "",
  }
  const text = canonical(await statement(job.job_id, job.branch_id, ack))
  ack.device_signature = hex(await crypto.subtle.sign(ED25519, privateKey, encoder.encode(text)))
  return ack
}

/** Whether `ack.device_signature` is the device key's signature of its statement. */
export async function verifyAcknowledgement(jobId, branchId, ack, publicKey) {
  const text = canonical(await statement(jobId, branchId, ack))
  const signature = Uint8Array.from(ack.device_signature.match(/../g) ?? [], b => parseInt(b, 16))
  return crypto.subtle.verify(ED25519, publicKey, signature, encoder.encode(text))
}
