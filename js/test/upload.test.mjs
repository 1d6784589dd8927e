// Wiring test of the upload front-end against a fake model, a fake DOM and a fake File: a file
// above the limit is refused without being read; an accepted file travels in acknowledged chunks.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";

import upload from "../src/upload.js";

class FakeElement {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.style = {};
    this.listeners = {};
    this.textContent = "";
    this.classList = { names: new Set(), add: (n) => this.classList.names.add(n) };
    this.inputClicks = 0;
  }
  addEventListener(type, fn) {
    (this.listeners[type] ??= new Set()).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners[type]?.delete(fn);
  }
  dispatch(type) {
    for (const fn of [...(this.listeners[type] ?? [])]) fn({ type, target: this });
  }
  append(...children) {
    this.children.push(...children);
  }
  replaceChildren() {
    this.children = [];
  }
  click() {
    this.inputClicks += 1;
    this.dispatch("click");
  }
}

class FakeFile {
  constructor(name, bytes) {
    this.name = name;
    this.bytes = bytes;
    this.size = bytes.length;
    this.reads = 0;
  }
  slice(start, end) {
    const part = this.bytes.slice(start, end);
    return {
      arrayBuffer: async () => {
        this.reads += 1;
        return part.buffer;
      },
    };
  }
}

function fakeModel(initial) {
  const state = { ...initial };
  const handlers = {};
  return {
    sent: [],
    get: (key) => state[key],
    send(content, callbacks, buffers) {
      this.sent.push({ content, buffers: buffers ?? [] });
    },
    on(event, fn) {
      (handlers[event] ??= new Set()).add(fn);
    },
    off(event, fn) {
      handlers[event]?.delete(fn);
    },
    fromPython(msg) {
      for (const fn of [...(handlers["msg:custom"] ?? [])]) fn(msg);
    },
    handlerCount: () => Object.values(handlers).reduce((n, set) => n + set.size, 0),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
let savedDocument;

beforeEach(() => {
  savedDocument = globalThis.document;
  globalThis.document = { createElement: (tag) => new FakeElement(tag) };
});
afterEach(() => {
  globalThis.document = savedDocument;
});

function mount(overrides = {}) {
  const model = fakeModel({ label: "Open CSV", accept: ".csv", max_bytes: 10, chunk_bytes: 4, disabled: false,
                            description: "tip", ...overrides });
  const el = new FakeElement("div");
  const cleanup = upload.render({ model, el });
  const [button, input, note] = el.children;
  return { model, el, cleanup, button, input, note };
}

function pick(input, file) {
  input.files = [file];
  input.dispatch("change");
}

describe("upload.js", () => {
  test("the button opens the hidden file input", () => {
    const { button, input } = mount();
    assert.equal(input.type, "file");
    assert.equal(input.accept, ".csv");
    assert.equal(button.textContent, "Open CSV");
    button.dispatch("click");
    assert.equal(input.inputClicks, 1);
  });

  test("a file above the limit is refused without reading a byte", async () => {
    const { model, input, note, button } = mount();
    const file = new FakeFile("big.csv", new Uint8Array(11));
    pick(input, file);
    await tick();
    assert.equal(file.reads, 0);
    assert.equal(model.sent.length, 1);
    assert.deepEqual(model.sent[0].content, {
      action: "refused", name: "big.csv", size: 11, reason: "the file is 0.0 MB and uploads are limited to 0.0 MB",
    });
    assert.equal(model.sent[0].buffers.length, 0);
    assert.match(note.textContent, /big\.csv/);
    assert.equal(button.disabled, false);
  });

  test("an accepted file is sent in chunks, one per acknowledgement", async () => {
    const { model, input, button } = mount();
    const bytes = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    pick(input, new FakeFile("ok.csv", bytes));
    await tick();
    const begin = model.sent[0].content;
    assert.equal(begin.action, "begin");
    assert.equal(begin.size, 10);
    assert.equal(button.disabled, true);
    assert.equal(model.sent.length, 1); // nothing more until Python acknowledges `begin`
    const received = [];
    model.fromPython({ action: "ack", id: begin.id, received: 0 });
    for (let i = 0; i < 10; i++) {
      await tick();
      const last = model.sent[model.sent.length - 1].content;
      if (last.action === "end") break;
      if (last.action === "chunk") {
        received.push(...new Uint8Array(model.sent[model.sent.length - 1].buffers[0]));
        model.fromPython({ action: "ack", id: begin.id, received: received.length });
      }
    }
    assert.deepEqual(received, [...bytes]);
    const actions = model.sent.map((m) => m.content.action);
    assert.deepEqual(actions, ["begin", "chunk", "chunk", "chunk", "end"]);
    assert.deepEqual(model.sent.filter((m) => m.content.action === "chunk").map((m) => m.content.offset), [0, 4, 8]);
    model.fromPython({ action: "done", id: begin.id });
    assert.equal(button.disabled, false);
    assert.equal(button.textContent, "Open CSV");
  });

  test("Python can abort a transfer; later acknowledgements are ignored", async () => {
    const { model, input, note } = mount();
    pick(input, new FakeFile("x.csv", new Uint8Array(9)));
    await tick();
    const id = model.sent[0].content.id;
    model.fromPython({ action: "ack", id, received: 0 });
    await tick();
    model.fromPython({ action: "ack", id, received: 3 }); // not what was sent: ignored
    await tick();
    assert.deepEqual(model.sent.map((m) => m.content.action), ["begin", "chunk"]);
    model.fromPython({ action: "abort", id, message: "x.csv: no." });
    const count = model.sent.length;
    model.fromPython({ action: "ack", id, received: 4 });
    await tick();
    assert.equal(model.sent.length, count);
    assert.equal(note.textContent, "x.csv: no.");
  });

  test("an empty file is refused", async () => {
    const { model, input } = mount();
    pick(input, new FakeFile("empty.csv", new Uint8Array(0)));
    await tick();
    assert.equal(model.sent[0].content.action, "refused");
    assert.equal(model.sent[0].content.reason, "the file is empty");
  });

  test("cleanup removes every listener", () => {
    const { model, cleanup, button, input } = mount();
    assert.ok(model.handlerCount() > 0);
    cleanup();
    assert.equal(model.handlerCount(), 0);
    assert.equal((button.listeners.click ?? new Set()).size, 0);
    assert.equal((input.listeners.change ?? new Set()).size, 0);
  });
});
