// A technician device built on the real JavaScript automerge-repo client, driven by the Rust
// integration tests (tests/it/js_interop.rs) to check that our server speaks the protocol the
// way an independent implementation does (DESIGN.md, "Three tiers, one protocol").
//
//   node device.mjs <action> --server ws://host:port/sync --peer-id <device-id>[:suffix]
//                            [--token <token>] [--doc automerge:<id>] [--value <text>]
//                            [--timeout-ms 20000]
//
// The token may also come from FIELDSYNC_TOKEN (so it stays out of the process list). It is
// sent as `?token=`, the way a browser must, since a browser WebSocket cannot set headers.
//
// Actions:
//   edit               find the job, set diagnosis.fault_cause to --value, and wait until the
//                      server's own heads (from its sync messages) include the change. The
//                      server announces heads only once the change is on disk, so exit 0 means
//                      the server holds the edit durably.
//   read               find the job and wait until diagnosis.fault_cause equals --value.
//   expect-unavailable find the job and expect the server to answer doc-unavailable, so that
//                      repo.find() rejects.
//   expect-refused     open a bare WebSocket (with --token if given) and expect the upgrade
//                      to be refused with HTTP 401. The repo's adapter retries forever on a
//                      refused socket, so this uses `ws` directly.
//   forbidden-write    write into --doc what a device may not (--what decision: approve its
//                      own approval request, made first; report: the report outcome; root: a
//                      new root field), expect the server's `error` message and its heads
//                      never to include the change; then, on the same connection, set --doc2's
//                      fault cause to --value and wait until the server holds it.
//
// The automerge-repo packages come from the node_modules beside this script, or from the
// folder FIELDSYNC_JS_MODULES names (tests/js/next: the 2.6 pre-release), so one script
// drives every client version the tests pin.
//
// Every run prints exactly one JSON line on stdout ({"ok": true, ...} or {"ok": false,
// "error": ...}) and exits 0 only on success; a run that does not finish within --timeout-ms
// fails with exit code 2.

import { createRequire } from "node:module"
import path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { parseArgs } from "node:util"

import WebSocket from "ws"

const modulesDir = process.env.FIELDSYNC_JS_MODULES ?? path.dirname(fileURLToPath(import.meta.url))
const requireFrom = createRequire(path.join(path.resolve(modulesDir), "package.json"))
/** Imports `name` as installed in `modulesDir`. */
const load = name => import(pathToFileURL(requireFrom.resolve(name)).href)
const { ImmutableString, Repo } = await load("@automerge/automerge-repo")
const { WebSocketClientAdapter } = await load("@automerge/automerge-repo-network-websocket")
const { decode: cborDecode } = await load("cbor-x")
// The 2.6 pre-release assumes what browsers and Node 22 have and Node 20 lacks: a global
// WebSocket and Promise.withResolvers.
globalThis.WebSocket ??= WebSocket
Promise.withResolvers ??= function withResolvers() {
  let resolve
  let reject
  const promise = new Promise((yes, no) => {
    resolve = yes
    reject = no
  })
  return { promise, resolve, reject }
}

const { positionals, values: args } = parseArgs({
  allowPositionals: true,
  options: {
    server: { type: "string" },
    token: { type: "string" },
    "peer-id": { type: "string" },
    doc: { type: "string" },
    doc2: { type: "string" },
    what: { type: "string" },
    value: { type: "string" },
    "timeout-ms": { type: "string", default: "20000" },
  },
})

const action = positionals[0]
const timeoutMs = Number(args["timeout-ms"])
const token = args.token ?? process.env.FIELDSYNC_TOKEN

let finished = false
let step = "starting"
const started = Date.now()

/** Notes what the run is doing (stderr, shown by the Rust test when a run fails). */
function progress(what) {
  step = what
  process.stderr.write(`[device.mjs +${Date.now() - started} ms] ${what}\n`)
}

/** Prints the one result line and exits once stdout has taken it (only the first call counts). */
function finish(code, result) {
  if (finished) return
  finished = true
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code))
}

function fail(error, extra = {}) {
  finish(1, { ok: false, action, error: String(error?.stack ?? error), ...extra })
}

