// Wiring tests of the two anywidget modules against a fake model and a minimal fake DOM
// (no browser, no jsdom): keys become model messages, a request becomes exactly one download.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";

import download from "../src/download.js";
import keyboard from "../src/keyboard.js";

class FakeElement {
  constructor(tagName) {
    this.tagName = tagName.toUpperCase();
    this.children = [];
    this.parent = null;
    this.attributes = {};
    this.style = {};
    this.dataset = {};
    this.listeners = {};
    this.textContent = "";
    this.clicks = 0;
  }
  setAttribute(name, value) {
    this.attributes[name] = String(value);
  }
  addEventListener(type, fn) {
    (this.listeners[type] ??= new Set()).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners[type]?.delete(fn);
  }
  listenerCount() {
    return Object.values(this.listeners).reduce((n, set) => n + set.size, 0);
  }
  dispatch(type, init = {}) {
    const event = {
      type,
      target: this,
      altKey: false,
      ctrlKey: false,
      metaKey: false,
      defaultPrevented: false,
      propagationStopped: false,
      ...init,
    };
    event.preventDefault = () => {
      event.defaultPrevented = true;
    };
    event.stopPropagation = () => {
      event.propagationStopped = true;
    };
    for (const fn of [...(this.listeners[type] ?? [])]) fn(event);
    return event;
  }
  appendChild(child) {
    child.parent = this;
    this.children.push(child);
    return child;
  }
  remove() {
    if (this.parent) this.parent.children = this.parent.children.filter((c) => c !== this);
    this.parent = null;
  }
  focus() {
    globalThis.document.activeElement = this;
  }
  click() {
    this.clicks += 1;
    this.dispatch("click");
  }
}

function fakeModel(initial) {
  const state = { ...initial };
  const handlers = {};
  return {
    state,
    sent: [],
    saves: 0,
    get(key) {
      return state[key];
    },
    set(key, value) {
      state[key] = value;
    },
    save_changes() {
      this.saves += 1;
    },
    send(message) {
      this.sent.push(message);
    },
    on(event, fn) {
      (handlers[event] ??= new Set()).add(fn);
    },
    off(event, fn) {
      handlers[event]?.delete(fn);
    },
    handlerCount() {
      return Object.values(handlers).reduce((n, set) => n + set.size, 0);
    },
    /** What a sync from Python does: set all the values, then fire the change events. */
    pythonSets(changes) {
      Object.assign(state, changes);
      for (const key of Object.keys(changes)) {
        for (const fn of [...(handlers[`change:${key}`] ?? [])]) fn();
      }
    },
  };
}

let realNow;
let now;
let created;
let revoked;
let timers;
const saved = {};

beforeEach(() => {
  created = [];
  revoked = [];
  timers = [];
  now = 1_000_000;
  realNow = Date.now;
  Date.now = () => now;
  for (const key of ["document", "setTimeout"]) saved[key] = globalThis[key];
  saved.createObjectURL = URL.createObjectURL;
  saved.revokeObjectURL = URL.revokeObjectURL;
  globalThis.document = {
    body: new FakeElement("body"),
    activeElement: null,
    createElement: (tag) => new FakeElement(tag),
  };
  globalThis.setTimeout = (fn, ms) => timers.push({ fn, ms });
  URL.createObjectURL = (blob) => {
    created.push(blob);
    return `blob:fake/${created.length}`;
  };
  URL.revokeObjectURL = (url) => revoked.push(url);
});

afterEach(() => {
  Date.now = realNow;
  for (const key of ["document", "setTimeout"]) globalThis[key] = saved[key];
  URL.createObjectURL = saved.createObjectURL;
  URL.revokeObjectURL = saved.revokeObjectURL;
});

describe("keyboard.js", () => {
  function mount() {
    const model = fakeModel({ presses: 0 });
    const el = new FakeElement("div");
    const cleanup = keyboard.render({ model, el });
    return { model, el, box: el.children[0], cleanup };
  }

  test("default export only (a named `render` would trigger anywidget's deprecated path)", async () => {
    const mod = await import("../src/keyboard.js");
    assert.equal(mod.render, undefined);
    assert.equal(typeof mod.default.render, "function");
  });

  test("renders a focusable box with the hint, shielded from Jupyter shortcuts", () => {
    const { box } = mount();
    assert.equal(box.tabIndex, 0);
    assert.match(box.textContent, /Click here, then use ← → to step through anomalies/);
    assert.equal(box.attributes["data-lm-suppress-shortcuts"], "true");
  });

  test("keys become actions sent to Python, and presses are counted", () => {
    const { model, box } = mount();
    const keys = ["ArrowRight", "p", "Enter", "Home", "End", "j"];
    for (const key of keys) {
      const event = box.dispatch("keydown", { key });
      assert.ok(event.defaultPrevented && event.propagationStopped, key);
      now += 100;
    }
    assert.deepEqual(
      model.sent.map((m) => m.action),
      ["next", "previous", "explain", "first", "last", "next"],
    );
    assert.equal(model.state.presses, keys.length);
    assert.equal(model.saves, keys.length);
    assert.equal(box.dataset.lastAction, "next");
  });

  test("other keys and modified keys are left alone", () => {
    const { model, box } = mount();
    for (const init of [{ key: "x" }, { key: "ArrowUp" }, { key: "n", ctrlKey: true }, { key: "Enter", metaKey: true }]) {
      const event = box.dispatch("keydown", init);
      assert.equal(event.defaultPrevented, false, JSON.stringify(init));
      now += 100;
    }
    assert.deepEqual(model.sent, []);
    assert.equal(model.state.presses, 0);
  });

  test("auto-repeat is rate-limited to one action per 80 ms", () => {
    const { model, box } = mount();
    for (let i = 0; i < 10; i++) {
      const event = box.dispatch("keydown", { key: "ArrowRight", repeat: i > 0 });
      assert.ok(event.defaultPrevented, "dropped repeats still must not scroll the page");
      now += 30; // held key: 10 keydowns over 300 ms
    }
    assert.equal(model.sent.length, 4); // at 0, 90, 180, 270 ms
    assert.equal(model.state.presses, 4);
  });

  test("a click focuses the box; cleanup removes listeners and the box", () => {
    const { el, box, cleanup } = mount();
    box.dispatch("click");
    assert.equal(globalThis.document.activeElement, box);
    cleanup();
    assert.equal(box.listenerCount(), 0);
    assert.equal(el.children.length, 0);
  });
});

