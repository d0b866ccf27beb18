// The app's list of what a job lacks before the customer signs (app/src/job.js,
// `missingBeforeSigning`) against the Rust rules (`shared::rules::completeness` without its
// R8 and R9 items, which the signing screen handles). tests/it/app_completeness.rs writes the
// cases, each a job's JSON and what the Rust side lists for it:
//
//   node app/test/completeness.mjs cases.json
//
// Prints one JSON line `{"ok": true, "checks": N}`, or the mismatches and exits 1.

import { readFileSync } from "node:fs"

import { missingBeforeSigning } from "../src/job.js"

const file = process.argv[2]
if (!file) {
  console.error("usage: node app/test/completeness.mjs <cases.json>")
  process.exit(2)
}
const key = m => `${m.rule} ${m.code}`
const mismatches = []
let checks = 0
for (const { name, job, expected } of JSON.parse(readFileSync(file, "utf8"))) {
  const got = missingBeforeSigning(job).map(key).sort()
  const want = expected.map(key).sort()
  checks += 1
  if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push({ name, got, want })
}
console.log(JSON.stringify(mismatches.length ? { ok: false, checks, mismatches } : { ok: true, checks }))
if (mismatches.length) process.exitCode = 1
