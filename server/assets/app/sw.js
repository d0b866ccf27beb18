// The app's service worker (scope /app/): keeps the app shell in a cache named after the
// build, so the app opens with no network. app/build writes VERSION and SHELL; a new build
// is a new sw.js, which the browser installs, and the old cache is dropped on activation.
// Only the shell is cached here: the jobs live in IndexedDB (automerge-repo's storage), and
// nothing outside /app/ (the API, /sync) goes through this cache.

const VERSION = "465e3c71975ebcc5"
const SHELL = ["./","app.css","app.js","automerge.wasm","icon-192.png","icon-512.png","icon.svg","index.html","manifest.webmanifest"]
const CACHE = `fieldsync-app-${VERSION}`

self.addEventListener("install", event => {
  event.waitUntil(
    caches
      .open(CACHE)
      // `reload`: the server's copy, never the HTTP cache's.
      .then(cache => cache.addAll(SHELL.map(name => new Request(name, { cache: "reload" }))))
      .then(() => self.skipWaiting()),
  )
})

self.addEventListener("activate", event => {
  event.waitUntil(
    caches
      .keys()
      .then(keys => Promise.all(keys.filter(k => k.startsWith("fieldsync-app-") && k !== CACHE).map(k => caches.delete(k))))
      .then(() => self.clients.claim()),
  )
})

self.addEventListener("fetch", event => {
  const request = event.request
  if (request.method !== "GET") return
  const url = new URL(request.url)
  if (url.origin !== self.location.origin || !url.pathname.startsWith("/app/")) return
  // The page itself, whatever its query: the cached index.html.
  const key = request.mode === "navigate" ? new URL("index.html", self.registration.scope).href : request
  event.respondWith(
    caches.open(CACHE).then(cache =>
      cache.match(key, { ignoreSearch: request.mode === "navigate" }).then(hit => hit ?? fetch(request)),
    ),
  )
})
