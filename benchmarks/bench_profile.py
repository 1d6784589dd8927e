"""Sensor profiling speed, kernel-side, on the Canadian climate data (29,221 rows x 26 sensors).

The issue's target: every update of the "Profile sensors" tab <= 300 ms kernel-side. Each time
is the wall time of the call a click makes (tab shown, window / threshold / max-correlation
changed, heat-map choice, pair chosen, "Use suggested sensors"), which runs the controller, the
engine and every observer of AppState synchronously (the views' widget updates included):
everything the kernel does before the messages leave for the browser. The engine alone
(``profile_sensors``) is timed too, on the raw table (with its 53,518 missing values) and on the
imputed one the dashboard profiles.

Timings on a shared 2-core machine depend on its load: the script prints the 1-minute load
average before and after. Read them from a quiet machine (load < 1.5).

    .venv/bin/python benchmarks/bench_profile.py [--repeats N] [--data PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msda_widgets.engine.data import DataPipeline, load_csv  # noqa: E402
from msda_widgets.engine.profile import profile_sensors  # noqa: E402

TARGET_MS = 300.0
#: ``$MSDA_SHARED_DATA/msda/...`` if set, else ``../shared/data/msda/...`` beside the checkout.
DEFAULT_DATA = Path(os.environ.get("MSDA_SHARED_DATA", ROOT.parent / "shared" / "data")) / "msda" / \
    "Canadian_climate_history.csv"


def _load() -> float:
    return os.getloadavg()[0]


def _times(fn, repeats: int) -> list[float]:
    out = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="Canadian_climate_history.csv")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if not Path(args.data).is_file():
        sys.exit(f"bench_profile: {args.data} not found (pass --data PATH to Canadian_climate_history.csv)")
    load_before = _load()
    print(f"load average (1 min) before: {load_before:.2f}")

    df = load_csv(args.data)
    sd = DataPipeline().fit_prepare(df)
    import pandas as pd
    imputed = pd.DataFrame(sd.values, index=sd.index, columns=list(sd.sensors))
    rows: list[tuple[str, list[float]]] = []
    profile_sensors(imputed, window=30)  # first call: imports and page faults out of the timings
    rows.append(("engine: profile_sensors, imputed table (what the tab profiles), window 30",
                 _times(lambda i: profile_sensors(imputed, window=30), args.repeats)))
    rows.append(("engine: profile_sensors, raw table with missing values, window 30",
                 _times(lambda i: profile_sensors(df, window=30), args.repeats)))
    rows.append(("engine: profile_sensors, window 7, step 1 (rolling: 29,215 windows)",
                 _times(lambda i: profile_sensors(imputed, window=7, step=1), max(3, args.repeats // 2))))
    prof = profile_sensors(imputed, window=30)
    rows.append(("engine: suggest_sensors", _times(lambda i: prof.suggest_sensors(), args.repeats)))
    rows.append(("engine: features() DataFrame", _times(lambda i: prof.features(), args.repeats)))

    from msda_widgets.app.dashboard import Dashboard
    t0 = time.perf_counter()
    dash = Dashboard(df, warm_up=False, name="Canadian_climate_history.csv")
    build_ms = (time.perf_counter() - t0) * 1000
    assert dash.state.profile is None, "the profile must not be computed at start-up"
    view, state = dash.profile_view, dash.state

    first = _times(lambda i: setattr(dash.tabs, "selected_index", 1), 1)
    rows.append(("tab shown for the first time: profile computed and drawn", first))
    assert state.profile is not None and state.level != "error", state.message
    windows = [45, 30, 60, 90, 14, 120, 365, 7, 2, 1000, 30]
    rows.append(("window length changed (30 -> 45, 60, 90, 14, 120, 365, 7, 2, 1000 ...)",
                 _times(lambda i: setattr(view.window, "value", windows[i % len(windows)]), args.repeats)))
    thresholds = [0.5, 1.5, 0.0, 2.0, 1.0]
    rows.append(("growth / decay threshold changed",
                 _times(lambda i: setattr(view.threshold, "value", thresholds[i % len(thresholds)]), args.repeats)))
    limits = [0.9, 0.97, 0.8, 0.95]
    rows.append(("max |r| of the suggestion changed",
                 _times(lambda i: setattr(view.max_correlation, "value", limits[i % len(limits)]), args.repeats)))
    matrices = ["co-movement", "opposite movement", "correlation drift", "correlation"]
    rows.append(("heat map switched (correlation / co-movement / opposite / drift)",
                 _times(lambda i: setattr(view.matrix, "value", matrices[i % 3]), args.repeats)))
    sensors = list(state.profile.sensors)
    rows.append(("heat-map cell clicked -> rolling correlation of that pair",
                 _times(lambda i: setattr(view.heatmap, "selected", np.array([[i % 26, (i + 5) % 26]])),
                        args.repeats)))
    rows.append(("pair chosen in the dropdown",
                 _times(lambda i: setattr(view.pair_b, "value", sensors[(i + 9) % 26]), args.repeats)))
    orders = ["name", "max rate", "suggestion"]
    rows.append(("table re-ordered", _times(lambda i: setattr(view.order, "value", orders[i % 3]), args.repeats)))
    apply_ms = _times(lambda i: view.apply_button.click(), 1)
    rows.append(("'Use suggested sensors' (sensor selection + timeline re-prepared)", apply_ms))
    assert state.level == "success", state.message
    load_after = _load()

    results = {"data": Path(args.data).name, "rows": int(len(df)), "sensors": int(df.shape[1]),
               "build_dashboard_ms": build_ms, "load_before": load_before, "load_after": load_after,
               "target_ms": TARGET_MS, "measures": {}}
    print(f"\n{'measure':<78} {'median':>8} {'max':>8}  target")
    for name, ts in rows:
        med, worst = float(np.median(ts)), float(np.max(ts))
        ui = not name.startswith("engine")
        verdict = ("PASS" if worst <= TARGET_MS else "FAIL") if ui else "info"
        results["measures"][name] = {"median_ms": med, "max_ms": worst, "n": len(ts), "result": verdict}
        print(f"{name:<78} {med:8.1f} {worst:8.1f}  {verdict}")
    print(f"\ndashboard built in {build_ms:.0f} ms (profile not computed until the tab is shown)")
    print(f"load average (1 min) after: {load_after:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
