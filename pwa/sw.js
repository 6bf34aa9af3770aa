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

// The parent's feed offline. Pages hold personal data, so the worker keeps a copy of one only
// when the server vouches for it with `X-Kita-Cache: private-feed; max-age=N`, which it sends
// for the home feed of a parent-only account (never staff, so never on a shared tablet). The
// copy is keyed by the URL, carries its expiry (at most the session's lifetime), and goes when:
// the user logs out (the "logout" message below and Clear-Site-Data), any page arrives with
// `X-Kita-Cache: drop` (the server sends that to visitors without a session: the session ended
// or another person is logging in), or the page comes back without the mark (an account that
// became staff). An error page or a redirect leaves the copy alone.
const FEED_CACHE = "kita-feed";
const FEED_MARK = /^private-feed; *max-age=(\d+)$/;

async function keepFeed(url, response) {
  const mark = response.headers.get("X-Kita-Cache") || "";
  if (mark === "drop") {
    await caches.delete(FEED_CACHE);
    return;
  }
  if (response.status !== 200) {
    return; // a redirect or a server error says nothing about the copy
  }
  const match = FEED_MARK.exec(mark);
  if (match) {
    const headers = new Headers(response.headers);
    headers.set("X-Kita-Expires", String(Date.now() + Number(match[1]) * 1000));
    const copy = new Response(await response.blob(), { headers });
    await (await caches.open(FEED_CACHE)).put(url, copy);
  } else if (await caches.has(FEED_CACHE)) {
    await (await caches.open(FEED_CACHE)).delete(url);
  }
}

async function feedCopy(url) {
  const copy = await caches.match(url, { cacheName: FEED_CACHE });
  if (!copy) {
    return null;
  }
  if (!(Number(copy.headers.get("X-Kita-Expires")) > Date.now())) {
    await (await caches.open(FEED_CACHE)).delete(url);
    return null;
  }
  // Marked so the page says it is a saved copy (app.js shows the note).
  const html = (await copy.text()).replace('<main id="main"', '<main data-offline id="main"');
  return new Response(html, { headers: copy.headers });
}

async function networkFirst(event) {
  const url = new URL(event.request.url);
  url.search = "";
  url.hash = "";
  try {
    const response = (await event.preloadResponse) || (await fetch(event.request));
    event.waitUntil(keepFeed(url.href, response.clone()).catch(() => {}));
    return response;
  } catch {
    const copy = await feedCopy(url.href).catch(() => null);
    const offline = copy || (await caches.match(OFFLINE_URL, { cacheName: VERSION }));
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

// Push (kita/push/payload.py): a category, a title already in the recipient's language, a path
// inside the app and a topic; never a name or message text. The topic is the tag, so a newer
// notice about the same message (an edit, a recall) replaces the older one on the screen.
function appUrl(raw) {
  if (typeof raw !== "string") {
    return null;
  }
  try {
    const url = new URL(raw, self.location.origin);
    return url.origin === self.location.origin ? url.href : null;
  } catch {
    return null;
  }
}

self.addEventListener("push", (event) => {
  let payload = {};
  try {
    payload = (event.data && event.data.json()) || {};
  } catch {
    // Not JSON: still show something, as every push must (userVisibleOnly).
  }
  const text = (value) => (typeof value === "string" && value.trim() ? value.trim() : null);
  const tag = text(payload.topic);
  const options = {
    // "auto": the title's own script decides, so Arabic and Persian titles read right to left.
    dir: "auto",
    icon: "/static/icons/icon-192.png",
    badge: "/static/icons/badge-96.png",
    data: { url: appUrl(text(payload.url) || "/home") || self.location.origin + "/home" },
  };
  if (tag) {
    Object.assign(options, { tag, renotify: true });
  }
  if (text(payload.lang)) {
    options.lang = text(payload.lang);
  }
  event.waitUntil(self.registration.showNotification(text(payload.title) || "kita", options));
});

// A tap opens the message: an app window already there is focused, else a new one opens.
// Only URLs of this app are opened; anything else in the data is ignored.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = appUrl(event.notification.data && event.notification.data.url);
  if (!url) {
    return;
  }
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const open = windows.find((client) => client.url === url);
      return open ? open.focus() : self.clients.openWindow(url);
    })(),
  );
});

// Background Sync for the tablet outbox (pwa/outbox.js). The outbox is encrypted with a key that
// only an unlocked page holds in memory, so the worker cannot send it itself: it wakes the open
// tablet pages, which send what waits (and also do so at start and on the `online` event).
self.addEventListener("sync", (event) => {
  if (event.tag !== "outbox") {
    return;
  }
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      windows.forEach((client) => client.postMessage({ type: "outbox-sync" }));
    })(),
  );
});

// A tablet lock (pwa/tablet.js) drops every cache but the shell: the shell holds no personal
// data, and keeping it lets a tablet that locked itself offline still show the offline page.
self.addEventListener("message", (event) => {
  if (event.data === "tablet-lock") {
    event.waitUntil(
      (async () => {
        const keys = await caches.keys();
        await Promise.all(keys.filter((key) => key !== VERSION).map((key) => caches.delete(key)));
      })(),
    );
  }
});
