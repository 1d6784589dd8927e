// Pure logic shared by the msda_widgets front-ends (keyboard.js, download.js).
//
// No DOM, no anywidget model: everything here is unit-tested in node (test/logic.test.mjs),
// and keyToAction / sanitizeFilename have Python twins in msda_widgets/app/widgets.py
// (key_to_action / sanitize_filename) that tests/app/test_js.py checks agree case by case.
// Change both sides together.

/** Keyboard key (KeyboardEvent.key) -> navigation action sent to Python. Case-sensitive. */
export const KEY_ACTIONS = Object.freeze({
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
});

/** The actions Python may receive from the keyboard widget. */
export const ACTIONS = Object.freeze(["next", "previous", "explain", "first", "last"]);

/** At most one action per this many milliseconds (held keys auto-repeat at ~30 Hz). */
export const DEBOUNCE_MS = 80;

/** File name used when the requested one sanitizes to nothing. */
export const DEFAULT_FILENAME = "download.csv";

/** Stem put before an extension whose name sanitized to nothing ("日本語.csv" -> "download.csv"). */
export const DEFAULT_STEM = "download";

/** Longest file name sanitizeFilename returns. */
export const MAX_FILENAME_LENGTH = 100;

/** Longest suffix (dot included) kept as the extension when a name is shortened. */
export const MAX_EXTENSION_LENGTH = 16;

/**
 * Map a KeyboardEvent.key to an action ("next", "previous", "explain", "first", "last"),
 * or null for any other key. Only the table's own keys count ("constructor" is not a key).
 */
export function keyToAction(key) {
  if (typeof key !== "string" || !Object.prototype.hasOwnProperty.call(KEY_ACTIONS, key)) {
    return null;
  }
  return KEY_ACTIONS[key];
}

/**
 * Leading-edge rate limit, as a pure step: given when the last action fired (ms, or null if
 * never) and the time now, say whether to fire and the new "last fired" time. Dropped events
 * do not extend the window, so a held key fires about every `intervalMs`, never faster.
 */
export function debounceStep(lastFiredAt, now, intervalMs = DEBOUNCE_MS) {
  if (lastFiredAt === null || lastFiredAt === undefined || now - lastFiredAt >= intervalMs || now < lastFiredAt) {
    // now < lastFiredAt: the clock went backwards (system time change); do not lock up.
    return { fire: true, lastFiredAt: now };
  }
  return { fire: false, lastFiredAt };
}

/**
 * Stateful wrapper around debounceStep: returns `tryFire()`, true when the caller may act now.
 * `clock` is injectable so tests can drive time by hand.
 */
export function createDebouncer(intervalMs = DEBOUNCE_MS, clock = () => Date.now()) {
  let lastFiredAt = null;
  return function tryFire() {
    const step = debounceStep(lastFiredAt, clock(), intervalMs);
    lastFiredAt = step.lastFiredAt;
    return step.fire;
  };
}

const B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_LOOKUP = (() => {
  const table = new Int16Array(128).fill(-1);
  for (let i = 0; i < B64_ALPHABET.length; i++) table[B64_ALPHABET.charCodeAt(i)] = i;
  // Also accept the URL-safe alphabet (Python's base64.urlsafe_b64encode).
  table["-".charCodeAt(0)] = 62;
  table["_".charCodeAt(0)] = 63;
  return table;
})();

/**
 * Decode a base64 string (standard or URL-safe alphabet, padding optional, ASCII whitespace
 * ignored) into a Uint8Array. Throws a TypeError on any other character or an impossible
 * length, rather than silently producing a corrupt file.
 */
