"""Detection and explanation quality against strong simple baselines, measured as TSB-AD measures.

    python benchmarks/bench_quality.py                 # the whole suite (about an hour on 2 cores)
    python benchmarks/bench_quality.py --quick         # smoke run: 3 SKAB files, 2 ASD servers, 2 generated sets
    python benchmarks/bench_quality.py --families asd --json asd.json
    python benchmarks/bench_quality.py --select-only   # the label-free selection of the default only

Data: the shared data folder (``$MSDA_SHARED_DATA`` or ``../shared/data`` beside the checkout)
for SKAB and ASD; the generated family needs nothing.

PROTOCOL (written down before this script was run on any labelled row; nothing below was tuned
on test labels)
================================================================================================

Dataset families, each with its own published protocol:

* ``skab``: the 34 labelled SKAB files. Per file, the first 400 rows fit the detector and its
  threshold, the rest are test rows. Point-wise counts are pooled over the files (SKAB's F1 /
  FAR / MAR); VUS-PR, VUS-ROC and AUC-PR are computed per file and averaged.
* ``asd``: the 12 ASD servers. Fit on ``omi-N_train.csv`` (normal operation), score
  ``omi-N_test.csv``; every metric per server, then the mean over servers.
* ``generated``: ``datasets.make_sensors`` with 8, 26 and 60 sensors, seeds 0, 1, 2, 6,000 steps,
  16 anomalies. The detector fits on the first 3,000 steps of the *clean reference* (the same
  series with ``anomalies=0``) and scores the last 3,000 steps of the series with anomalies;
  every metric per series, then the mean.

Detectors, with fixed settings (the same on every dataset, ``seed=0``, ``num_threads=1``,
``lookback=10``, ``scaling="standard"``, ``standardize_errors=True``, the default threshold
rule: the 0.99 quantile of held-out normal scores, ``min_duration=1``):

* ``deepcnn``: package defaults otherwise (30 epochs, early stopping);
* ``lstm_ae``: ``epochs=10`` (a time budget for 2 CPU cores; otherwise package defaults);
* ``pca``: 10 components, ``reduction="window"`` (the reconstruction error of the whole window);
* ``kmeans``: 20 clusters, ``reduction="window"`` (KMeansAD's distance to the nearest centroid);
* ``zscore``: the per-sensor z-score of each row (``reduction="last"``);
* ``iforest``: 100 trees on the flattened windows;
* ``default``: the candidate picked by the label-free selection below (it may equal one of the
  above; it is then scored again under its own name).

Label-free selection of the default (``--select-only`` prints it alone). Candidates, in order:

  D0 ``deepcnn``, the session-2 defaults (``scaling="minmax"``, raw errors);
  D1 ``deepcnn`` with ``scaling="standard"`` and ``standardize_errors=True``;
  D2 ``pca`` as above; D3 ``lstm_ae`` as above (``epochs=10``).

Selection data holds no labelled row: SKAB's ``anomaly-free.csv``, the first 70 % of every ASD
``_train.csv`` file for fitting and the last 30 % held out, and the generated clean references
(fit on the first 3,000 steps, hold out the next 3,000). Synthetic anomalies are injected into
the held-out part only (seeded; 8 events per series, cycling spike (1 row, +7 sd), level shift
(20 rows, +4 sd), drift (50 rows, a ramp to 5 sd), noise burst (30 rows, noise of 4 sd), each on
one random sensor, sd = that sensor's sd in the fit part). Criterion: AUC-PR of the scores against
the injected rows, averaged per family, then over the three families; the highest wins, a tie
goes to the earlier candidate. The threshold rule is not selected (the package's quantile rule
stays; SKAB's earlier label-free study found it best among the label-free rules).

Metrics (``msda_widgets.engine.metrics``): VUS-PR and VUS-ROC (TSB-AD's range-based definition),
AUC-PR (average precision), point-wise F1 / FAR / MAR at the detector's own threshold, no point
adjustment. The test rows are scored with the fit rows before them as context, so every test
row has a score.

Explanations: HitRate@100 % and @150 % of ``error``, ``shap`` and ``integrated_gradients`` against
ASD's ``interpretation_label/`` and the generator's culprit sensors, for every anomalous test row
of a labelled event (at most 40 rows per series, evenly spaced), ranking sensors by their
attribution totals (largest first); for the generated data also the share of *detected* events
(some row flagged) whose top sensor at the event's highest-scoring row is a culprit.

Anchors (published, not re-run here): SKAB leaderboard Conv-AE F1 0.78; TSB-AD-M (NeurIPS 2024)
VUS-PR CNN 0.31, PCA 0.31, OmniAnomaly 0.31, KMeansAD 0.29, IForest 0.20; InterFusion's
interpretation score 0.87 (KDD 2021).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msda_widgets import Detector, datasets  # noqa: E402
from msda_widgets.engine import catalogue, metrics  # noqa: E402

COMMON = dict(seed=0, num_threads=1, lookback=10, scaling="standard", standardize_errors=True)
DETECTORS: dict[str, dict] = {
    "deepcnn": dict(COMMON, model="deepcnn"),
    "lstm_ae": dict(COMMON, model="lstm_ae", epochs=10),
    "pca": dict(COMMON, model="pca", reduction="window"),
    "kmeans": dict(COMMON, model="kmeans", reduction="window"),
    "zscore": dict(COMMON, model="zscore", reduction="last"),
    "iforest": dict(COMMON, model="iforest"),
}
CANDIDATES: dict[str, dict] = {
    "D0 deepcnn (session-2 defaults)": dict(seed=0, num_threads=1, model="deepcnn"),
    "D1 deepcnn standardized": DETECTORS["deepcnn"],
    "D2 pca": DETECTORS["pca"],
    "D3 lstm_ae standardized": DETECTORS["lstm_ae"],
}
EXPLAIN_METHODS = ("error", "shap", "integrated_gradients")
EXPLAIN_ROWS = 40
SKAB_TRAIN = 400
GEN_SENSORS = (8, 26, 60)
GEN_SEEDS = (0, 1, 2)
GEN_STEPS = 6000
INJECT_EVENTS = 8
ANCHORS = {
    "SKAB leaderboard, Conv-AE (F1)": 0.78,
    "TSB-AD-M VUS-PR: CNN": 0.31, "TSB-AD-M VUS-PR: PCA": 0.31, "TSB-AD-M VUS-PR: OmniAnomaly": 0.31,
    "TSB-AD-M VUS-PR: KMeansAD": 0.29, "TSB-AD-M VUS-PR: IForest": 0.20,
    "InterFusion interpretation score (HitRate@150 %)": 0.87,
}


# ---------------------------------------------------------------------------------------------
# data: every series is (fit frame, test frame with context, test labels, culprits or None)
# ---------------------------------------------------------------------------------------------

def shared_dir() -> Optional[Path]:
    env = os.environ.get("MSDA_SHARED_DATA")
    for c in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if c.is_dir():
            return c
    return None


class Series:
    """One benchmark series: ``fit`` (normal data), ``test`` (the rows judged), their labels,
    and per-row culprit sets (list of sets of sensor names, empty set = none) where known."""

    def __init__(self, name: str, fit: pd.DataFrame, test: pd.DataFrame, labels: np.ndarray,
                 culprits: Optional[list] = None):
        self.name, self.fit, self.test, self.labels, self.culprits = name, fit, test, labels.astype(bool), culprits

    @property
    def joined(self) -> pd.DataFrame:
        """The fit rows then the test rows (the test rows get the fit rows as their context)."""
        return pd.concat([self.fit, self.test])


def skab_series(root: Path, limit: Optional[int]) -> list[Series]:
    out = []
    for sub in ("valve1", "valve2", "other"):
        for path in sorted((root / "skab" / sub).glob("*.csv"), key=lambda p: int(p.stem)):
            df = pd.read_csv(path, sep=";", parse_dates=["datetime"]).set_index("datetime")
            labels = df["anomaly"].to_numpy() > 0
            sensors = df.drop(columns=["anomaly", "changepoint"])
            out.append(Series(f"skab/{sub}/{path.stem}", sensors.iloc[:SKAB_TRAIN], sensors.iloc[SKAB_TRAIN:],
                              labels[SKAB_TRAIN:]))
    return out[:limit] if limit else out


def _asd_frame(path: Path) -> tuple[pd.DataFrame, Optional[np.ndarray]]:
    df = pd.read_csv(path).drop(columns=["row"])
    labels = df.pop("label").to_numpy() > 0 if "label" in df.columns else None
    return df, labels


def asd_culprits(path: Path, n_rows: int) -> list:
    sets: list = [set() for _ in range(n_rows)]
    for line in path.read_text().split():
        span, metrics_ = line.split(":")
        start, end = (int(v) for v in span.split("-"))
        names = {f"m{int(m)}" for m in metrics_.split(",") if m}
        for i in range(start, min(end, n_rows)):
            sets[i] = names
    return sets


def asd_series(root: Path, limit: Optional[int]) -> list[Series]:
    out = []
    for k in range(1, 13):
        train, _ = _asd_frame(root / "asd" / f"omi-{k}_train.csv")
        test, labels = _asd_frame(root / "asd" / f"omi-{k}_test.csv")
        # a row-number index that continues after the fit rows
        test.index = np.arange(len(train), len(train) + len(test))
        culprits = asd_culprits(root / "asd" / "interpretation_label" / f"omi-{k}.txt", len(test))
        out.append(Series(f"asd/omi-{k}", train, test, labels, culprits))
    return out[:limit] if limit else out


def generated_series(limit: Optional[int]) -> list[Series]:
    out = []
    half = GEN_STEPS // 2
    for n in GEN_SENSORS:
        for seed in GEN_SEEDS:
            clean = datasets.make_sensors(GEN_STEPS, n, anomalies=0, seed=seed).data
            dirty = datasets.make_sensors(GEN_STEPS, n, anomalies=16, seed=seed)
            culprits = [set(dirty.culprits.columns[row]) for row in dirty.culprits.to_numpy()[half:]]
            out.append(Series(f"generated/{n}x{seed}", clean.iloc[:half], dirty.data.iloc[half:],
                              dirty.labels.to_numpy()[half:], culprits))
    return out[:limit] if limit else out


# ---------------------------------------------------------------------------------------------
# scoring one series
# ---------------------------------------------------------------------------------------------

def fit_and_score(settings: dict, s: Series) -> tuple[Detector, Any, np.ndarray, float]:
    """(detector, detection of fit+test rows, test scores, seconds)."""
    t0 = time.perf_counter()
    det = Detector(**settings).fit(s.fit)
    detection = det.detect(s.joined)
    scores = detection.scores.to_numpy()[len(s.fit):]
    return det, detection, scores, time.perf_counter() - t0


def detection_metrics(scores: np.ndarray, flags: np.ndarray, labels: np.ndarray) -> dict:
    ok = np.isfinite(scores)
    s, y, f = scores[ok], labels[ok], flags[ok]
    out = {"vus_pr": metrics.vus_pr(s, y), "vus_roc": metrics.vus_roc(s, y), "auc_pr": metrics.pr_auc(s, y)}
    out.update({k: metrics.point_metrics(f, y)[k] for k in ("f1", "far", "mar", "tp", "fp", "fn", "tn")})
    return out


def hit_rates(det: Detector, detection: Any, s: Series, methods: Iterable[str]) -> dict:
    """HitRate@100/150 per method over the anomalous test rows with known culprits."""
    if s.culprits is None:
        return {}
    offset = len(s.fit)
    rows = [i for i, g in enumerate(s.culprits) if g and s.labels[i]]
    if not rows:
        return {}
    pick = [rows[j] for j in np.unique(np.linspace(0, len(rows) - 1, min(EXPLAIN_ROWS, len(rows))).round().astype(int))]
    served = {m.name for m in catalogue.methods_for(det.config.model.model)}
    out = {}
    for method in methods:
        if method not in served:
            continue
        expl = det.explain_many(detection, [offset + i for i in pick], method=method)
        ranking = [list(e.by_sensor.sort_values(ascending=False).index) for e in expl]
        truth = [s.culprits[i] for i in pick]
        out[method] = {p: metrics.hit_rate(ranking, truth, p) for p in (100, 150)}
    return out


def top_sensor_share(det: Detector, detection: Any, s: Series, flags: np.ndarray) -> Optional[float]:
    """Share of detected events whose top contributor at their highest-scoring row is a culprit."""
    if s.culprits is None or not s.name.startswith("generated") or detection.row_contributions is None:
        return None
    contrib = detection.contributions.to_numpy()[len(s.fit):]
    if not np.isfinite(contrib).any():
        return None
    scores = detection.scores.to_numpy()[len(s.fit):]
    hits = total = 0
    for start, end in metrics.find_events(s.labels):
        if not flags[start:end].any():
            continue
        seg = scores[start:end]
        i = start + int(np.nanargmax(np.where(np.isfinite(seg), seg, -np.inf)))
        total += 1
        hits += s.test.columns[int(np.nanargmax(contrib[i]))] in s.culprits[i]
    return hits / total if total else None


def run_family(name: str, series: list[Series], detectors: dict[str, dict], explain: bool, log) -> dict:
    out: dict = {}
    for det_name, settings in detectors.items():
        per: list[dict] = []
        for s in series:
            det, detection, scores, seconds = fit_and_score(settings, s)
            flags = detection.anomalies.to_numpy()[len(s.fit):]
            row = {"series": s.name, "seconds": seconds, **detection_metrics(scores, flags, s.labels)}
            if explain:
                row["hit_rate"] = hit_rates(det, detection, s, EXPLAIN_METHODS)
                row["top_sensor_share"] = top_sensor_share(det, detection, s, flags)
            per.append(row)
            log(f"  {name:9s} {det_name:8s} {s.name:22s} VUS-PR {row['vus_pr']:.3f} AUC-PR {row['auc_pr']:.3f} "
                f"F1 {row['f1']:.3f} ({seconds:.1f} s)")
        out[det_name] = summarize(name, per)
    return out


def _nanmean(values: Iterable[Optional[float]]) -> float:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(v)) if v else float("nan")


def summarize(family: str, per: list[dict]) -> dict:
    summary = {k: _nanmean(r[k] for r in per) for k in ("vus_pr", "vus_roc", "auc_pr", "f1", "far", "mar")}
    if family == "skab":  # SKAB pools its point-wise counts
        tp, fp, fn, tn = (sum(r[k] for r in per) for k in ("tp", "fp", "fn", "tn"))
        pooled = metrics.metrics_from_counts(tp, fp, fn, tn)
        summary.update(f1=pooled["f1"], far=pooled["far"], mar=pooled["mar"])
    hits: dict = {}
    for r in per:
        for method, by_p in r.get("hit_rate", {}).items():
            for p, v in by_p.items():
                hits.setdefault(method, {}).setdefault(p, []).append(v)
    summary["hit_rate"] = {m: {p: _nanmean(v) for p, v in by_p.items()} for m, by_p in hits.items()}
    summary["top_sensor_share"] = _nanmean(r.get("top_sensor_share") for r in per)
    summary["seconds"] = float(sum(r["seconds"] for r in per))
    summary["per_series"] = per
    return summary


# ---------------------------------------------------------------------------------------------
# label-free selection of the default
# ---------------------------------------------------------------------------------------------

def inject(frame: pd.DataFrame, ref: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The declared synthetic anomalies in a copy of ``frame`` (sd from ``ref``) and their rows."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    values = out.to_numpy(dtype=np.float64, copy=True)
    sd = ref.to_numpy(dtype=np.float64).std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    labels = np.zeros(len(frame), dtype=bool)
    kinds = ("spike", "level_shift", "drift", "noise_burst")
    slots = np.linspace(0.05, 0.95, INJECT_EVENTS + 1)[:-1]
    for k, start_frac in enumerate(slots):
        kind = kinds[k % len(kinds)]
        length = {"spike": 1, "level_shift": 20, "drift": 50, "noise_burst": 30}[kind]
        start = int(start_frac * len(frame)) + int(rng.integers(0, max(1, len(frame) // (4 * INJECT_EVENTS))))
        end = min(len(frame), start + length)
        j = int(rng.integers(0, values.shape[1]))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if kind == "spike":
            values[start, j] += sign * 7 * sd[j]
        elif kind == "level_shift":
            values[start:end, j] += sign * 4 * sd[j]
        elif kind == "drift":
            values[start:end, j] += sign * np.linspace(0, 5 * sd[j], end - start)
        else:
            values[start:end, j] += rng.normal(0, 4 * sd[j], end - start)
        labels[start:end] = True
    out.loc[:, :] = values
    return out, labels


def selection_sets(root: Optional[Path], quick: bool) -> dict[str, list[tuple[pd.DataFrame, pd.DataFrame]]]:
    """family -> [(fit frame, held-out frame)], normal data only."""
    sets: dict[str, list] = {}
    if root is not None:
        free = pd.read_csv(root / "skab" / "anomaly-free" / "anomaly-free.csv", sep=";",
                           parse_dates=["datetime"]).set_index("datetime")
        segs = [free.iloc[i * 1100:(i + 1) * 1100] for i in range(2 if quick else 8)]
        sets["skab"] = [(seg.iloc[:SKAB_TRAIN], seg.iloc[SKAB_TRAIN:]) for seg in segs]
        asd = []
        for k in range(1, 3 if quick else 13):
            train, _ = _asd_frame(root / "asd" / f"omi-{k}_train.csv")
            cut = int(0.7 * len(train))
            asd.append((train.iloc[:cut], train.iloc[cut:]))
        sets["asd"] = asd
    gen = []
    for n in GEN_SENSORS[:1] if quick else GEN_SENSORS:
        for seed in GEN_SEEDS[:1] if quick else GEN_SEEDS:
            clean = datasets.make_sensors(GEN_STEPS, n, anomalies=0, seed=seed).data
            gen.append((clean.iloc[:GEN_STEPS // 2], clean.iloc[GEN_STEPS // 2:]))
    sets["generated"] = gen
    return sets


def select_default(sets: dict, log) -> dict:
    table: dict[str, dict] = {}
    for cand, settings in CANDIDATES.items():
        fam_scores = {}
        for fam, pairs in sets.items():
            aucs = []
            for k, (fit, held) in enumerate(pairs):
                dirty, labels = inject(held, fit, seed=1000 + k)
                det = Detector(**settings).fit(fit)
                scores = det.score(pd.concat([fit, dirty])).to_numpy()[len(fit):]
                ok = np.isfinite(scores)
                aucs.append(metrics.pr_auc(scores[ok], labels[ok]))
            fam_scores[fam] = float(np.mean(aucs))
        table[cand] = {"families": fam_scores, "criterion": float(np.mean(list(fam_scores.values())))}
        log(f"  selection {cand:34s} " + " ".join(f"{f} {v:.3f}" for f, v in fam_scores.items())
            + f" -> {table[cand]['criterion']:.3f}")
    best = max(table, key=lambda c: (table[c]["criterion"], -list(CANDIDATES).index(c)))
    return {"table": table, "chosen": best, "settings": CANDIDATES[best]}


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

def _f(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def report(out: dict) -> str:
    lines = [f"Command: `{out['command']}` — {out['when']}, {out['machine']}, load average at start "
             f"{out['load_start']}, at end {out['load_end']}; {out['seconds'] / 60:.1f} min.", ""]
    sel = out.get("selection")
    if sel:
        lines += ["**Label-free selection of the default** (AUC-PR of injected anomalies on held-out normal data):", "",
                  "| candidate | " + " | ".join(next(iter(sel["table"].values()))["families"]) + " | criterion |",
                  "|---|" + "---|" * (len(next(iter(sel["table"].values()))["families"]) + 1)]
        for cand, row in sel["table"].items():
            mark = " **(chosen)**" if cand == sel["chosen"] else ""
            lines.append(f"| {cand}{mark} | " + " | ".join(_f(v) for v in row["families"].values())
                         + f" | {_f(row['criterion'])} |")
        lines.append("")
    for fam, by_det in out["families"].items():
        lines += [f"**{fam}** (threshold: the package's default rule; {'pooled' if fam == 'skab' else 'mean'} F1/FAR/MAR):", "",
                  "| detector | VUS-PR | VUS-ROC | AUC-PR | F1 | FAR | MAR | HitRate@100 error / shap / IG | "
                  "HitRate@150 error / shap / IG | top sensor a culprit | fit+score s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for det, r in by_det.items():
            hr = r.get("hit_rate", {})
            h100 = " / ".join(_f(hr.get(m, {}).get(100)) for m in EXPLAIN_METHODS)
            h150 = " / ".join(_f(hr.get(m, {}).get(150)) for m in EXPLAIN_METHODS)
            lines.append(f"| {det} | {_f(r['vus_pr'])} | {_f(r['vus_roc'])} | {_f(r['auc_pr'])} | {_f(r['f1'])} | "
                         f"{_f(r['far'])} | {_f(r['mar'])} | {h100} | {h150} | {_f(r['top_sensor_share'])} | "
                         f"{r['seconds']:.0f} |")
        lines.append("")
    lines += ["Published anchors (not re-run): " + "; ".join(f"{k} {v:.2f}" for k, v in ANCHORS.items()) + "."]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", default="skab,asd,generated")
    ap.add_argument("--detectors", default=",".join([*DETECTORS, "default"]))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--select-only", action="store_true")
    ap.add_argument("--no-explain", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    log = lambda m: print(m, flush=True)  # noqa: E731
    root = shared_dir()
    t0 = time.perf_counter()
    out: dict = {"command": "python benchmarks/bench_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{os.cpu_count()} cores, {platform.machine()}",
                 "load_start": " ".join(f"{v:.2f}" for v in os.getloadavg()), "families": {}}
    families = [f for f in args.families.split(",") if f]
    if root is None:
        families = [f for f in families if f == "generated"]
        log("shared data not found: only the generated family runs")
    sel = select_default(selection_sets(root, args.quick), log)
    out["selection"] = sel
    if not args.select_only:
        wanted = [d for d in args.detectors.split(",") if d]
        detectors = {d: (sel["settings"] if d == "default" else DETECTORS[d]) for d in wanted}
        limit = {"skab": 3, "asd": 2, "generated": 2} if args.quick else {}
        loaders: dict[str, Callable[[], list[Series]]] = {
            "skab": lambda: skab_series(root, limit.get("skab")),
            "asd": lambda: asd_series(root, limit.get("asd")),
            "generated": lambda: generated_series(limit.get("generated")),
        }
        for fam in families:
            out["families"][fam] = run_family(fam, loaders[fam](), detectors, not args.no_explain, log)
    out["seconds"] = time.perf_counter() - t0
    out["load_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    text = report(out)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
