// Unit tests of the pure front-end logic (node's built-in runner: `npm test`).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  ACTIONS,
  base64ToBytes,
  createDebouncer,
  DEBOUNCE_MS,
  debounceStep,
  DEFAULT_FILENAME,
  KEY_ACTIONS,
  keyToAction,
  MAX_FILENAME_LENGTH,
  sanitizeFilename,
} from "../src/logic.js";

describe("keyToAction", () => {
  test("maps the documented keys", () => {
    const expected = {
      ArrowRight: "next",
      n: "next",
      j: "next",
      ArrowLeft: "previous",
      p: "previous",
      k: "previous",
      Enter: "explain",
      e: "explain",
      Home: "first",
      End: "last",
    };
    for (const [key, action] of Object.entries(expected)) {
      assert.equal(keyToAction(key), action, key);
    }
    assert.deepEqual({ ...KEY_ACTIONS }, expected);
  });

  test("every action is a known one", () => {
    for (const action of Object.values(KEY_ACTIONS)) assert.ok(ACTIONS.includes(action), action);
  });

  test("anything else is null", () => {
    for (const key of ["x", "N", "ArrowUp", "ArrowDown", " ", "", "Escape", "Tab", "enter", "arrowright"]) {
      assert.equal(keyToAction(key), null, JSON.stringify(key));
    }
  });

  test("inherited object properties are not keys", () => {
    for (const key of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      assert.equal(keyToAction(key), null, key);
    }
  });

  test("non-strings are null", () => {
    for (const key of [undefined, null, 13, {}, ["n"]]) assert.equal(keyToAction(key), null);
  });

  test("the table cannot be changed at run time", () => {
    assert.ok(Object.isFrozen(KEY_ACTIONS));
  });
});

describe("debounceStep", () => {
  test("the first event fires", () => {
    assert.deepEqual(debounceStep(null, 1000, 80), { fire: true, lastFiredAt: 1000 });
    assert.deepEqual(debounceStep(undefined, 0, 80), { fire: true, lastFiredAt: 0 });
  });

  test("an event inside the window is dropped and does not move the window", () => {
    assert.deepEqual(debounceStep(1000, 1079, 80), { fire: false, lastFiredAt: 1000 });
  });

  test("an event at or after the window fires", () => {
    assert.deepEqual(debounceStep(1000, 1080, 80), { fire: true, lastFiredAt: 1080 });
    assert.deepEqual(debounceStep(1000, 5000, 80), { fire: true, lastFiredAt: 5000 });
  });

  test("a clock that goes backwards does not lock the keyboard", () => {
    assert.deepEqual(debounceStep(1000, 10, 80), { fire: true, lastFiredAt: 10 });
  });

  test("default interval is DEBOUNCE_MS (~80 ms)", () => {
    assert.equal(DEBOUNCE_MS, 80);
    assert.equal(debounceStep(0, DEBOUNCE_MS - 1).fire, false);
    assert.equal(debounceStep(0, DEBOUNCE_MS).fire, true);
  });
});

describe("createDebouncer (fake clock)", () => {
  function fakeClock(start = 0) {
    let now = start;
    const clock = () => now;
    clock.advance = (ms) => {
      now += ms;
    };
    return clock;
  }

  test("auto-repeat at 30 ms fires at most once per 80 ms", () => {
    const clock = fakeClock(10_000);
    const tryFire = createDebouncer(80, clock);
    const firedAt = [];
    for (let i = 0; i < 34; i++) {
      // a key held for ~1 s, repeating every 30 ms
      if (tryFire()) firedAt.push(clock());
      clock.advance(30);
    }
    // Fires at 0, 90, 180, ... (the first repeat at or after 80 ms since the last fire).
    assert.deepEqual(
      firedAt.map((t) => t - 10_000),
      [0, 90, 180, 270, 360, 450, 540, 630, 720, 810, 900, 990],
    );
    for (let i = 1; i < firedAt.length; i++) assert.ok(firedAt[i] - firedAt[i - 1] >= 80);
  });

  test("separate presses slower than the interval all fire", () => {
    const clock = fakeClock();
    const tryFire = createDebouncer(80, clock);
    const results = [];
    for (let i = 0; i < 5; i++) {
      results.push(tryFire());
      clock.advance(200);
    }
    assert.deepEqual(results, [true, true, true, true, true]);
  });

  test("a burst at one instant fires once", () => {
    const tryFire = createDebouncer(80, fakeClock(5));
    assert.deepEqual([tryFire(), tryFire(), tryFire()], [true, false, false]);
  });

  test("two debouncers are independent", () => {
    const clock = fakeClock();
    const a = createDebouncer(80, clock);
    const b = createDebouncer(80, clock);
    assert.equal(a(), true);
    assert.equal(b(), true);
    assert.equal(a(), false);
  });

  test("uses the real clock by default", () => {
    const tryFire = createDebouncer();
    assert.equal(tryFire(), true);
    assert.equal(tryFire(), false);
  });
});

