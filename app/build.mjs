// Builds the app into server/assets/app/ (committed; the edge embeds it, server/src/edge/pwa.rs):
// the bundle (esbuild, pinned in package-lock.json), automerge's WebAssembly, the page, the
// style sheet, the manifest and icons, and the service worker with the list of what it caches
// and a version that is the hash of all of it. The same sources and lockfile give the same
// bytes: CI rebuilds and checks `git diff --exit-code server/assets/app` (.ci/run).

import { createHash } from "node:crypto"
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import path from "node:path"
import { fileURLToPath } from "node:url"

import { build } from "esbuild"

const here = path.dirname(fileURLToPath(import.meta.url))
const src = path.join(here, "src")
const out = path.join(here, "..", "server", "assets", "app")
const require = createRequire(import.meta.url)

rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

await build({
  entryPoints: [path.join(src, "main.js")],
  outfile: path.join(out, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["chrome111", "safari16.4", "firefox115"],
  minify: true,
  legalComments: "eof",
  charset: "utf8",
  define: { "process.env.NODE_ENV": '"production"', global: "globalThis" },
  logLevel: "warning",
})

// automerge's WebAssembly, fetched by the page (initializeWasm) rather than inlined as base64.
copyFileSync(require.resolve("@automerge/automerge/automerge.wasm"), path.join(out, "automerge.wasm"))

for (const name of ["index.html", "app.css", "manifest.webmanifest", "icon.svg", "icon-192.png", "icon-512.png"]) {
  copyFileSync(path.join(src, name), path.join(out, name))
}

const shell = readdirSync(out).sort()
const hash = createHash("sha256")
for (const name of shell) {
  hash.update(name)
  hash.update(readFileSync(path.join(out, name)))
}
const version = hash.digest("hex").slice(0, 16)
const worker = readFileSync(path.join(src, "sw.js"), "utf8")
  .replace("__VERSION__", version)
  .replace("__SHELL__", JSON.stringify(["./", ...shell]))
writeFileSync(path.join(out, "sw.js"), worker)

for (const name of [...shell, "sw.js"]) {
  const size = readFileSync(path.join(out, name)).length
  console.log(`${name.padEnd(22)} ${String(size).padStart(9)} bytes`)
}