function required(name) {
  const value = args[name]
  if (value === undefined) {
    fail(`--${name} is required for ${action}`)
    throw new Error("unreachable")
  }
  return value
}

/** The sync URL with the token as a query parameter, as a browser client sends it. */
function syncUrl(withToken) {
  const url = new URL(required("server"))
  if (withToken !== undefined) url.searchParams.set("token", withToken)
  return url.toString()
}

/** Resolves once `check()` holds, re-checking whenever `emitter` emits one of `events`. */
function until(check, emitter, events) {
  return new Promise(resolve => {
    const recheck = () => {
      if (check()) {
        for (const event of events) emitter.off(event, recheck)
        resolve()
      }
    }
    for (const event of events) emitter.on(event, recheck)
    recheck()
  })
}

/** A repo with no storage that syncs with the server only, the server's peer id, and the
 *  `error` messages the server sends (the adapter only logs them). */
async function connect() {
  const adapter = new WebSocketClientAdapter(syncUrl(token))
  const errors = []
  const receive = adapter.receiveMessage.bind(adapter)
  adapter.receiveMessage = bytes => {
    try {
      const message = cborDecode(new Uint8Array(bytes))
      if (message?.type === "error") errors.push(String(message.message))
    } catch {
      // The adapter reports what does not decode.
    }
    return receive(bytes)
  }
  const repo = new Repo({
    network: [adapter],
    peerId: required("peer-id"),
    storage: undefined,
  })
  progress("waiting for the server's peer message")
  // Look documents up only once the server has answered `join`: before that the repo would
  // find nobody to ask and could call a document unavailable without asking the server.
  await until(() => repo.peers.length > 0, repo.networkSubsystem, ["peer"])
  const serverPeer = repo.peers[0]
  progress(`joined server ${serverPeer}`)
  return { repo, serverPeer, errors }
}

/** Resolves once `check()` holds, polling every 20 ms. */
async function poll(check) {
  while (!check()) await new Promise(resolve => setTimeout(resolve, 20))
}

/** Resolves once the server's heads (from its sync messages) include `handle`'s heads. */
function serverHolds(handle, storageId) {
  const ours = handle.heads()
  return until(
    () => {
      const theirs = handle.getRemoteHeads(storageId) ?? []
      return ours.every(h => theirs.includes(h))
    },
    handle,
    ["remote-heads"],
  )
}

/** Reads diagnosis.fault_cause, which the job schema keeps as a scalar string. */
function faultCause(doc) {
  const value = doc?.diagnosis?.fault_cause
  if (value === undefined || value === null) return null
  return value.toString()
}

async function edit() {
  const value = required("value")
  const { repo, serverPeer } = await connect()
  const storageId = repo.getStorageIdOfPeer(serverPeer)
  if (!storageId) throw new Error(`server peer ${serverPeer} announced no storageId`)
  progress("finding the document")
  const handle = await repo.find(required("doc"))
  progress("editing")
  handle.change(d => {
    // A scalar string, as the schema has it (two causes conflict rather than interleave).
    d.diagnosis.fault_cause = new ImmutableString(value)
  })
  const ours = handle.heads()
  progress(`waiting for the server's heads to include ${ours.join(",")}`)
  // The repo records the heads the server declares in each sync message it sends us
  // (`remote-heads` on the handle, keyed by the server's storage id).
  await until(
    () => {
      const theirs = handle.getRemoteHeads(storageId) ?? []
      return ours.every(h => theirs.includes(h))
    },
    handle,
    ["remote-heads"],
  )
  const result = { ok: true, action, heads: ours, serverStorageId: storageId }
  await repo.shutdown()
  finish(0, result)
}

async function read() {
  const expected = required("value")
  const { repo } = await connect()
  progress("finding the document")
  const handle = await repo.find(required("doc"))
  progress(`waiting for fault_cause ${JSON.stringify(expected)}`)
  await until(() => faultCause(handle.doc()) === expected, handle, ["change"])
  const doc = handle.doc()
  const result = {
    ok: true,
    action,
    fault_cause: faultCause(doc),
    job_id: doc.job_id?.toString() ?? null,
    heads: handle.heads(),
  }
  await repo.shutdown()
  finish(0, result)
}

