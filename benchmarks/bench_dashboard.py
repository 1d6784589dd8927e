"""Dashboard speed, kernel-side, through the real views (no browser).

Measures what the dashboard issue sets as targets:
  * threshold move -> timeline recoloured, histogram and counts updated: <= 100 ms for 30k points
  * click -> explanation widgets updated with "shap": <= 150 ms
  * Train -> first loss point on the curve: <= 2 s (default model, built-in data)
  * zoom on 1,000,000 rows x 26 sensors -> visible range re-sampled (fluid: well under 100 ms)

Each time is the wall time of the controller call, which runs every observer of AppState
synchronously (the views' updates of their widgets included), i.e. everything the kernel does
before the messages leave for the browser.

    .venv/bin/python benchmarks/bench_dashboard.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msda_widgets import datasets  # noqa: E402
from msda_widgets.app.dashboard import Dashboard  # noqa: E402


def _median_ms(fn, repeats: int) -> float:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def bench_first_loss_point(rows: int) -> dict:
    dash = Dashboard(datasets.make_sensors(n_steps=rows, n_sensors=8, seed=0), warm_up=False)
    dash.controller._warm_up()  # what Dashboard(warm_up=True) does in the background after display
    first = threading.Event()
    stamp = {}

    def on_history(change):
        if change["new"] and not first.is_set():
            stamp["t"] = time.perf_counter()
            first.set()

    dash.state.observe(on_history, names="history")
    t0 = time.perf_counter()
    dash.controller.train()
    first.wait(120)
    dash.controller.wait(600)
    return {"first_loss_point_s": stamp["t"] - t0, "epochs": len(dash.state.history),
            "train_total_s": dash.state.detector.history_.seconds, "rows": rows}


def bench_threshold_and_click(rows: int, sensors: int, repeats: int) -> dict:
    data = datasets.make_sensors(n_steps=rows, n_sensors=sensors, seed=1)
    dash = Dashboard(data, warm_up=False, epochs=3)
    dash.controller.train()
    dash.controller.wait(900)
    c, s = dash.controller, dash.state
    qs = np.linspace(0.90, 0.999, repeats)
    thr_ms = _median_ms(lambda i: c.set_threshold("quantile", float(qs[i])), repeats)
    counts = sorted({int(s.n_anomalies)})
    c.set_threshold("quantile", 0.99)
    flagged = np.flatnonzero(s.flags)
    c.set_explain_method("shap")
    c.select(int(flagged[0]))  # first click builds the explainer caches (done after training in the app)
    click = {}
    for method in ("error", "shap", "integrated_gradients", "saliency", "grad_cam", "kernel_shap"):
        c.set_explain_method(method)
        click[method] = _median_ms(lambda i: c.select(int(flagged[(i + 1) % len(flagged)])), repeats)
    return {"rows": rows, "sensors": sensors, "threshold_move_ms": thr_ms, "click_ms": click,
            "n_flagged_at_q99": int(len(flagged)), "counts_seen": counts}


def bench_zoom(rows: int, sensors: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    idx = pd.date_range("2000-01-01", periods=rows, freq="min")
    frame = pd.DataFrame(rng.standard_normal((rows, sensors)).cumsum(axis=0),
                         index=idx, columns=[f"s{i:02d}" for i in range(sensors)])
    t0 = time.perf_counter()
    dash = Dashboard(frame, warm_up=False)
    build_s = time.perf_counter() - t0
    c = dash.controller
    spans = [(idx[int(rows * a)], idx[int(rows * a) + max(rows // (4 + i), 10)]) for i, a in
             enumerate(np.linspace(0.05, 0.6, repeats))]
    zoom_ms = _median_ms(lambda i: c.set_view_range(*spans[i]), repeats)
    resets = []
    for i in range(max(3, repeats // 3)):
        c.set_view_range(*spans[i])  # zoom in (untimed), then time "show all"
        t = time.perf_counter()
        c.set_view_range(None, None)
        resets.append((time.perf_counter() - t) * 1000)
    reset_ms = float(np.median(resets))
    n_points = dash.timeline.sensor_lines.y.shape if hasattr(dash.timeline, "sensor_lines") else None
    return {"rows": rows, "sensors": sensors, "dashboard_build_s": build_s, "zoom_ms": zoom_ms,
            "show_all_ms": reset_ms, "drawn_shape": list(n_points) if n_points else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args(argv)
    print("command: " + " ".join(["python", *sys.argv]))
    q = args.quick
    res = {
        "first_loss": bench_first_loss_point(2000 if q else 5000),
        "threshold_click": bench_threshold_and_click(3000 if q else 30_000, 4 if q else 26, 3 if q else 15),
        "zoom": bench_zoom(20_000 if q else 1_000_000, 3 if q else 26, 3 if q else 12),
    }
    fl, tc, z = res["first_loss"], res["threshold_click"], res["zoom"]
    print("\n| measure | target | measured | pass |\n|---|---|---|---|")
    print(f"| Train → first loss point ({fl['rows']:,} rows × 8, default deepcnn) | ≤ 2 s | "
          f"{fl['first_loss_point_s']:.2f} s | {'yes' if fl['first_loss_point_s'] <= 2 else 'NO'} |")
    print(f"| threshold move → recoloured + counts ({tc['rows']:,} × {tc['sensors']}) | ≤ 100 ms | "
          f"{tc['threshold_move_ms']:.1f} ms | {'yes' if tc['threshold_move_ms'] <= 100 else 'NO'} |")
    for m, ms in tc["click_ms"].items():
        target = {"shap": 150}.get(m)
        ok = "—" if target is None else ("yes" if ms <= target else "NO")
        print(f"| click → explanation widgets, `{m}` | {'≤ 150 ms' if target else '(info)'} | {ms:.1f} ms | {ok} |")
    print(f"| zoom → re-sampled view ({z['rows']:,} × {z['sensors']}) | fluid | {z['zoom_ms']:.1f} ms "
          f"(show all {z['show_all_ms']:.1f} ms; dashboard built in {z['dashboard_build_s']:.2f} s) | — |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
