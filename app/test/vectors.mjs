// The app's acknowledgement code (app/src/ack.js) against the committed test vectors of the
// published report format (docs/report-vectors/, regenerated from the Rust code by
// tests/it/report_format.rs): every RFC 8785 case, the acknowledged content and its digest,
// the signature marks' digests, the statement and the device's signature, made with the
// vectors' device seed through WebCrypto exactly as the app signs in the browser.
//
//   node app/test/vectors.mjs docs/report-vectors
//
// Prints one JSON line `{"ok": true, "checks": N}`, or lists every mismatch and exits 1.

import { readFileSync } from "node:fs"
import path from "node:path"

import {
  acknowledgedContent,
  canonical,
  jobDigest,
  normaliseHeads,
  sha256Hex,
  signAcknowledgement,
  statement,
  verifyAcknowledgement,
} from "../src/ack.js"

const dir = process.argv[2]
if (!dir) {
  console.error("usage: node app/test/vectors.mjs <docs/report-vectors>")
  process.exit(2)
}
const load = name => JSON.parse(readFileSync(path.join(dir, name), "utf8"))
const canonicalCases = load("canonical.json")
const vector = load("acknowledgement.json")
const keys = load("keys.json")

const failures = []
let checks = 0
function same(what, got, want) {
  checks += 1
  if (got !== want) failures.push({ what, got, want })
}

for (const [i, c] of canonicalCases.entries()) {
  const text = canonical(JSON.parse(c.input))
  same(`canonical[${i}] text`, text, c.canonical)
  same(`canonical[${i}] sha256`, await sha256Hex(text), c.sha256)
}

// The acknowledged content and its digest.
const before = canonical(vector.job)
same("acknowledged content", canonical(acknowledgedContent(vector.job)), vector.acknowledged_content_canonical)
same("the job itself is left as it was", canonical(vector.job), before)
same("job_digest", await jobDigest(vector.job), vector.job_digest)
same("heads normalised", JSON.stringify(normaliseHeads(vector.heads_input)), JSON.stringify(vector.heads))

// The marks.
same("strokes mark canonical", canonical(vector.draft.signature), vector.signature_mark_canonical)
same("strokes mark digest", await sha256Hex(canonical(vector.draft.signature)), vector.signature_mark_digest)
const image = vector.image_mark_example
same("image mark canonical", canonical(image.mark), image.canonical)
same("image mark digest", await sha256Hex(canonical(image.mark)), image.digest)

// The statement of the vector's acknowledgement.
const ack = vector.acknowledgement
same(
  "statement",
  canonical(await statement(vector.job.job_id, vector.job.branch_id, ack)),
  vector.statement_canonical,
)

// Signing with the device seed (PKCS#8 is how WebCrypto takes an Ed25519 seed): Ed25519 is
// deterministic, so the app's signature must be the vector's byte for byte.
const pkcs8 = Buffer.from(`302e020100300506032b657004220420${keys.device.seed}`, "hex")
const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"])
const publicKey = await crypto.subtle.importKey(
  "raw",
  Buffer.from(keys.device.public_key, "hex"),
  { name: "Ed25519" },
  false,
  ["verify"],
)
const signed = await signAcknowledgement(vector.job, vector.heads_input, vector.draft, vector.device_id, privateKey)
same("device_signature", signed.device_signature, vector.device_signature)
same("acknowledgement", canonical(signed), canonical(ack))
checks += 1
if (!(await verifyAcknowledgement(vector.job.job_id, vector.job.branch_id, ack, publicKey))) {
  failures.push({ what: "the vector's acknowledgement verifies with the device key" })
}
// A changed survey answer must no longer verify (the check above can fail).
checks += 1
const altered = { ...ack, survey: { ...ack.survey, attitude: ack.survey.attitude === 1 ? 2 : 1 } }
if (await verifyAcknowledgement(vector.job.job_id, vector.job.branch_id, altered, publicKey)) {
  failures.push({ what: "an acknowledgement with a changed score still verifies" })
}

// Refusals, not wrong bytes.
for (const [what, value] of [
  ["NaN", Number.NaN],
  ["Infinity", Number.POSITIVE_INFINITY],
  ["a hole in an array", [1, undefined]],
  ["a function", () => 1],
]) {
  checks += 1
  try {
    canonical({ value })
    failures.push({ what: `${what} is refused` })
  } catch {
    // Refused, as it must be.
  }
}

if (failures.length > 0) {
  console.log(JSON.stringify({ ok: false, checks, failures }, null, 1))
  process.exit(1)
}
console.log(JSON.stringify({ ok: true, checks }))
