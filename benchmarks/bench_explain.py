"""Benchmark of the explanation layer: per-click latency, batch throughput and faithfulness.

    python benchmarks/bench_explain.py            # full run (about 5 minutes on 2 cores)
    python benchmarks/bench_explain.py --quick    # smoke run of every code path (seconds)

Prints Markdown (the exact command line first). Three parts:

1. **Per click** — median / p90 wall time of ``det.explain(detection, when, method)`` for every
   method and both models on 26 sensors x lookback 10 (``make_sensors(n_sensors=26)``), after one
   warm-up call, at flagged rows.
2. **Batch** — ``det.explain_many(detection, method="shap")`` over every flagged row of the
   Canadian climate file (``../shared/data/msda/Canadian_climate_history.csv`` beside the
   checkout, or ``--canadian PATH``; generated data when absent, and the table says so).
3. **Faithfulness** — on ``make_sensors`` data with known culprit sensors: each detector is fitted
   on the first ``--fit-fraction`` of the series (clean-ish: it holds a few events) and judged on
   the events that start after it. For each event we explain its **highest-scored timestamp inside
   the event** (the point a user would click), provided it is flagged (score > threshold); events
   with no flagged timestamp are counted as missed and not explained. HitRate@1 = the top sensor
   is a culprit at that timestamp; the random floor is the expected hit rate of a random ranking
   (mean of |culprits| / S over the same events). The deletion check replaces the top-k sensors
   of each flagged held-out point by the baseline (the mean background window) and compares the
   score drop with replacing k random sensors (mean over 20 draws).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from msda_widgets.engine import catalogue
from msda_widgets import Detector, datasets  # noqa: E402
from msda_widgets.engine.data import load_csv  # noqa: E402
from msda_widgets.engine.explain import EXPLAINERS, score_module  # noqa: E402

CANADIAN = ROOT.parent / "shared" / "data" / "msda" / "Canadian_climate_history.csv"
TARGETS_MS = {"error": 5, "saliency": 5, "grad_cam": 5, "shap": 50, "integrated_gradients": 50,
              "kernel_shap": 300}
TARGET_ROWS_PER_S = 200
TARGET_HIT = 0.9
MODELS = ("deepcnn", "lstm_ae")
KINDS = datasets.ANOMALY_KINDS
RANDOM_DRAWS = 20


def load() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def table(headers: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return "—" if np.isnan(v) else f"{v:.3g}"
        return str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def pct(hits: list[bool]) -> str:
    return f"{100 * np.mean(hits):.0f} % ({sum(hits)}/{len(hits)})" if hits else "—"


def methods_for(det: Detector) -> list[str]:
    return [m for m, spec in EXPLAINERS.items() if spec.info.serves(catalogue.model_info(det.config.model.model))]


THREADS = None  # --threads: torch CPU threads of every detector (None: the detector's default)


def model_settings(model: str, quick: bool, epochs: int) -> dict:
    s = dict(model=model, lookback=10, epochs=epochs, seed=0, num_threads=THREADS)
    if quick and model == "lstm_ae":
        s["hidden_sizes"] = (16, 8)
    return s


# --------------------------------------------------------------------------------- 1. latency

def bench_latency(args) -> None:
    n_steps = 1200 if args.quick else 4000
    clicks = 3 if args.quick else 15
    ld = datasets.make_sensors(n_steps=n_steps, n_sensors=26, anomalies=4 if args.quick else 12, seed=args.latency_seed)
    rows = []
    for model in MODELS:
        det = Detector(**model_settings(model, args.quick, 2 if args.quick else 10)).fit(ld.data.iloc[: n_steps // 2])
        found = det.detect(ld.data)
        flagged = np.flatnonzero(found.anomalies.to_numpy())
        if len(flagged) == 0:
            flagged = np.flatnonzero(found.scored.to_numpy())
        picks = flagged[np.linspace(0, len(flagged) - 1, min(clicks, len(flagged))).round().astype(int)]
        for method in methods_for(det):
            det.explain(found, int(picks[0]), method=method)  # warm-up (imports, cached explainer)
            times = []
            for i in picks:
                t0 = time.perf_counter()
                det.explain(found, int(i), method=method)
                times.append(1e3 * (time.perf_counter() - t0))
            target = TARGETS_MS.get(method)
            med = float(np.median(times))
            rows.append([model, method, med, float(np.quantile(times, 0.9)),
                         f"≤ {target}" if target else "—",
                         ("yes" if med <= target else "**no**") if target else "—"])
    print(f"\n## 1. Per click (26 sensors x lookback 10, {len(picks)} flagged rows, after one warm-up)\n")
    print(table(["model", "method", "median ms", "p90 ms", "target ms", "met"], rows))


# --------------------------------------------------------------------------------- 2. batch

def bench_batch(args) -> None:
    path = Path(args.canadian) if args.canadian else CANADIAN
    if path.is_file() and not args.quick:
        frame, source = load_csv(path), f"Canadian climate ({path.name})"
    else:
        n = 1500 if args.quick else 6000
        frame = datasets.make_sensors(n_steps=n, n_sensors=26, anomalies=4 if args.quick else 12,
                                      seed=args.latency_seed).data
        source = "generated make_sensors (26 sensors)" + ("" if args.quick else f"; {path} not found")
    rows = []
    models = ("deepcnn",) if args.quick else MODELS
    for model in models:
        epochs = 1 if args.quick else (10 if model == "deepcnn" else 3)
        t0 = time.perf_counter()
        det = Detector(**model_settings(model, args.quick, epochs)).fit(frame)
        fit_s = time.perf_counter() - t0
        found = det.detect(frame)
        whens = None
        if args.quick:
            whens = [int(i) for i in np.flatnonzero(found.anomalies.to_numpy())[:20]]
        det.explain_many(found, [int(np.flatnonzero(found.scored.to_numpy())[0])], method="shap")  # warm-up
        rates = []
        for _ in range(1 if args.quick else 4):  # the first batch call, then three more
            t0 = time.perf_counter()
            result = det.explain_many(found, whens, method="shap")
            seconds = time.perf_counter() - t0
            rates.append(len(result) / seconds if seconds > 0 else float("nan"))
        rate = float(np.median(rates[1:] if len(rates) > 1 else rates))
        gaps = np.array([abs(e.delta) / max(abs(e.score - e.base_value), 1e-12) for e in result])
        stats = [float(np.quantile(gaps, q)) if len(gaps) else float("nan") for q in (0.5, 0.95, 1.0)]
        target = model == "deepcnn"
        rows.append([model, f"{frame.shape[0]} x {frame.shape[1]}", f"{epochs} epochs, {fit_s:.0f} s", len(result),
                     rates[0], rate, f"≥ {TARGET_ROWS_PER_S}" if target else "—",
                     ("yes" if rate >= TARGET_ROWS_PER_S else "**no**") if target else "—", *stats])
    print(f"\n## 2. Batch: explain_many(method='shap') on every flagged row — {source}\n")
    print(table(["model", "rows x sensors", "fit", "flagged rows", "rows/s (first call)", "rows/s (median of next 3)",
                 "target", "met", "median abs(delta)/gap", "p95", "max"], rows))


# --------------------------------------------------------------------------------- 3. faithfulness

def deletion_drops(det: Detector, result, k: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """For each explanation: (relative score drop when its top-k sensors are replaced by the mean
    background window, mean drop over RANDOM_DRAWS random k-sets), scored in one batch."""
    baseline = np.asarray(det.background_, dtype=np.float32).mean(axis=0)
    batch, scores = [], []
    for exp in result:
        order = [exp.sensors.index(name) for name in exp.top_sensors]
        s = len(exp.sensors)
        sets = [order[:k]] + [list(rng.choice(s, size=k, replace=False)) for _ in range(RANDOM_DRAWS)]
        windows = np.repeat(np.asarray(exp.inputs, dtype=np.float32)[None], len(sets), axis=0)
        for b, cols in enumerate(sets):
            windows[b][:, cols] = baseline[:, cols]
        batch.append(windows)
        scores.append(exp.score)
    if not batch:
        return []
    with torch.no_grad():
        masked = score_module(det)(torch.from_numpy(np.concatenate(batch))).double().numpy()
    masked = masked.reshape(len(batch), RANDOM_DRAWS + 1)
    drops = (np.asarray(scores)[:, None] - masked) / np.asarray(scores)[:, None]
    return [(float(d[0]), float(d[1:].mean())) for d in drops]


def bench_faithfulness(args) -> None:
    n_steps = 3000 if args.quick else 8000
    anomalies = 6 if args.quick else 24
    hits: dict = defaultdict(list)          # (model, method, kind) -> [bool]
    floor: dict = defaultdict(list)         # model -> [|culprits| / S]
    events_seen: dict = defaultdict(lambda: [0, 0])   # model -> [held-out events, detected]
    deletion: dict = defaultdict(list)      # (model, method, k) -> [(top drop, random drop)]
    deltas: dict = defaultdict(list)        # (model, method) -> [|delta| / gap]
    rng = np.random.default_rng(12345)
    for seed in args.seeds:
        ld = datasets.make_sensors(n_steps=n_steps, n_sensors=args.sensors, anomalies=anomalies, seed=seed)
        n_fit = int(round(args.fit_fraction * n_steps))
        index = ld.data.index
        held_out = [e for e in ld.events if index.get_loc(e.start) >= n_fit]
        for model in MODELS:
            settings = model_settings(model, args.quick, 2 if args.quick else args.epochs)
            det = Detector(**settings).fit(ld.data.iloc[:n_fit])
            found = det.detect(ld.data)
            scores = found.scores.to_numpy()
            flags = found.anomalies.to_numpy()
            chosen, kinds = [], []
            for e in held_out:
                lo, hi = index.get_loc(e.start), index.get_loc(e.end)
                events_seen[model][0] += 1
                span = np.arange(lo, hi + 1)
                span = span[np.isfinite(scores[span])]
                if len(span) == 0:
                    continue
                best = int(span[np.argmax(scores[span])])
                if not flags[best]:
                    continue
                events_seen[model][1] += 1
                chosen.append(best)
                kinds.append(e.kind)
                truth = ld.culprits.iloc[best].to_numpy()
                floor[model].append(truth.sum() / truth.size)
            # deletion points: flagged held-out rows, evenly subsampled
            pool = np.flatnonzero(flags[n_fit:]) + n_fit
            pool = pool[np.linspace(0, len(pool) - 1, min(args.deletion_points, len(pool))).round().astype(int)] \
                if len(pool) else pool
            for method in methods_for(det):
                if chosen and method != "grad_cam":  # grad_cam ranks no sensors (time only)
                    result = det.explain_many(found, chosen, method=method)
                    for exp, kind, row in zip(result, kinds, chosen):
                        truth = ld.culprits.iloc[row]
                        hit = bool(truth[exp.top_sensors[0]])
                        hits[(model, method, kind)].append(hit)
                        hits[(model, method, "all")].append(hit)
                        if exp.delta is not None and method == "shap":
                            deltas[(model, method)].append(abs(exp.delta) / max(abs(exp.score - exp.base_value), 1e-12))
                if len(pool) == 0 or method in ("grad_cam",):
                    continue
                result = det.explain_many(found, [int(i) for i in pool], method=method)
                for k in (1, 2):
                    deletion[(model, method, k)] += deletion_drops(det, result, k, rng)
    print(f"\n## 3. Faithfulness on make_sensors (n_steps={n_steps}, {args.sensors} sensors, {anomalies} events "
          f"per seed, seeds {', '.join(map(str, args.seeds))}; fitted on the first {args.fit_fraction:.0%}, "
          f"judged on the events after it)\n")
    det_rows = [[m, events_seen[m][0], events_seen[m][1], float(np.mean(floor[m])) if floor[m] else float("nan")]
                for m in MODELS]
    print(table(["model", "held-out events", "detected (explained)", "random floor"], det_rows))
    print("\n### HitRate@1 (top sensor is a culprit at the event's highest-scored flagged timestamp; "
          "grad_cam is left out: it attributes time steps, not sensors)\n")
    rows = []
    for model in MODELS:
        for method in EXPLAINERS:
            if not hits.get((model, method, "all")):
                continue
            target = method in ("shap", "integrated_gradients")
            rate = np.mean(hits[(model, method, "all")])
            rows.append([model, method, pct(hits[(model, method, "all")])]
                        + [pct(hits.get((model, method, k), [])) for k in KINDS]
                        + [f"{100 * np.mean(floor[model]):.0f} %",
                           (("yes" if rate >= TARGET_HIT else "**no**") if target else "—")])
    print(table(["model", "method", "all"] + list(KINDS) + ["random floor", "≥ 90 % met"], rows))
    print("\n### Deletion check (mean relative score drop when k sensors are replaced by the baseline)\n")
    rows = []
    for model in MODELS:
        for method in EXPLAINERS:
            cells = []
            for k in (1, 2):
                pairs = np.array(deletion.get((model, method, k), []))
                if len(pairs) == 0:
                    cells += [float("nan")] * 3
                    continue
                cells += [float(pairs[:, 0].mean()), float(pairs[:, 1].mean()),
                          float((pairs[:, 0] > pairs[:, 1]).mean())]
            if not np.isnan(cells[0]):
                rows.append([model, method, len(deletion[(model, method, 1)])] + cells)
    print(table(["model", "method", "points", "top-1 drop", "random-1 drop", "top-1 > random (share)",
                 "top-2 drop", "random-2 drop", "top-2 > random (share)"], rows))
    rows = [[m, len(deltas[(m, "shap")]), float(np.median(deltas[(m, "shap")])),
             float(np.quantile(deltas[(m, "shap")], 0.95)), float(np.max(deltas[(m, "shap")]))]
            for m in MODELS if deltas[(m, "shap")]]
    print("\n### SHAP additivity at the explained event timestamps: abs(delta) / abs(score - base_value)\n")
    print(table(["model", "explanations", "median", "p95", "max"], rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny data, 1-2 epochs: a smoke run of every code path")
    p.add_argument("--parts", nargs="+", choices=("latency", "batch", "faithfulness"),
                   default=["latency", "batch", "faithfulness"], help="which parts to run")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="make_sensors seeds of the faithfulness part (default: 2024 2025 2026 2027; --quick: 2024)")
    p.add_argument("--sensors", type=int, default=8, help="sensors of the faithfulness data (default 8)")
    p.add_argument("--epochs", type=int, default=30, help="max training epochs in the faithfulness part")
    p.add_argument("--fit-fraction", type=float, default=0.4, help="leading part of the series used to fit")
    p.add_argument("--deletion-points", type=int, default=40,
                   help="flagged rows per seed and model for the deletion check")
    p.add_argument("--latency-seed", type=int, default=7, help="seed of the generated latency / batch data")
    p.add_argument("--canadian", help=f"path of the Canadian climate CSV (default {CANADIAN})")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of every detector (default: the detector's own, all cores up to 8)")
    args = p.parse_args(argv)
    global THREADS
    THREADS = args.threads
    if args.seeds is None:
        args.seeds = [2024] if args.quick else [2024, 2025, 2026, 2027]
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv])
    print(f"# Explanation benchmark\n\n```\n$ {command}\n```\n")
    print(f"{platform.platform()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
          f"({args.threads or torch.get_num_threads()} threads), numpy {np.__version__}, pandas {pd.__version__}; "
          f"load average at start {load()}.")
    t0 = time.perf_counter()
    if "latency" in args.parts:
        bench_latency(args)
    if "batch" in args.parts:
        bench_batch(args)
    if "faithfulness" in args.parts:
        bench_faithfulness(args)
    print(f"\nTotal {time.perf_counter() - t0:.0f} s; load average at the end {load()} (other processes on the "
          f"machine slow torch's threads down a lot: compare runs at a similar load).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