describe("download.js", () => {
  const CSV = "timestamp,score\n2024-01-01,0.5\n";
  const b64 = (text) => Buffer.from(text, "utf8").toString("base64");

  function start(initial = {}) {
    const model = fakeModel({
      payload: "",
      filename: "download.csv",
      mime: "text/csv",
      label: "Download CSV",
      request: 0,
      disabled: false,
      ...initial,
    });
    const cleanup = download.initialize({ model });
    return { model, cleanup };
  }

  test("a request from Python downloads the decoded file once, then asks to drop the payload", async () => {
    const { model } = start();
    model.pythonSets({ payload: b64(CSV), filename: "../anomalies 1.csv", request: 1 });
    assert.equal(created.length, 1);
    const blob = created[0];
    assert.equal(blob.type, "text/csv");
    assert.equal(await blob.text(), CSV);
    // the hidden link was clicked and removed again
    assert.equal(globalThis.document.body.children.length, 0);
    assert.deepEqual(model.sent, [{ action: "downloaded", request: 1 }]);
    // the object URL is revoked later, not synchronously
    assert.equal(timers.length, 1);
    assert.deepEqual(revoked, []);
    timers[0].fn();
    assert.deepEqual(revoked, ["blob:fake/1"]);
  });

  test("the link carries the sanitized name and is clicked", () => {
    const { model } = start();
    const appended = [];
    const body = globalThis.document.body;
    const original = body.appendChild.bind(body);
    body.appendChild = (child) => {
      appended.push(child);
      return original(child);
    };
    model.pythonSets({ payload: b64("x"), filename: "C:\\tmp\\ü report.csv", request: 1 });
    assert.equal(appended.length, 1);
    assert.equal(appended[0].tagName, "A");
    assert.equal(appended[0].download, "u_report.csv");
    assert.equal(appended[0].href, "blob:fake/1");
    assert.equal(appended[0].clicks, 1);
  });

  test("mime comes from the trait, text/csv when empty", () => {
    const { model } = start();
    model.pythonSets({ payload: b64("{}"), filename: "a.json", mime: "application/json", request: 1 });
    model.pythonSets({ payload: b64("a"), mime: "", request: 2 });
    assert.deepEqual(created.map((b) => b.type), ["application/json", "text/csv"]);
  });

  test("changes other than request, or an unchanged request, download nothing", () => {
    const { model } = start({ request: 3, payload: b64(CSV) });
    model.pythonSets({ payload: b64("other") });
    model.pythonSets({ request: 3 });
    model.pythonSets({ payload: "" }); // Python dropping a delivered payload
    assert.equal(created.length, 0);
  });

  test("an empty payload with a new request is an empty file", async () => {
    const { model } = start({ request: 3 });
    model.pythonSets({ payload: "", filename: "empty.csv", request: 4 });
    assert.equal(created.length, 1);
    assert.equal(created[0].size, 0);
  });

  test("a corrupt payload is reported to Python, not thrown", () => {
    const { model } = start();
    const realError = console.error;
    console.error = () => {};
    try {
      model.pythonSets({ payload: "not base64!", request: 1 });
    } finally {
      console.error = realError;
    }
    assert.equal(created.length, 0);
    assert.equal(model.sent.length, 1);
    assert.equal(model.sent[0].action, "error");
    assert.equal(model.sent[0].request, 1);
    assert.match(model.sent[0].message, /invalid base64/);
  });

  test("initialize's cleanup stops listening", () => {
    const { model, cleanup } = start();
    cleanup();
    assert.equal(model.handlerCount(), 0);
    model.pythonSets({ payload: b64(CSV), request: 1 });
    assert.equal(created.length, 0);
  });

  test("the button asks Python for the file and follows label / disabled", () => {
    const model = fakeModel({ label: "Export anomalies", disabled: false });
    const el = new FakeElement("div");
    const cleanup = download.render({ model, el });
    const button = el.children[0];
    assert.equal(button.tagName, "BUTTON");
    assert.equal(button.textContent, "Export anomalies");
    button.dispatch("click");
    assert.deepEqual(model.sent, [{ action: "request" }]);
    model.pythonSets({ label: "Export (3)", disabled: true });
    assert.equal(button.textContent, "Export (3)");
    assert.equal(button.disabled, true);
    // rendering does not itself listen for downloads (initialize does, once per model)
    model.pythonSets({ payload: b64(CSV), request: 1 });
    assert.equal(created.length, 0);
    cleanup();
    assert.equal(model.handlerCount(), 0);
    assert.equal(el.children.length, 0);
  });
});