describe("base64ToBytes", () => {
  const samples = [
    "",
    "a",
    "ab",
    "abc",
    "a,b\n1,2\n",
    "timestamp,score\n2024-01-01T00:00:00,0.5\n",
    "ü€😀 unicode",
  ];

  test("round-trips UTF-8 text encoded by node's Buffer", () => {
    for (const text of samples) {
      const b64 = Buffer.from(text, "utf8").toString("base64");
      assert.equal(new TextDecoder().decode(base64ToBytes(b64)), text, JSON.stringify(text));
    }
  });

  test("round-trips every byte value", () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    for (let n = 0; n <= 256; n += 37) {
      const slice = bytes.slice(0, n);
      const b64 = Buffer.from(slice).toString("base64");
      assert.deepEqual(base64ToBytes(b64), slice);
    }
  });

  test("returns a Uint8Array", () => {
    assert.ok(base64ToBytes("YWJj") instanceof Uint8Array);
    assert.deepEqual([...base64ToBytes("YWJj")], [97, 98, 99]);
  });

  test("padding is optional and whitespace is ignored", () => {
    assert.deepEqual([...base64ToBytes("YQ")], [97]);
    assert.deepEqual([...base64ToBytes("YQ==")], [97]);
    assert.deepEqual([...base64ToBytes("YW\nJj\r\n ")], [97, 98, 99]);
  });

  test("accepts the URL-safe alphabet", () => {
    const bytes = Uint8Array.from([251, 255, 190]);
    assert.equal(Buffer.from(bytes).toString("base64"), "+/++");
    assert.deepEqual(base64ToBytes("-_-+"), bytes);
  });

  test("rejects invalid input instead of producing a corrupt file", () => {
    assert.throws(() => base64ToBytes("ab$c"), TypeError);
    assert.throws(() => base64ToBytes("é"), TypeError);
    assert.throws(() => base64ToBytes("abcde"), TypeError); // 5 chars: impossible length
    assert.throws(() => base64ToBytes(null), TypeError);
  });
});

describe("sanitizeFilename", () => {
  const cases = [
    ["anomalies.csv", "anomalies.csv"],
    ["a b.csv", "a_b.csv"],
    ["../../etc/passwd", "passwd"],
    ["C:\\Users\\me\\scores.csv", "scores.csv"],
    ["ü.csv", "u.csv"],
    ["Ærø résumé.csv", "r_resume.csv"],
    ["ｆｕｌｌｗｉｄｔｈ.csv", "fullwidth.csv"],
    ["bad\u0000name\u001f\u007f.csv", "badname.csv"],
    ["tab\there\nnewline.csv", "tabherenewline.csv"],
    ['quote"s:and*stars?<>|.csv', "quotesandstars.csv"],
    ["report 2024-01-01 (v2).csv", "report_2024-01-01_v2.csv"],
    [".hidden", "download.hidden"],
    [".csv", "download.csv"],
    ["...csv", "download.csv"],
    ["😀.csv", "download.csv"],
    ["日本語.json", "download.json"],
    ["../.bashrc", "download.bashrc"],
    ["trailing.", "trailing"],
    ["..", DEFAULT_FILENAME],
    ["", DEFAULT_FILENAME],
    ["   ", "___"],
    ["////", DEFAULT_FILENAME],
    ["😀", DEFAULT_FILENAME],
    [null, DEFAULT_FILENAME],
    [undefined, DEFAULT_FILENAME],
    [42, DEFAULT_FILENAME],
  ];
  for (const [input, expected] of cases) {
    test(`${JSON.stringify(input)} -> ${JSON.stringify(expected)}`, () => {
      assert.equal(sanitizeFilename(input), expected);
    });
  }

  test("long names are cut to 100 characters, keeping the extension", () => {
    const out = sanitizeFilename("x".repeat(300) + ".csv");
    assert.equal(out.length, MAX_FILENAME_LENGTH);
    assert.ok(out.endsWith(".csv"));
    assert.equal(out, "x".repeat(96) + ".csv");
  });

  test("a long name without a usable extension is simply cut", () => {
    assert.equal(sanitizeFilename("y".repeat(150)), "y".repeat(100));
    const hugeExt = "a." + "b".repeat(120);
    assert.equal(sanitizeFilename(hugeExt), hugeExt.slice(0, 100));
  });

  test("a cut never leaves dots at the end of the stem", () => {
    assert.equal(sanitizeFilename("y".repeat(99) + "." + "b".repeat(120)), "y".repeat(99));
    assert.equal(sanitizeFilename("y".repeat(94) + "...." + "z".repeat(20) + ".csv"), "y".repeat(94) + ".csv");
  });

  test("length is counted after sanitizing (multi-byte characters dropped first)", () => {
    const name = "é".repeat(60) + "z".repeat(60) + ".csv";
    // each é -> e + combining accent (dropped) -> 60 e's + 60 z's + .csv = 124 -> cut
    assert.equal(sanitizeFilename(name), "e".repeat(60) + "z".repeat(36) + ".csv");
  });

  test("output only ever contains safe characters, is non-empty and at most 100 long", () => {
    const alphabet = ["a", "Z", "9", ".", "-", "_", " ", "/", "\\", "\u0000", "\n", "é", "😀", ":", "\u202e"];
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let i = 0; i < 500; i++) {
      const n = Math.floor(rand() * 140);
      let s = "";
      for (let j = 0; j < n; j++) s += alphabet[Math.floor(rand() * alphabet.length)];
      const out = sanitizeFilename(s);
      assert.match(out, /^[A-Za-z0-9_-]([A-Za-z0-9._-]*[A-Za-z0-9_-])?$/, JSON.stringify(s));
      assert.ok(out.length >= 1 && out.length <= MAX_FILENAME_LENGTH);
      assert.ok(!out.startsWith(".") && !out.endsWith("."), JSON.stringify(s));
      assert.equal(sanitizeFilename(out), out, "idempotent");
    }
  });
});