export function base64ToBytes(b64) {
  if (typeof b64 !== "string") throw new TypeError("base64ToBytes expects a string");
  const clean = b64.replace(/[\t\n\f\r ]+/g, "").replace(/=+$/, "");
  if (clean.length % 4 === 1) {
    throw new TypeError(`invalid base64: length ${clean.length} (without padding) is impossible`);
  }
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
  let buffer = 0;
  let bits = 0;
  let j = 0;
  for (let i = 0; i < clean.length; i++) {
    const code = clean.charCodeAt(i);
    const value = code < 128 ? B64_LOOKUP[code] : -1;
    if (value < 0) {
      throw new TypeError(`invalid base64 character ${JSON.stringify(clean[i])} at position ${i}`);
    }
    buffer = (buffer << 6) | value;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = (buffer >> bits) & 0xff;
    }
  }
  return out;
}

/**
 * Make a safe download file name:
 *  1. Unicode NFKD, so "ü" becomes "u" + a combining mark (dropped below) and "ｆｕｌｌ" becomes "full";
 *  2. keep only the last path component (after the last "/" or "\\");
 *  3. spaces become "_";
 *  4. drop every character other than ASCII letters, digits, ".", "_" and "-"
 *     (control characters, quotes, colons, accents' marks, emoji ...);
 *  5. strip trailing dots; empty -> "download.csv";
 *  6. leading dots (an empty stem: "日本語.csv" is ".csv" by now) become "download."
 *     ("download.csv"), so no hidden files and no "..";
 *  7. longer than 100 characters -> shorten the stem, keeping the extension (the last
 *     ".suffix", if it is at most 16 characters long and not the whole name), then drop dots
 *     left at the end of the shortened stem.
 * Non-strings count as empty. The Python twin is msda_widgets.app.widgets.sanitize_filename.
 */
export function sanitizeFilename(name) {
  let s = typeof name === "string" ? name.normalize("NFKD") : "";
  const cut = Math.max(s.lastIndexOf("/"), s.lastIndexOf("\\"));
  s = s.slice(cut + 1);
  s = s.replace(/ /g, "_");
  s = s.replace(/[^A-Za-z0-9._-]/g, "");
  s = s.replace(/\.+$/, "");
  if (s.length === 0) return DEFAULT_FILENAME;
  s = s.replace(/^\.+/, `${DEFAULT_STEM}.`);
  if (s.length <= MAX_FILENAME_LENGTH) return s;
  const dot = s.lastIndexOf(".");
  const ext = dot > 0 && s.length - dot <= MAX_EXTENSION_LENGTH ? s.slice(dot) : "";
  // Dots at the end of the cut stem would double up with the extension's (or end the name).
  return s.slice(0, MAX_FILENAME_LENGTH - ext.length).replace(/\.+$/, "") + ext;
}

/** Bytes per message when a file is sent to Python: well under Voila's ~10 MB websocket limit. */
export const UPLOAD_CHUNK_BYTES = 1024 * 1024;

/**
 * Decide, before reading a single byte, whether a picked file may be sent to Python, and how.
 * Returns {ok: true, chunks: [[start, end], ...]} or {ok: false, reason} with a sentence for
 * the user. The Python twin is msda_widgets.app.widgets.plan_upload (tests/app/test_js.py
 * checks they agree); Python re-checks every byte that arrives, whatever the browser says.
 */
export function planUpload(size, maxBytes, chunkBytes = UPLOAD_CHUNK_BYTES) {
  if (!Number.isSafeInteger(size) || size < 0) {
    return { ok: false, reason: "the file's size could not be read" };
  }
  if (size === 0) return { ok: false, reason: "the file is empty" };
  if (size > maxBytes) {
    return { ok: false, reason: `the file is ${formatMB(size)} and uploads are limited to ${formatMB(maxBytes)}` };
  }
  const step = Math.max(1, Math.floor(chunkBytes));
  const chunks = [];
  for (let start = 0; start < size; start += step) chunks.push([start, Math.min(size, start + step)]);
  return { ok: true, chunks };
}

/** "12.3 MB" (decimal megabytes, one decimal); the Python twin is widgets.format_mb. */
export function formatMB(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
