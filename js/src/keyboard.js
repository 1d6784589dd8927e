// anywidget front-end of msda_widgets.app.widgets.KeyboardNav.
//
// A small focusable box: while it has focus, ← → (or n/p, j/k) step through anomalies,
// Enter (or e) explains the current one, Home/End jump to the first/last. Each action goes to
// Python as a custom message {action}; the `presses` trait counts them as well. Held keys
// auto-repeat, so actions are rate-limited to one per DEBOUNCE_MS (lonboard's python-sync
// pattern: the browser never floods the kernel).

import { createDebouncer, DEBOUNCE_MS, keyToAction } from "./logic.js";

export const HINT =
  "⌨ Click here, then use ← → to step through anomalies, Enter to explain, Home/End for first/last";

const STYLE = {
  border: "1px dashed var(--jp-border-color1, #999)",
  borderRadius: "4px",
  padding: "4px 8px",
  fontSize: "0.9em",
  color: "var(--jp-ui-font-color1, #333)",
  cursor: "pointer",
  userSelect: "none",
  outline: "none",
};

function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "msda-keyboard-nav";
  box.tabIndex = 0;
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", "Anomaly keyboard navigation");
  // Keep JupyterLab / Notebook 7 command-mode shortcuts (arrows, Enter) off this box.
  box.setAttribute("data-lm-suppress-shortcuts", "true");
  box.setAttribute("data-p-suppress-shortcuts", "true");
  Object.assign(box.style, STYLE);
  box.textContent = HINT;

  const tryFire = createDebouncer(DEBOUNCE_MS);

  function onKeyDown(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return; // leave browser shortcuts alone
    const action = keyToAction(event.key);
    if (action === null) return;
    // Swallow handled keys even when rate-limited: the page must not scroll, and Jupyter must
    // not run the cell (Enter) or move the cell selection (arrows) while the box has focus.
    event.preventDefault();
    event.stopPropagation();
    if (!tryFire()) return;
    model.send({ action });
    model.set("presses", (model.get("presses") || 0) + 1);
    model.save_changes();
    box.dataset.lastAction = action;
  }
  function onFocus() {
    box.style.borderStyle = "solid";
    box.style.borderColor = "var(--jp-brand-color1, #1976d2)";
  }
  function onBlur() {
    box.style.border = STYLE.border;
  }
  // A click focuses the box even in browsers that do not focus tabIndex elements on click.
  function onClick() {
    box.focus();
  }

  box.addEventListener("keydown", onKeyDown);
  box.addEventListener("focus", onFocus);
  box.addEventListener("blur", onBlur);
  box.addEventListener("click", onClick);
  el.appendChild(box);

  return () => {
    box.removeEventListener("keydown", onKeyDown);
    box.removeEventListener("focus", onFocus);
    box.removeEventListener("blur", onBlur);
    box.removeEventListener("click", onClick);
    box.remove();
  };
}

// Default export only: anywidget >= 0.9 treats a named `render` export as the deprecated
// form (and then ignores the default export).
export default { render };
