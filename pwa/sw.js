// kita service worker: versioned app shell (cache-first), pages network-first with an offline page.
// Pages may hold personal data and are never put in a cache here (the server also sends no-store).
// The server replaces __SHELL_VERSION__ with a digest of the shell, so any change to it installs
// a new worker and a new cache, and the old cache is dropped on activation.
const VERSION = "kita-shell-__SHELL_VERSION__";
const OFFLINE_URL = "/offline";
const SHELL = ["/static/app.css", "/static/app.js", "/static/icons/icon-192.png", OFFLINE_URL];

async function cacheShell() {
  // Without cookies: the cached offline page must not name the user who happened to install it.
  // "no-cache" revalidates with the server, so a shell never pins a stale HTTP-cached file.
  const requests = SHELL.map((url) => new Request(url, { credentials: "omit", cache: "no-cache" }));
  const cache = await caches.open(VERSION);
  await cache.addAll(requests);
}

self.addEventListener("install", (event) => {
  event.waitUntil(cacheShell().then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      const keys = await caches.keys();
      await Promise.all(keys.filter((key) => key !== VERSION).map((key) => caches.delete(key)));
      if (self.registration.navigationPreload) {
        // The page request starts while the worker boots instead of after it.
        await self.registration.navigationPreload.enable();
      }
      await self.clients.claim();
    })(),
  );
});

async function fromShell(request) {
  const hit = await caches.match(request, { cacheName: VERSION, ignoreSearch: true });
  return hit || fetch(request);
}

async function networkFirst(event) {
  try {
    const preloaded = await event.preloadResponse;
    return preloaded || (await fetch(event.request));
  } catch {
    const offline = await caches.match(OFFLINE_URL, { cacheName: VERSION });
    return offline || Response.error();
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) {
    return;
  }
  if (SHELL.includes(url.pathname) && url.pathname !== OFFLINE_URL) {
    event.respondWith(fromShell(request));
  } else if (request.mode === "navigate") {
    event.respondWith(networkFirst(event));
  }
  // Everything else (other static files, the API) goes to the network untouched.
});

// Logout: the page tells the worker before the server's Clear-Site-Data arrives, so nothing
// cached survives even where that header is not supported. The shell (no personal data) is
// fetched again so the next user still gets the offline page.
self.addEventListener("message", (event) => {
  if (event.data === "logout") {
    event.waitUntil(
      (async () => {
        const keys = await caches.keys();
        await Promise.all(keys.map((key) => caches.delete(key)));
        await cacheShell().catch(() => {});
      })(),
    );
  }
});
