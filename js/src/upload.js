// anywidget front-end of msda_widgets.app.widgets.UploadButton.
//
// A file picker that checks the file's size in the browser, BEFORE reading it: a file above
// `max_bytes` is never sent (Python only hears {action: "refused", name, size, reason}), so a
// 50 MB file cannot break the kernel's websocket (Voila drops messages above ~10 MB, which
// ipywidgets' FileUpload sends in one piece). An accepted file travels in chunks of
// `chunk_bytes` as binary buffers; each chunk (the first one too) is sent only when Python has
// acknowledged everything before it, so Python can stop a transfer at any point (and re-checks
// every byte).
//
// Messages to Python:  {action: "begin", id, name, size}, {action: "chunk", id, offset} + one
//   buffer, {action: "end", id}, {action: "refused", name, size, reason},
//   {action: "error", id, message}.
// Messages from Python: {action: "ack", id, received}, {action: "abort", id, message},
//   {action: "done", id}.

import { formatMB, planUpload } from "./logic.js";

let nextId = 1;

function render({ model, el }) {
  const input = document.createElement("input");
  input.type = "file";
  input.multiple = false;
  input.style.display = "none";

  const button = document.createElement("button");
  button.type = "button";
  button.className = "msda-upload-button jupyter-button widget-button";

  const note = document.createElement("span");
  note.className = "msda-upload-note";
  note.style.display = "block";
  note.style.marginTop = "2px";
  note.style.fontSize = "0.85em";

  let transfer = null; // {id, file, chunks, next, resolve}

  function sync() {
    input.accept = model.get("accept") || "";
    button.disabled = Boolean(model.get("disabled")) || transfer !== null;
    if (transfer === null) button.textContent = model.get("label");
    button.title = model.get("description") || "";
  }

  function finish(text) {
    transfer = null;
    input.value = ""; // the same file can be picked again
    note.textContent = text || "";
    sync();
  }

  async function sendChunk() {
    const t = transfer;
    if (t === null) return;
    if (t.next >= t.chunks.length) {
      model.send({ action: "end", id: t.id });
      return;
    }
    const [start, end] = t.chunks[t.next];
    try {
      const buffer = await t.file.slice(start, end).arrayBuffer();
      if (transfer !== t) return; // aborted meanwhile
      model.send({ action: "chunk", id: t.id, offset: start }, undefined, [buffer]);
      t.next += 1;
      button.textContent = `Uploading ${Math.round((100 * end) / t.file.size)} %`;
    } catch (error) {
      model.send({ action: "error", id: t.id, message: String(error && error.message ? error.message : error) });
      finish("");
    }
  }

  function onPicked() {
    const file = input.files && input.files[0];
    if (!file) return;
    const plan = planUpload(file.size, model.get("max_bytes"), model.get("chunk_bytes"));
    if (!plan.ok) {
      model.send({ action: "refused", name: file.name, size: file.size, reason: plan.reason });
      finish(`${file.name}: ${plan.reason}.`);
      return;
    }
    transfer = { id: `${Date.now()}-${nextId++}`, file, chunks: plan.chunks, next: 0 };
    note.textContent = "";
    button.disabled = true;
    button.textContent = `Uploading 0 % of ${formatMB(file.size)}`;
    // The first chunk waits for Python's acknowledgement of `begin`, so Python can refuse first.
    model.send({ action: "begin", id: transfer.id, name: file.name, size: file.size });
  }

  function onMessage(msg) {
    if (!msg || transfer === null || msg.id !== transfer.id) return;
    if (msg.action === "ack") {
      // Only an acknowledgement of everything sent so far releases the next chunk.
      const sent = transfer.next === 0 ? 0 : transfer.chunks[transfer.next - 1][1];
      if (msg.received === sent) sendChunk();
    }
    else if (msg.action === "abort") finish(msg.message || "");
    else if (msg.action === "done") finish("");
  }

  const onClick = () => input.click();
  button.addEventListener("click", onClick);
  input.addEventListener("change", onPicked);
  const SYNCED = ["change:label", "change:disabled", "change:accept", "change:description"];
  model.on("msg:custom", onMessage);
  for (const event of SYNCED) model.on(event, sync);
  sync();
  el.classList.add("msda-upload-widget");
  el.append(button, input, note);

  return () => {
    button.removeEventListener("click", onClick);
    input.removeEventListener("change", onPicked);
    model.off("msg:custom", onMessage);
    for (const event of SYNCED) model.off(event, sync);
    el.replaceChildren();
  };
}

export default { render };
