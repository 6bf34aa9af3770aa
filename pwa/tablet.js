// kita on a shared staff tablet: the auto-lock, and today's view with offline observation capture.
// The outbox key comes from the server after the PIN unlock and lives only in this page's memory;
// locking (by hand, by the timer, or by the server) drops it and returns to the tiles.
// Background Sync: the service worker cannot read the outbox (it never holds the key), so on a
// `sync` event it wakes the open tablet pages, which send what waits.

import { Outbox, importKey } from "./outbox.js";

const root = document.getElementById("tablet-today");
// Set when the timer locked the tablet offline: the server session could not be ended then, so
// the next page that still finds it open ends it first.
const LOCK_PENDING = "kita-tablet-lock-pending";

// On the tiles and the PIN pad nobody is unlocked: make sure nothing of the last person stays
// (the server may have ended an idle session without this page seeing a lock).
if (document.querySelector("[data-tablet-locked]")) {
  navigator.serviceWorker?.controller?.postMessage("tablet-lock");
  try {
    localStorage.clear();
    sessionStorage.clear();
  } catch {
    // Storage may be disabled; then there is nothing to clear.
  }
}

if (root) {
  startToday(root);
}

function startToday(root) {
  const strings = JSON.parse(document.getElementById("tablet-strings").textContent);
  const csrf = document.querySelector('input[name="csrf_token"]').value;
  const status = document.getElementById("outbox-status");
  const list = document.getElementById("outbox-list");
  const capture = document.getElementById("capture");
  const form = document.getElementById("capture-form");
  const errorBox = document.getElementById("capture-error");
  const lockForm = document.getElementById("tablet-lock");
  const names = new Map();
  let outbox = null;
  let editing = null;

  const say = (text) => {
    status.textContent = text;
    status.hidden = !text;
  };

  // --- auto-lock ---------------------------------------------------------------------------
  const lockSeconds = Number(root.dataset.lockSeconds || 0);
  let lastActivity = Date.now();
  let lastPing = Date.now();
  function lock() {
    outbox?.drop();
    outbox = null;
    if (!navigator.onLine) {
      navigator.serviceWorker?.controller?.postMessage("tablet-lock");
      localStorage.clear();
      sessionStorage.clear();
      localStorage.setItem(LOCK_PENDING, "1");
      location.assign("/tablet");
      return;
    }
    if (lockForm) {
      // requestSubmit runs app.js's submit handlers: caches and local storage are cleared.
      lockForm.requestSubmit();
    } else {
      location.assign("/tablet");
    }
  }
  if (lockSeconds) {
    const touch = () => {
      lastActivity = Date.now();
      // Keep the server's (shorter) tablet idle timeout in step with real use of the page.
      if (navigator.onLine && Date.now() - lastPing > 60000) {
        lastPing = Date.now();
        fetch("/api/v1/session", { credentials: "same-origin" }).catch(() => {});
      }
    };
    for (const type of ["pointerdown", "keydown", "input", "scroll", "touchstart"]) {
      addEventListener(type, touch, { passive: true, capture: true });
    }
    setInterval(() => {
      if (Date.now() - lastActivity >= lockSeconds * 1000) {
        lock();
      }
    }, 1000);
  }

  // --- capture -----------------------------------------------------------------------------
  for (const link of root.querySelectorAll("[data-capture]")) {
    names.set(link.dataset.capture, link.dataset.childName);
    link.addEventListener("click", (event) => {
      if (!outbox) {
        return; // no tablet session: the link opens the documentation's own form
      }
      event.preventDefault();
      openCapture(link.dataset.capture, link.dataset.childName, link.dataset.photos === "1");
    });
  }

  function openCapture(childId, name, photos, text = "") {
    form.dataset.child = childId;
    capture.querySelector("[data-capture-name]").textContent = name;
    capture.querySelector("[data-photo-field]").hidden = !photos;
    form.elements.text.value = text;
    form.elements.photo.value = "";
    errorBox.hidden = true;
    capture.hidden = false;
    form.elements.text.focus();
  }

  function closeCapture() {
    form.reset();
    editing = null;
    capture.hidden = true;
  }

  capture.querySelector("[data-capture-cancel]").addEventListener("click", closeCapture);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = form.elements.text.value.trim();
    const photo = form.elements.photo.files[0] || null;
    const fail = (message) => {
      errorBox.textContent = message;
      errorBox.hidden = false;
    };
    if (!outbox) {
      return fail(strings.no_key);
    }
    if (!text) {
      form.elements.text.setAttribute("aria-invalid", "true");
      return fail(strings.text_required);
    }
    if (photo && photo.size > 10 * 1024 * 1024) {
      return fail(strings.too_large);
    }
    try {
      if (editing) {
        await outbox.edit(editing, text);
      } else {
        await outbox.add({ childId: form.dataset.child, text, photo });
      }
    } catch (error) {
      // Kept in the form: nothing typed is lost when the tablet cannot store it.
      return fail(error && error.name === "QuotaExceededError" ? strings.quota : String(error));
    }
    closeCapture();
    say(navigator.onLine ? strings.saved_local : strings.offline);
    navigator.serviceWorker?.ready
      .then((registration) => registration.sync?.register("outbox"))
      .catch(() => {});
    if (navigator.onLine) {
      outbox.sync();
    }
  });

  // --- the list ----------------------------------------------------------------------------
  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text) {
      node.textContent = text;
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  function button(label, action, onClick, className) {
    const node = element("button", label, className);
    node.type = "button";
    node.dataset.action = action;
    node.addEventListener("click", onClick);
    return node;
  }

  function removeEntry(id) {
    if (confirm(strings.remove_confirm)) {
      outbox.remove(id);
    }
  }

  async function render() {
    if (!outbox) {
      return;
    }
    const rows = await outbox.all();
    const items = [];
    for (const record of rows) {
      const item = element("li", "", `card outbox-${record.state}`);
      item.dataset.entry = record.id;
      item.append(element("strong", names.get(record.child) || "–"));
      let body = null;
      try {
        body = await outbox.readJson(record, "body", record.body);
      } catch {
        outbox.damaged.add(record.id);
      }
      if (!body) {
        item.classList.add("outbox-damaged");
        item.append(element("p", strings.damaged, "error"));
        item.append(button(strings.remove, "remove", () => removeEntry(record.id), "danger"));
        items.push(item);
        continue;
      }
      const photo = record.photos.length ? ` (${strings.photo})` : "";
      item.append(element("p", body.text.slice(0, 140) + photo, "excerpt"));
      const state = {
        pending: strings.pending,
        synced: strings.synced,
        conflict: strings.conflict,
        rejected: `${strings.rejected} ${record.error}`,
      }[record.state];
      item.append(element("p", state, record.state === "synced" ? "hint" : "error"));
      item.dataset.error = record.error || "";
      if (record.state === "pending" && record.error) {
        item.append(element("p", record.error === "server" ? strings.server_error : strings.network_error, "hint"));
      }
      if (record.state === "conflict") {
        let theirs = { text: "" };
        try {
          theirs = await outbox.readJson(record, "theirs", record.theirs);
        } catch {
          // Shown as empty; the educator still decides.
        }
        const compare = element("div", "", "conflict");
        compare.append(element("h3", strings.mine), element("p", body.text, "entry-text"));
        compare.append(element("h3", strings.theirs), element("p", theirs.text, "entry-text"));
        item.append(compare);
        item.append(button(strings.keep_mine, "keep-mine", () => outbox.keepMine(record.id), "primary"));
        item.append(button(strings.take_theirs, "take-theirs", () => outbox.takeTheirs(record.id)));
      }
      if (record.state === "synced" || record.state === "rejected") {
        item.append(
          button(strings.edit, "edit", () => {
            editing = record.id;
            openCapture(record.child, names.get(record.child) || "", false, body.text);
          }),
        );
      }
      if (record.state === "rejected") {
        item.append(button(strings.remove, "remove", () => removeEntry(record.id), "danger"));
      }
      items.push(item);
    }
    list.replaceChildren(...items);
    if (!items.length) {
      list.append(element("li", strings.empty, "empty"));
    }
  }

  // --- start -------------------------------------------------------------------------------
  async function start() {
    if (localStorage.getItem(LOCK_PENDING) && lockForm) {
      lock();
      return;
    }
    const response = await fetch("/api/v1/tablet/outbox-key", { credentials: "same-origin" });
    if (!response.ok) {
      return; // not a tablet session: the page works as plain links
    }
    const data = await response.json();
    const key = await importKey(data.key);
    outbox = await Outbox.open(key, data.user_id, csrf);
    root.dataset.outboxReady = "1";
    outbox.onchange = () => render().catch(() => {});
    outbox.onlocked = () => location.assign("/tablet");
    await render();
    if (navigator.onLine) {
      await outbox.sync();
    }
  }

  addEventListener("online", () => {
    say("");
    outbox?.sync();
  });
  addEventListener("offline", () => say(strings.offline));
  navigator.serviceWorker?.addEventListener("message", (event) => {
    if (event.data && event.data.type === "outbox-sync") {
      outbox?.sync();
    }
  });
  start().catch(() => say(strings.no_key));
}
