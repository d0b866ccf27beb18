// The reference automerge-repo sync server, as a team would deploy it: a Repo with the
// WebSocket server adapter and NodeFS storage, sharing nothing unasked (sharePolicy false),
// no auth. fieldsync-bench starts it as a child process and reads "listening PORT" from stdout.
//
// Usage: node server.mjs DATA_DIR [PORT]
import http from "node:http"
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { WebSocketServer } from "ws"

const dir = process.argv[2] ?? "js-data"
const port = Number(process.argv[3] ?? 0)

const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 * 1024 })
new Repo({
  network: [new NodeWSServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dir),
  peerId: `js-sync-server-${process.pid}`,
  sharePolicy: async () => false,
})

const server = http.createServer((_req, res) => {
  res.writeHead(200, { "content-type": "text/plain" })
  res.end("ok\n")
})
server.on("upgrade", (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit("connection", ws, request))
})
// The Repo attaches the adapter asynchronously (after loading its storage id); a socket
// accepted before that would have no handler, so listen only once it is attached.
const ready = () =>
  wss.listenerCount("connection") > 0 ? Promise.resolve() : new Promise((r) => setTimeout(r, 10)).then(ready)
await ready()
server.listen(port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`)
})
process.on("SIGTERM", () => process.exit(0))
