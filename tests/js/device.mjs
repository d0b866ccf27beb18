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
//
// Every run prints exactly one JSON line on stdout ({"ok": true, ...} or {"ok": false,
// "error": ...}) and exits 0 only on success; a run that does not finish within --timeout-ms
// fails with exit code 2.

import { parseArgs } from "node:util"

import { ImmutableString, Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import WebSocket from "ws"

const { positionals, values: args } = parseArgs({
  allowPositionals: true,
  options: {
    server: { type: "string" },
    token: { type: "string" },
    "peer-id": { type: "string" },
    doc: { type: "string" },
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

/** A repo with no storage that syncs with the server only, and the server's peer id. */
async function connect() {
  const repo = new Repo({
    network: [new WebSocketClientAdapter(syncUrl(token))],
    peerId: required("peer-id"),
    storage: undefined,
  })
  progress("waiting for the server's peer message")
  // Look documents up only once the server has answered `join`: before that the repo would
  // find nobody to ask and could call a document unavailable without asking the server.
  await until(() => repo.peers.length > 0, repo.networkSubsystem, ["peer"])
  const serverPeer = repo.peers[0]
  progress(`joined server ${serverPeer}`)
  return { repo, serverPeer }
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

const actions = {
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
