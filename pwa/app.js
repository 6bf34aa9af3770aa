// kita app bootstrap: registers the service worker and wires small progressive enhancements.
// No framework, no build step; every feature also works without JavaScript.

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {
    // The app works without the worker; nothing to tell the user.
  });
}

// Forms that destroy something ask once more; the question comes from the server, translated.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm) {
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }
});

// Logout: the worker drops its caches and this page its storage, even where the server's
// Clear-Site-Data header is not honoured. Runs after the confirm handler, so only when the
// form is really sent.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !("logout" in form.dataset) || event.defaultPrevented) {
    return;
  }
  navigator.serviceWorker?.controller?.postMessage("logout");
  try {
    localStorage.clear();
    sessionStorage.clear();
  } catch {
    // Storage may be disabled; then there is nothing to clear.
  }
});

// A page the worker kept for offline reading (the parent's feed) says that it is a saved copy.
const savedCopy = document.querySelector("main[data-offline]");
if (savedCopy?.dataset.offlineNote) {
  const note = document.createElement("p");
  note.className = "notice info";
  note.setAttribute("role", "status");
  note.textContent = savedCopy.dataset.offlineNote;
  savedCopy.prepend(note);
}

// The language switch submits on change; the button stays for keyboard and no-JS users.
const languageSelect = document.getElementById("language-select");
if (languageSelect) {
  languageSelect.addEventListener("change", () => languageSelect.form.submit());
}
