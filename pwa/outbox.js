// kita outbox: observations and photos written on a shared tablet, kept in IndexedDB until the
// server has them. Everything personal is encrypted with AES-GCM under a key the server hands
// out after a PIN unlock; the page imports it as non-extractable and only holds it in memory, so
// after a lock IndexedDB holds ciphertexts and ids only. Entries carry the UUIDs the client made
// and are sent with an Idempotency-Key: a retried upload never creates a second row.
// Nothing is dropped without the educator asking for it: damaged, refused and conflicting
// entries stay and are shown.

const DB_NAME = "kita-outbox";
const STORE = "entries";
const API = "/api/v1";
const SYNCED_KEEP_MS = 24 * 60 * 60 * 1000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function openDb() {
  const open = indexedDB.open(DB_NAME, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE, { keyPath: "id" });
  return request(open);
}

// One write transaction; a full disk rejects with the QuotaExceededError the caller shows.
function write(db, fn) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, "readwrite");
    fn(tx.objectStore(STORE));
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export async function importKey(base64url) {
  const text = atob(base64url.replace(/-/g, "+").replace(/_/g, "/"));
  const raw = Uint8Array.from(text, (c) => c.charCodeAt(0));
  try {
    return await crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, [
      "encrypt",
      "decrypt",
    ]);
  } finally {
    raw.fill(0);
  }
}

export class Outbox {
  constructor(db, key, userId, csrf) {
    this.db = db;
    this.key = key;
    this.userId = userId;
    this.csrf = csrf;
    this.damaged = new Set();
    this.running = null;
    this.timer = null;
    this.onchange = () => {};
    this.onlocked = () => {};
  }

  static async open(key, userId, csrf) {
    const outbox = new Outbox(await openDb(), key, userId, csrf);
    await outbox.prune();
    return outbox;
  }

  // At lock: the key goes, so nothing here can be read any more.
  drop() {
    this.key = null;
    clearTimeout(this.timer);
    this.db.close();
  }

  aad(record, part) {
    // Binds a ciphertext to its owner, entry and field: moved elsewhere it does not decrypt.
    return encoder.encode(`kita-outbox/${this.userId}/${record.id}/${part}`);
  }

  async seal(record, part, bytes) {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const params = { name: "AES-GCM", iv, additionalData: this.aad(record, part) };
    return { iv, ct: new Uint8Array(await crypto.subtle.encrypt(params, this.key, bytes)) };
  }

  async unseal(record, part, box) {
    const params = { name: "AES-GCM", iv: box.iv, additionalData: this.aad(record, part) };
    return new Uint8Array(await crypto.subtle.decrypt(params, this.key, box.ct));
  }

  async readJson(record, part, box) {
    return JSON.parse(decoder.decode(await this.unseal(record, part, box)));
  }

  async all() {
    const store = this.db.transaction(STORE).objectStore(STORE);
    const rows = await request(store.getAll());
    return rows.filter((row) => row.user === this.userId).sort((a, b) => (a.created < b.created ? 1 : -1));
  }

  async get(id) {
    return request(this.db.transaction(STORE).objectStore(STORE).get(id));
  }

  put(record) {
    return write(this.db, (store) => store.put(record));
  }

  async remove(id) {
    await write(this.db, (store) => store.delete(id));
    this.damaged.delete(id);
    this.onchange();
  }

  async prune() {
    const old = Date.now() - SYNCED_KEEP_MS;
    const rows = (await this.all()).filter((r) => r.state === "synced" && Date.parse(r.created) < old);
    if (rows.length) {
      await write(this.db, (store) => rows.forEach((r) => store.delete(r.id)));
    }
  }

  // A new observation; throws (QuotaExceededError among others) without storing anything.
  async add({ childId, text, photo }) {
    const record = {
      id: crypto.randomUUID(),
      user: this.userId,
      child: childId,
      state: "pending",
      base: 0,
      version: null,
      saved: false,
      created: new Date().toISOString(),
      attempts: 0,
      error: "",
      photos: [],
    };
    const observedOn = new Date().toLocaleDateString("sv"); // YYYY-MM-DD, local day
    const body = { text, observed_on: observedOn };
    record.body = await this.seal(record, "body", encoder.encode(JSON.stringify(body)));
    if (photo) {
      const photoId = crypto.randomUUID();
      const bytes = new Uint8Array(await photo.arrayBuffer());
      const box = await this.seal(record, `photo/${photoId}`, bytes);
      record.photos.push({ id: photoId, type: photo.type || "image/jpeg", done: false, ...box });
    }
    await this.put(record);
    this.onchange();
    return record;
  }

  // A new text for an entry already sent (or refused): sent again on top of the known version.
  async edit(id, text) {
    const record = await this.get(id);
    const body = await this.readJson(record, "body", record.body);
    body.text = text;
    record.body = await this.seal(record, "body", encoder.encode(JSON.stringify(body)));
    record.base = record.version || 0;
    Object.assign(record, { state: "pending", saved: false, error: "", attempts: 0 });
    await this.put(record);
    this.onchange();
  }

