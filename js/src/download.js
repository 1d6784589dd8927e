// anywidget front-end of msda_widgets.app.widgets.DownloadButton.
//
// A client-side download that works in Voila (no file is written on the server and no
// /files/ URL is needed): Python puts the file in `payload` (base64), names it in `filename`
// and increments `request`; the browser decodes it, wraps it in a Blob of type `mime` and
// clicks a hidden <a download>. The visible button (text: `label`) asks Python for the file
// with a custom message {action: "request"}, so exports can be computed on click.
//
// The download listener lives in `initialize` (once per model), not in `render` (once per
// view): a widget displayed twice must still download the file once.

import { base64ToBytes, DEFAULT_FILENAME, sanitizeFilename } from "./logic.js";

/** How long the object URL stays alive after the click (some browsers read it lazily). */
const REVOKE_AFTER_MS = 10000;

function saveBytes(bytes, filename, mime) {
  const blob = new Blob([bytes], { type: mime });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.rel = "noopener";
  a.style.display = "none";
  document.body.appendChild(a);
  try {
    a.click();
  } finally {
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), REVOKE_AFTER_MS);
  }
}

function initialize({ model }) {
  // A re-opened notebook restores the last request number: do not download it again.
  let handled = model.get("request");

  function onRequest() {
    const request = model.get("request");
    if (request === handled) return;
    handled = request;
    const payload = model.get("payload") || ""; // "" is an empty file, not "no file"
    const filename = sanitizeFilename(model.get("filename") || DEFAULT_FILENAME);
    const mime = model.get("mime") || "text/csv";
    try {
      saveBytes(base64ToBytes(payload), filename, mime);
      // Lets Python drop the payload from the widget state once it has been delivered.
      model.send({ action: "downloaded", request });
    } catch (error) {
      console.error("[msda_widgets] download failed:", error);
      model.send({ action: "error", request, message: String(error && error.message ? error.message : error) });
    }
  }

  model.on("change:request", onRequest);
  return () => model.off("change:request", onRequest);
}

function render({ model, el }) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "msda-download-button jupyter-button widget-button";
  button.textContent = model.get("label");
  button.disabled = Boolean(model.get("disabled"));

  function onClick() {
    model.send({ action: "request" });
  }
  function onLabel() {
    button.textContent = model.get("label");
  }
  function onDisabled() {
    button.disabled = Boolean(model.get("disabled"));
  }

  button.addEventListener("click", onClick);
  model.on("change:label", onLabel);
  model.on("change:disabled", onDisabled);
  el.appendChild(button);

  return () => {
    button.removeEventListener("click", onClick);
    model.off("change:label", onLabel);
    model.off("change:disabled", onDisabled);
    button.remove();
  };
}

export default { initialize, render };
