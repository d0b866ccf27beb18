// The device's identity, kept in the browser's IndexedDB (database `fieldsync-device`):
// its Ed25519 key pair, made by WebCrypto with the private key non-extractable (the browser
// stores the CryptoKey object itself; its bytes can never be read out), who the server says
// the device is, its token, and per job the heads the server was last seen holding.
//
// Enrollment and renewal speak to the edge exactly as the Rust SDK does
// (client-sdk/src/enroll.rs): `POST /api/enroll {code, public_key}` (the key as 64 hex
// digits), and renewal by proving the key: `POST /api/token/challenge {device_id}`, then
// `POST /api/token/renew {device_id, nonce, signature}` with the Ed25519 signature (hex) of
// `fieldsync-token-renewal-v1\n{branch}\n{device}\n{nonce}` (shared::enrollment::renewal_message).

import { hex } from "./ack.js"

const DB = "fieldsync-device"
const STORE = "kv"

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1)
    request.onupgradeneeded = () => request.result.createObjectStore(STORE)
    request.onsuccess = () => resolve(request.result)
    request.onerror = () => reject(request.error)
  })
}

let dbPromise
function db() {
  dbPromise ??= openDb()
  return dbPromise
}

export async function get(key) {
  const d = await db()
  return new Promise((resolve, reject) => {
    const request = d.transaction(STORE).objectStore(STORE).get(key)
    request.onsuccess = () => resolve(request.result)
    request.onerror = () => reject(request.error)
  })
}

export async function put(key, value) {
  const d = await db()
  return new Promise((resolve, reject) => {
    const tx = d.transaction(STORE, "readwrite")
    tx.objectStore(STORE).put(value, key)
    tx.oncomplete = () => resolve()
    tx.onerror = () => reject(tx.error)
  })
}

/** A refusal of the server, with its stable code (`enrollment_code_used`, `revoked`…). */
export class Refused extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`)
    this.status = status
    this.code = code
  }
}

async function post(path, body) {
  const response = await fetch(new URL(path, location.origin), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    cache: "no-store",
  })
  const text = await response.text()
  let json = null
  try {
    json = JSON.parse(text)
  } catch {
    // Said below.
  }
  if (!response.ok) {
    throw new Refused(response.status, json?.code ?? `http_${response.status}`, json?.message ?? text)
  }
  if (json === null) throw new Error(`the server's answer to ${path} is not JSON`)
  return json
}

/** Whether this browser makes Ed25519 keys (Chromium 137+, Firefox 129+, Safari 17+). */
export async function hasEd25519() {
  try {
    await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"])
    return true
  } catch {
    return false
  }
}

/** A token as the SDK keeps it: valid until, by this device's clock, from the lifetime the
 *  server stated (so a device whose clock is off still renews in time). */
function received(token, expiresInSecs) {
  const lifetimeMs = expiresInSecs * 1000
  return { token, validUntil: Date.now() + lifetimeMs, lifetimeMs }
}

/** Whether the token is still worth dialling with (more than a third of its life left). */
export function fresh(token) {
  return token !== undefined && token.validUntil - Date.now() > token.lifetimeMs / 3
}

/** Makes the device key, enrolls it with the desk's one-time `code` and keeps what the
 *  server answered. Returns the stored identity. */
export async function enroll(code) {
  const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"])
  const publicKey = hex(await crypto.subtle.exportKey("raw", keys.publicKey))
  const answer = await post("/api/enroll", { code, public_key: publicKey })
  const identity = {
    deviceId: answer.device_id,
    technician: answer.technician,
    branchId: answer.branch_id,
    indexUrl: answer.assignment_index_url ?? null,
    publicKey,
    keys,
  }
  await put("identity", identity)
  await put("token", received(answer.token, answer.expires_in_secs))
  return identity
}

/** A fresh token for `identity`, renewed by signing the server's challenge with the key. */
export async function renew(identity) {
  const challenge = await post("/api/token/challenge", { device_id: identity.deviceId })
  const message = new TextEncoder().encode(
    `fieldsync-token-renewal-v1\n${challenge.branch_id}\n${identity.deviceId}\n${challenge.nonce}`,
  )
  const signature = hex(await crypto.subtle.sign({ name: "Ed25519" }, identity.keys.privateKey, message))
  const answer = await post("/api/token/renew", {
    device_id: identity.deviceId,
    nonce: challenge.nonce,
    signature,
  })
  const token = received(answer.token, answer.expires_in_secs)
  await put("token", token)
  return token
}

/** Who the server says the device is now (`GET /api/me`): learns the assignment index once
 *  a job was assigned after enrollment. */
export async function me(token) {
  const response = await fetch(new URL("/api/me", location.origin), {
    headers: { authorization: `Bearer ${token.token}` },
    cache: "no-store",
  })
  if (!response.ok) return null
  return response.json()
}

// ---- attachments (issue 15), as the SDK keeps them (client-sdk/src/attachments.rs) ----------
// The bytes are kept on the device under their SHA-256 (`blob:<digest>`) and listed as
// pending (`pendingBlobs`: [{job, digest}]) until the edge holds them; the job document only
// references them. Uploaded with `PUT /api/jobs/{job}/attachments/{sha256}` and the device's
// token, the whole body at once (a signature image is a few kilobytes); the edge checks the
// digest and keeps the bytes durably before it answers.

/** Keeps `bytes` for `job` under `digest` and marks them for upload. */
export async function keepBlob(job, digest, bytes) {
  await put(`blob:${digest}`, bytes)
  const pending = (await get("pendingBlobs")) ?? []
  if (!pending.some(p => p.job === job && p.digest === digest)) pending.push({ job, digest })
  await put("pendingBlobs", pending)
}

/** The blobs the edge has not confirmed yet. */
export async function pendingBlobs() {
  return (await get("pendingBlobs")) ?? []
}

/** Uploads every pending blob; returns what became of each (`uploaded`, or `later` with the
 *  reason). A blob the edge refuses for good (`digest_mismatch`, too large, not this
 *  technician's job) stays pending and is reported, never dropped silently. */
export async function uploadPending(token) {
  const outcomes = []
  for (const { job, digest } of await pendingBlobs()) {
    const bytes = await get(`blob:${digest}`)
    let outcome
    try {
      const response = await fetch(new URL(`/api/jobs/${job}/attachments/${digest}`, location.origin), {
        method: "PUT",
        headers: { authorization: `Bearer ${token.token}`, "content-type": "application/octet-stream" },
        body: bytes,
        cache: "no-store",
      })
      if (response.ok) outcome = { job, digest, uploaded: true }
      else {
        const answer = await response.json().catch(() => ({}))
        outcome = { job, digest, uploaded: false, code: answer.code ?? `http_${response.status}`, message: answer.message ?? "" }
      }
    } catch (e) {
      outcome = { job, digest, uploaded: false, code: "unreachable", message: String(e?.message ?? e) }
    }
    if (outcome.uploaded) {
      const left = (await pendingBlobs()).filter(p => !(p.job === job && p.digest === digest))
      await put("pendingBlobs", left)
    }
    outcomes.push(outcome)
  }
  return outcomes
}
