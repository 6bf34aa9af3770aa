// Push opt-in (loaded only by the notification settings page, kita/templates/pwa/push_optin.html).
// The browser's push service hands out a subscription; the server stores it for this user
// (POST /api/v1/push/subscriptions) and its worker sends to it. The exports are also what the
// browser tests call, with a subscription made by the push emulator.

const KEY_URL = "/api/v1/push/key";
const SUBSCRIPTIONS_URL = "/api/v1/push/subscriptions";
const SESSION_URL = "/api/v1/session";

export function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

/** Which guide applies: "ios", "android", "firefox" or "desktop". */
export function platform() {
  const agent = navigator.userAgent;
  // iPadOS presents itself as a Mac; a touch screen tells them apart.
  if (/iPhone|iPad|iPod/.test(agent) || (/Macintosh/.test(agent) && navigator.maxTouchPoints > 1)) {
    return "ios";
  }
  if (/Firefox\//.test(agent)) {
    return "firefox";
  }
  return /Android/.test(agent) ? "android" : "desktop";
}

/** Opened from the home screen (iOS offers push only there). */
export function standalone() {
  return matchMedia("(display-mode: standalone)").matches || navigator.standalone === true;
}

class HttpError extends Error {
  constructor(response) {
    super(`${response.url}: ${response.status}`);
    this.status = response.status;
  }
}

async function call(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  if (!response.ok) {
    throw new HttpError(response);
  }
  return response;
}

async function send(method, body) {
  // The API keeps CSRF protection on: the token comes with the session (kita/blueprints/api.py).
  const { csrf_token: token } = await (await call(SESSION_URL)).json();
  return call(SUBSCRIPTIONS_URL, {
    method,
    headers: { "Content-Type": "application/json", "X-CSRFToken": token },
    body: JSON.stringify(body),
  });
}

/** Hand a subscription (a PushSubscription or its JSON: {endpoint, keys: {p256dh, auth}}) to
 *  the server for the logged-in user; resolves to the server's answer ({id}). */
export async function register(subscription) {
  const json = typeof subscription.toJSON === "function" ? subscription.toJSON() : subscription;
  const keys = json.keys || {};
  const body = { endpoint: json.endpoint, keys: { p256dh: keys.p256dh, auth: keys.auth } };
  return (await send("POST", body)).json();
}

/** The server forgets the subscription with this endpoint. */
export async function unregister(endpoint) {
  await send("DELETE", { endpoint });
}

function keyBytes(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4)), (c) =>
    c.charCodeAt(0),
  );
}

function sameKey(buffer, bytes) {
  const old = buffer ? new Uint8Array(buffer) : new Uint8Array();
  return old.length === bytes.length && old.every((byte, i) => byte === bytes[i]);
}

/** Ask for permission, subscribe this browser with the server's VAPID key, and register it.
 *  Must run in a click handler (browsers ask for permission only on a user's gesture). */
export async function subscribe() {
  const permission = await Notification.requestPermission();
  if (permission !== "granted") {
    return permission;
  }
  const key = keyBytes((await (await call(KEY_URL)).json()).publicKey);
  const registration = await withTimeout(navigator.serviceWorker.ready);
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options.applicationServerKey, key)) {
    // Made for another server key (the server's keys were replaced): useless now.
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription ||= await withTimeout(
    registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
  );
  await register(subscription);
  return "granted";
}

/** The browser's push service may be out of reach (offline, blocked): it then never answers, and
 *  the page says it failed instead of waiting forever. */
function withTimeout(promise) {
  const ms = Number(document.querySelector("[data-push-optin]")?.dataset.timeoutMs) || 20000;
  const late = new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), ms));
  return Promise.race([promise, late]);
}

/** Stop notifications on this device: the browser drops the subscription at once (so nothing
 *  arrives even if the server cannot be told now), then the server forgets it. */
export async function unsubscribe() {
  const registration = await withTimeout(navigator.serviceWorker.ready);
  const subscription = await registration.pushManager.getSubscription();
  if (subscription) {
    await subscription.unsubscribe();
    await unregister(subscription.endpoint);
  }
}

/** The status to show: see the data-state paragraphs of the template. */
export async function currentState() {
  if (platform() === "ios" && !standalone()) {
    return "ios-install";
  }
  if (!supported()) {
    return "unsupported";
  }
  if (Notification.permission === "denied") {
    return "denied";
  }
  const registration = await withTimeout(navigator.serviceWorker.ready);
  const subscription = await registration.pushManager.getSubscription();
  if (subscription && Notification.permission === "granted") {
    // Tell the server again (it answers 200 when it knows it): a lost row heals itself.
    register(subscription).catch(() => {});
    return "on";
  }
  return "off";
}

function show(root, state) {
  for (const paragraph of root.querySelectorAll("[data-state]")) {
    paragraph.hidden = paragraph.dataset.state !== state;
  }
  root.querySelector("[data-push-enable]").hidden = !["off", "failed"].includes(state);
  root.querySelector("[data-push-disable]").hidden = state !== "on";
}

async function act(root, action) {
  show(root, "busy");
  try {
    const outcome = await action();
    show(root, outcome === "denied" ? "denied" : await currentState());
  } catch (error) {
    const unavailable = error instanceof HttpError && [404, 503].includes(error.status);
    show(root, unavailable ? "unavailable" : "failed");
  }
  // The pressed button may be gone now: keyboard focus goes to what replaced it.
  const next = root.querySelector(
    "[data-push-enable]:not([hidden]), [data-push-disable]:not([hidden])",
  );
  (next || root.querySelector(".push-status")).focus();
}

function init(root) {
  const guide = root.querySelector(`details[data-platform="${platform()}"]`);
  if (guide) {
    guide.open = true;
  }
  root.querySelector("[data-push-enable]").addEventListener("click", () => act(root, subscribe));
  root.querySelector("[data-push-disable]").addEventListener("click", () => act(root, unsubscribe));
  show(root, "checking");
  currentState().then(
    (state) => show(root, state),
    () => show(root, "failed"),
  );
}

const root = document.querySelector("[data-push-optin]");
if (root) {
  init(root);
}
