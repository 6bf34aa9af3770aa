// Message page only (messages/announcement.html): the original/translation switch and reading
// the message aloud with the device's own speech synthesis (nothing leaves the device).
// Both buttons are rendered hidden and shown here, so without JavaScript or without
// speechSynthesis no dead button appears.

const blocks = [...document.querySelectorAll("[data-readable]")];
const visibleBlock = () => blocks.find((block) => !block.hidden) || blocks[0];

const toggle = document.querySelector("[data-toggle-original]");
if (toggle && blocks.length === 2) {
  toggle.hidden = false;
  toggle.addEventListener("click", () => {
    stop();
    const showOriginal = toggle.getAttribute("aria-pressed") !== "true";
    blocks[0].hidden = showOriginal;
    blocks[1].hidden = !showOriginal;
    toggle.setAttribute("aria-pressed", String(showOriginal));
    toggle.textContent = showOriginal ? toggle.dataset.labelTranslation : toggle.dataset.labelOriginal;
  });
}

const reader = document.querySelector("[data-read-aloud]");
const synth = "speechSynthesis" in window && "SpeechSynthesisUtterance" in window ? window.speechSynthesis : null;
const readLabel = reader ? reader.textContent : "";

function stop() {
  if (synth && (synth.speaking || synth.pending)) {
    synth.cancel();
  }
  if (reader) {
    reader.textContent = readLabel;
    reader.setAttribute("aria-pressed", "false");
  }
}

if (reader && synth && blocks.length) {
  reader.hidden = false;
  reader.setAttribute("aria-pressed", "false");
  reader.addEventListener("click", () => {
    if (synth.speaking) {
      stop();
      return;
    }
    const block = visibleBlock();
    const utterance = new SpeechSynthesisUtterance(block.innerText.trim());
    // A BCP-47 tag (de, tr, ar, ...): the language of the text being shown.
    utterance.lang = block.lang || reader.dataset.lang;
    const voice = synth.getVoices().find((v) => v.lang.toLowerCase().startsWith(utterance.lang.toLowerCase()));
    if (voice) {
      utterance.voice = voice;
    }
    utterance.addEventListener("end", stop);
    utterance.addEventListener("error", stop);
    reader.textContent = reader.dataset.labelStop;
    reader.setAttribute("aria-pressed", "true");
    synth.speak(utterance);
  });
  window.addEventListener("pagehide", stop);
}