  async keepMine(id) {
    const record = await this.get(id);
    record.base = record.theirs.version;
    Object.assign(record, { theirs: null, state: "pending", saved: false, error: "", attempts: 0 });
    await this.put(record);
    this.onchange();
    return this.sync();
  }

  async takeTheirs(id) {
    const record = await this.get(id);
    const theirs = await this.readJson(record, "theirs", record.theirs);
    const body = await this.readJson(record, "body", record.body);
    body.text = theirs.text;
    record.body = await this.seal(record, "body", encoder.encode(JSON.stringify(body)));
    record.version = record.base = record.theirs.version;
    Object.assign(record, { theirs: null, state: "synced", saved: true, error: "" });
    await this.put(record);
    this.onchange();
  }

  // Send what waits. Concurrent calls share one run; failures reschedule with backoff.
  sync() {
    if (!this.key) {
      return Promise.resolve();
    }
    if (!this.running) {
      this.running = this.run().finally(() => {
        this.running = null;
        this.onchange();
      });
    }
    return this.running;
  }

  retryLater(attempts) {
    clearTimeout(this.timer);
    const delay = Math.min(60000, 1000 * 2 ** Math.min(attempts, 6));
    this.timer = setTimeout(() => this.sync(), delay);
  }

  async run() {
    for (const record of await this.all()) {
      if (!this.key || record.state !== "pending" || this.damaged.has(record.id)) {
        continue;
      }
      const outcome = await this.send(record);
      this.onchange();
      if (outcome === "locked") {
        this.onlocked();
        return;
      }
      if (outcome === "retry") {
        record.attempts += 1;
        await this.put(record);
        this.retryLater(record.attempts);
      }
    }
  }

  headers(idempotencyKey, extra = {}) {
    return { "Idempotency-Key": idempotencyKey, "X-CSRFToken": this.csrf, ...extra };
  }

  // "done", "retry" (kept, sent again later), "stop" (kept, waits for the educator), "locked".
  async send(record) {
    let body;
    try {
      body = await this.readJson(record, "body", record.body);
    } catch {
      this.damaged.add(record.id);
      return "stop";
    }
    if (!record.saved) {
      const payload = {
        child_id: record.child,
        kind: "observation",
        status: "draft",
        title: "",
        text: body.text,
        observed_on: body.observed_on,
        base_version: record.base,
      };
      const answer = await this.call(`${API}/observations/${record.id}`, {
        method: "PUT",
        headers: this.headers(record.id, { "Content-Type": "application/json" }),
        body: JSON.stringify(payload),
      });
      if (answer.kind !== "ok") {
        return this.failed(record, answer);
      }
      Object.assign(record, { version: answer.data.version, saved: true, error: "" });
      await this.put(record);
    }
    for (const photo of record.photos.filter((p) => !p.done)) {
      let bytes;
      try {
        bytes = await this.unseal(record, `photo/${photo.id}`, photo);
      } catch {
        this.damaged.add(record.id);
        return "stop";
      }
      const form = new FormData();
      form.append("photo_id", photo.id);
      form.append("file", new Blob([bytes], { type: photo.type }), "photo");
      const answer = await this.call(`${API}/observations/${record.id}/photos`, {
        method: "POST",
        headers: this.headers(photo.id),
        body: form,
      });
      if (answer.kind !== "ok") {
        return this.failed(record, answer);
      }
      // Sent: the encrypted copy is no longer needed on the tablet.
      Object.assign(photo, { done: true, iv: null, ct: null });
      await this.put(record);
    }
    Object.assign(record, { state: "synced", base: record.version, error: "", attempts: 0 });
    await this.put(record);
    return "done";
  }

  async call(url, init) {
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", ...init });
    } catch {
      return { kind: "network" };
    }
    const data = await response.json().catch(() => ({}));
    if (response.ok) {
      return { kind: "ok", data };
    }
    if (response.status === 401) {
      return { kind: "locked" };
    }
    if (response.status === 409) {
      return { kind: "conflict", data };
    }
    if (response.status >= 500 || response.status === 429) {
      return { kind: "server" };
    }
    return { kind: "rejected", message: data.message || String(response.status) };
  }

  async failed(record, answer) {
    if (answer.kind === "locked") {
      return "locked";
    }
    if (answer.kind === "network" || answer.kind === "server") {
      record.error = answer.kind;
      await this.put(record);
      return "retry";
    }
    if (answer.kind === "conflict") {
      const current = await this.call(`${API}/observations/${record.id}`, { method: "GET" });
      if (current.kind !== "ok") {
        record.error = "server";
        await this.put(record);
        return "retry";
      }
      const theirs = { text: current.data.text, title: current.data.title };
      const box = await this.seal(record, "theirs", encoder.encode(JSON.stringify(theirs)));
      Object.assign(record, { state: "conflict", theirs: { ...box, version: current.data.version } });
      await this.put(record);
      return "stop";
    }
    Object.assign(record, { state: "rejected", error: answer.message });
    await this.put(record);
    return "stop";
  }
}