async function expectUnavailable() {
  const url = required("doc")
  const { repo, serverPeer } = await connect()
  const seen = []
  repo.networkSubsystem.on("message", m => seen.push(m.type))
  let handle
  progress("finding the document")
  try {
    handle = await repo.find(url)
  } catch (e) {
    const result = {
      ok: seen.includes("doc-unavailable"),
      action,
      rejected: String(e.message ?? e),
      messages_from_server: seen,
      server: serverPeer,
    }
    if (!result.ok) result.error = "find() rejected but the server sent no doc-unavailable"
    await repo.shutdown()
    finish(result.ok ? 0 : 1, result)
    return
  }
  fail("the document was available", { doc: JSON.stringify(handle.doc()).slice(0, 200) })
}

function expectRefused() {
  const socket = new WebSocket(syncUrl(token))
  socket.on("unexpected-response", (_request, response) => {
    let body = ""
    response.setEncoding("utf8")
    response.on("data", chunk => (body += chunk))
    response.on("end", () => {
      const result = { ok: response.statusCode === 401, action, status: response.statusCode, body }
      if (!result.ok) result.error = `expected HTTP 401, got ${response.statusCode}`
      finish(result.ok ? 0 : 1, result)
    })
  })
  socket.on("open", () => fail("the server accepted the WebSocket"))
  socket.on("error", e => fail(e))
}

async function forbiddenWrite() {
  const what = required("what")
  const value = required("value")
  const { repo, serverPeer, errors } = await connect()
  const storageId = repo.getStorageIdOfPeer(serverPeer)
  if (!storageId) throw new Error(`server peer ${serverPeer} announced no storageId`)
  const handle = await repo.find(required("doc"))
  if (what === "decision") {
    progress("asking for an approval, which a device may")
    handle.change(d => {
      // Scalar strings, as the schema has them (a plain JS string would be text).
      d.approvals["req-js"] = {
        kind: new ImmutableString("warranty_part"),
        reason: new ImmutableString("compressor under warranty"),
        requested_by: new ImmutableString("tech-wang"),
        requested_at: new Date(1793000000000),
        amount: 250000,
      }
    })
    await serverHolds(handle, storageId)
    progress("approving it, which only a manager may")
    handle.change(d => {
      d.approvals["req-js"].decision = {
        approved: true,
        by: new ImmutableString("desk:manager"),
        at: new Date(1793000060000),
        note: new ImmutableString("approved by myself"),
      }
    })
  } else if (what === "report") {
    progress("writing the report outcome")
    handle.change(d => {
      d.report = { status: "signed", at: new Date(1793000060000), report_id: "made-up", digest: "00" }
    })
  } else if (what === "root") {
    progress("adding a root field")
    handle.change(d => {
      d.bonus = 100
    })
  } else {
    throw new Error(`--what must be decision, report or root, not ${JSON.stringify(what)}`)
  }
  const forbidden = handle.heads()
  progress("waiting for the server's error message")
  await poll(() => errors.length > 0)
  // Give the server time to (wrongly) confirm the change before looking.
  await new Promise(resolve => setTimeout(resolve, 300))
  const theirs = handle.getRemoteHeads(storageId) ?? []
  const stored = forbidden.some(h => theirs.includes(h))
  progress("a legitimate edit of another job on the same connection")
  const other = await repo.find(required("doc2"))
  other.change(d => {
    d.diagnosis.fault_cause = new ImmutableString(value)
  })
  await serverHolds(other, storageId)
  const result = {
    ok: !stored,
    action,
    errors,
    server_confirmed_forbidden: stored,
    legit_heads: other.heads(),
  }
  if (stored) result.error = "the server's heads include the forbidden change"
  await repo.shutdown()
  finish(result.ok ? 0 : 1, result)
}

const actions = {
  "forbidden-write": forbiddenWrite,
  edit,
  read,
  "expect-unavailable": expectUnavailable,
  "expect-refused": expectRefused,
}

if (!(action in actions)) {
  fail(`unknown action ${JSON.stringify(action)}; one of ${Object.keys(actions).join(", ")}`)
} else {
  setTimeout(() => {
    finish(2, { ok: false, action, error: `timed out after ${timeoutMs} ms while: ${step}` })
  }, timeoutMs)
  Promise.resolve()
    .then(actions[action])
    .catch(e => fail(e))
}
