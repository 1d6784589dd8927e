"""Engine benchmark: msda_widgets against the ancestor (msda's ``anamoly.py``) on the same data.

Run from the repository root::

    .venv/bin/python benchmarks/bench_engine.py                 # full run (several minutes)
    .venv/bin/python benchmarks/bench_engine.py --json out.json # also write the results as JSON
    .venv/bin/python benchmarks/bench_engine.py --quick         # smoke test, well under 30 s

The data is ``msda/Canadian_climate_history.csv`` in the shared data folder (``$MSDA_SHARED_DATA``,
else ``../shared/data`` beside the checkout; ``--data`` names a file): 29,221 daily rows x 26
sensors with gaps. Without it the script uses ``msda_widgets.datasets.make_sensors(29_221, 26)``
and says so. The ancestor is not installed: its code shapes (the Python windowing loop, its
DeepCNN and training loop) are re-created below and run in the same process as ours.

Sections (each printed as a Markdown table: measure, target, measured, result):

1. windowing: ``make_windows`` (a strided view) against the ancestor's Python loop, plus what
   materialising training batches from the view costs;
2. time to the ancestor's loss: the ancestor's DeepCNN (lr 1e-5, batch 32, 3 epochs) gives the
   target loss L*; ours (defaults: batch 256, lr 1e-3) is timed until its moving mean training
   loss over the last 20 batches first reaches L*;
3. scoring all windows: ``Detector.score(df)`` and the pure model pass ``Detector._errors``;
4. a full ``Detector(model=..., seed=0).fit(df)`` with default settings;
5. peak RSS of load -> fit -> score -> contributions, each model in a fresh subprocess.

Sections 3-5 come from the same child processes (one per model), so the fit and scoring times
there include a fresh process's first-call costs, as a user sees them. Timings use
``time.perf_counter``; repeated measurements are medians after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout even when the package is not installed
    sys.path.insert(0, str(REPO))

CSV_REL = Path("msda") / "Canadian_climate_history.csv"
FULL_ROWS, FULL_SENSORS = 29_221, 26
QUICK_ROWS = 3_000
LOOKBACK = 10
MOVING = 20                 # batches in the moving mean of section 2's stopping rule
LSTM_CAP_S = 180.0          # LSTM-AE fit is stopped (at an epoch boundary) after this long
QUICK_THREADS = 1           # a quick run uses one torch thread: it must stay fast on a busy machine,
                            # where torch's threads waiting on each other can make small steps 10-50x slower

# The targets.
T_WINDOW_SPEEDUP = 100.0
T_TRAIN_SPEEDUP = 20.0
T_SCORE_DEEPCNN_S = 0.05
T_SCORE_LSTM_S = 2.0
T_FIT_DEEPCNN_S = 20.0
T_PEAK_RSS_MB = 1024.0

# The ancestor's DeepCNN training settings.
ANCESTOR_LR, ANCESTOR_BATCH, ANCESTOR_EPOCHS = 1e-5, 32, 3


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------

def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1, number: int = 1) -> tuple[float, list]:
    """Median seconds per call of ``fn`` over ``repeats`` samples of ``number`` calls each."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t) / number)
    return statistics.median(samples), samples


def fmt_s(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def rss_mb() -> dict[str, float]:
    """Peak and current RSS of this process in MB.

    ``peak_mb`` is the kernel's high-water mark of this process's own memory (``VmHWM`` in
    /proc/self/status). ``getrusage(RUSAGE_SELF).ru_maxrss`` is kept as ``ru_maxrss_mb`` but not
    used: on Linux it survives fork + exec, so a child started by a big parent reports the
    parent's peak (measured: a child of a 400 MB parent shows 406 MB there and 9 MB in VmHWM).
    """
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    out = {"peak_mb": ru, "ru_maxrss_mb": ru}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["peak_mb"] = int(line.split()[1]) / 1024.0
            elif line.startswith("VmRSS:"):
                out["current_mb"] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def find_data(explicit: Optional[str]) -> Optional[Path]:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SystemExit(f"--data {explicit}: no such file")
        return path
    env = os.environ.get("MSDA_SHARED_DATA")
    candidates = ([Path(env) / CSV_REL] if env else []) + [REPO.parent / "shared" / "data" / CSV_REL]
    return next((c for c in candidates if c.is_file()), None)


def load_data(path: Optional[Path], quick: bool):
    """(DataFrame, description). Quick mode keeps QUICK_ROWS rows where every sensor has data."""
    if path is not None:
        from msda_widgets import load_csv
        df = load_csv(path)
        source = str(path)
        if quick:
            for start in range(0, max(len(df) - QUICK_ROWS, 0) + 1, QUICK_ROWS):
                block = df.iloc[start:start + QUICK_ROWS]
                if (block.notna().sum() >= 2).all():
                    break
            df = block
            source += f" (quick: rows {start}..{start + len(df) - 1})"
        return df, source
    from msda_widgets.datasets import make_sensors
    n = QUICK_ROWS if quick else FULL_ROWS
    df = make_sensors(n_steps=n, n_sensors=FULL_SENSORS).data
    return df, (f"SYNTHETIC: msda_widgets.datasets.make_sensors(n_steps={n}, n_sensors={FULL_SENSORS}) "
                f"(Canadian_climate_history.csv not found)")


class Table:
    """Rows of one section: measure, target, measured, result (PASS / FAIL / info / n/a)."""

    def __init__(self, title: str, quick: bool):
        self.title, self.quick, self.rows, self.notes = title, quick, [], []

    def add(self, measure: str, measured: str, target: str = "", passed: Optional[bool] = None,
            value: Any = None) -> None:
        if passed is None:
            result = "info"
        elif self.quick:
            result = "n/a (quick)"
        else:
            result = "PASS" if passed else "FAIL"
        self.rows.append({"measure": measure, "target": target, "measured": measured, "result": result,
                          "passed": None if (passed is None or self.quick) else bool(passed),
                          "value": value})

    def note(self, text: str) -> None:
        self.notes.append(text)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| Measure | Target | Measured | Result |", "|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['measure']} | {r['target'] or '-'} | {r['measured']} | {r['result']} |")
        lines += [""] + [f"- {n}" for n in self.notes] + ([""] if self.notes else [])
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"title": self.title, "rows": self.rows, "notes": self.notes}


# ------------------------------------------------------------------------------------------------
# the ancestor's code shapes, re-created (msda's anamoly.py is not installed)
# ------------------------------------------------------------------------------------------------

def ancestor_windows(data: np.ndarray, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """The ancestor's Python windowing loop, verbatim in shape."""
    X, Y = [], []
    for i in range(len(data) - lookback):
        X.append(data[i:i + lookback])
        Y.append(data[i + lookback])
    X, Y = np.array(X), np.array(Y)
    return X, Y


def ancestor_deepcnn(lookback: int, n_sensors: int):
    """The ancestor's DeepCNN: Conv1d over the SENSOR axis with the lookback as channels.

    The ancestor hard-coded ``Linear(80, 40)``; 80 = 16 * 5 is what this formula gives for 26
    sensors, so the network is the same there (and still builds for other sensor counts here).
    """
    from torch import nn
    flat = 16 * (((n_sensors - 2) // 2 - 2) // 2)
    return nn.Sequential(
        nn.Conv1d(lookback, 16, kernel_size=3), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(16, 16, kernel_size=3), nn.ReLU(), nn.MaxPool1d(2),
        nn.Flatten(), nn.Linear(flat, 40), nn.ReLU(), nn.Linear(40, n_sensors),
    )


def ancestor_lstm_bug_forward(x, seed: int = 0) -> None:
    """The ancestor's LSTM-AE scoring shape: batch-first tensors fed to ``batch_first=False``
    layers, so each LSTM recurs over the *windows* (N steps) with the lookback as the batch.
    128-64 | repeat | 64-128, then a linear layer back to the sensors. An approximation: only
    the layer sizes and the bug are known, which is what sets its cost."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    n_sensors, lookback = x.shape[2], x.shape[1]
    enc1, enc2 = nn.LSTM(n_sensors, 128), nn.LSTM(128, 64)
    dec1, dec2, out = nn.LSTM(64, 64), nn.LSTM(64, 128), nn.Linear(128, n_sensors)
    with torch.inference_mode():
        h, _ = enc1(x)                # (N, L, 128): recurrence over N
        h, _ = enc2(h)                # (N, L, 64)
        z = h[:, -1:].expand(-1, lookback, -1).contiguous()
        h, _ = dec1(z)
        h, _ = dec2(h)
        out(h)


# ------------------------------------------------------------------------------------------------
# section 0: environment, load and prepare
# ------------------------------------------------------------------------------------------------

def bench_load_prepare(path: Optional[Path], quick: bool, repeats: int) -> tuple[Table, dict, Any]:
    from msda_widgets.config import DataConfig
    from msda_widgets.engine.data import DataPipeline

    table = Table("0. Load and prepare", quick)
    details: dict = {}
    df, source = load_data(path, quick)
    details["source"] = source
    details["shape"] = list(df.shape)
    details["missing_cells"] = int(df.isna().to_numpy().sum())
    if path is not None:
        from msda_widgets import load_csv
        t_load, samples = median_time(lambda: load_csv(path), repeats)
        details["load_csv_s"] = samples
        table.add("`load_csv` on the whole file", fmt_s(t_load), value=t_load)
    else:
        table.note("load_csv not timed: the CSV file is absent (synthetic data).")

    t_fit, samples = median_time(lambda: DataPipeline(DataConfig()).fit_prepare(df), repeats)
    details["fit_prepare_s"] = samples
    table.add("`DataPipeline().fit_prepare(df)` (sort, choose sensors, impute)", fmt_s(t_fit), value=t_fit)
    pipe = DataPipeline(DataConfig())
    sd = pipe.fit_prepare(df)
    t_prep, samples = median_time(lambda: pipe.prepare(df), repeats)
    details["prepare_s"] = samples
    table.add("`pipeline.prepare(df)` (fitted)", fmt_s(t_prep), value=t_prep)
    table.add("rows x sensors after preparing", f"{sd.values.shape[0]:,} x {sd.values.shape[1]}",
              value=list(sd.values.shape))
    table.add("missing cells imputed (`interpolate`)", f"{int(sd.missing.sum()):,}", value=int(sd.missing.sum()))
    return table, details, (df, sd)


# ------------------------------------------------------------------------------------------------
# section 1: windowing
# ------------------------------------------------------------------------------------------------

def bench_windowing(scaled: np.ndarray, quick: bool, repeats: int) -> tuple[Table, dict]:
    import torch
    from msda_widgets.engine.data import make_windows

    table = Table("1. Windowing (lookback 10, forecast windows)", quick)
    details: dict = {}
    loop_repeats = 1 if quick else 3
    t_loop, samples = median_time(lambda: ancestor_windows(scaled, LOOKBACK), loop_repeats)
    details["ancestor_loop_s"] = samples
    as64 = scaled.astype(np.float64)
    t_loop64, samples = median_time(lambda: ancestor_windows(as64, LOOKBACK), loop_repeats)
    details["ancestor_loop_float64_s"] = samples
    t_view, samples = median_time(lambda: make_windows(scaled, LOOKBACK, "forecast"), repeats, number=200)
    details["make_windows_s"] = samples
    win = make_windows(scaled, LOOKBACK, "forecast")
    X, Y = ancestor_windows(scaled, LOOKBACK)
    same = bool(np.array_equal(X, win.inputs) and np.array_equal(Y, win.targets))
    details["same_windows_as_ancestor"] = same
    t_full, samples = median_time(lambda: np.ascontiguousarray(win.inputs), repeats)
    details["materialise_all_s"] = samples

    rng = np.random.default_rng(0)
    n = len(win.judged)
    batch = 256
    idx = np.sort(rng.choice(n, size=min(batch, n), replace=False))
    inputs, targets = win.inputs, win.targets

    def one_batch():  # what Detector.fit's batch_fn does
        return torch.from_numpy(inputs[idx]), torch.from_numpy(targets[idx])

    t_batch, samples = median_time(one_batch, repeats, number=50)
    details["one_batch_s"] = samples
    order = rng.permutation(n)

    def one_epoch():
        for start in range(0, n, batch):
            b = order[start:start + batch]
            torch.from_numpy(inputs[b]), torch.from_numpy(targets[b])

    t_epoch, samples = median_time(one_epoch, repeats)
    details["epoch_of_batches_s"] = samples

    speed_view = t_loop / t_view
    table.add("ancestor Python loop (`np.array` of slices), same float32 array", fmt_s(t_loop), value=t_loop)
    table.add("the same loop on float64 (the ancestor's dtype after scaling), for information",
              fmt_s(t_loop64), value=t_loop64)
    table.add("`make_windows(values, 10, 'forecast')` (strided view)", fmt_s(t_view), value=t_view)
    table.add("speed-up, view vs loop", f"{speed_view:,.0f}x", f">= {T_WINDOW_SPEEDUP:.0f}x",
              speed_view >= T_WINDOW_SPEEDUP, speed_view)
    table.add(f"materialise one training batch ({batch} windows) from the view", fmt_s(t_batch), value=t_batch)
    table.add(f"materialise a whole epoch of batches ({math.ceil(n / batch)} x {batch}, shuffled)",
              fmt_s(t_epoch), value=t_epoch)
    table.add(f"materialise all {n:,} windows at once (`np.ascontiguousarray`)", fmt_s(t_full), value=t_full)
    fair = t_loop / (t_view + t_epoch)
    table.add("speed-up, loop vs (view + one epoch of batches)", f"{fair:,.0f}x", value=fair)
    full = t_loop / (t_view + t_full)
    table.add("speed-up, loop vs (view + materialise everything, the loop's output)", f"{full:,.0f}x", value=full)
    table.add("same windows and targets as the loop", "yes" if same else "NO", "identical", same, same)
    table.note(f"Input: the prepared, min-max scaled float32 array ({scaled.shape[0]:,} x {scaled.shape[1]}). "
               f"Loop: median of {loop_repeats} after a warm-up; view: median of {repeats} x 200 calls. The "
               f"speed-ups use the float32 loop (the faster, so the conservative, baseline).")
    return table, details


# ------------------------------------------------------------------------------------------------
# section 2: time to the ancestor's 3-epoch training loss
# ------------------------------------------------------------------------------------------------

def bench_training(scaled: np.ndarray, quick: bool, repeats: int) -> tuple[Table, dict]:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from msda_widgets.config import ModelConfig, TrainConfig
    from msda_widgets.engine.data import make_windows
    from msda_widgets.engine.models import build_model
    from msda_widgets.engine.training import (CancelToken, default_threads, evaluate_loss, torch_runtime,
                                              train_model)

    table = Table("2. DeepCNN: time to reach the ancestor's 3-epoch training loss", quick)
    details: dict = {}
    win = make_windows(scaled, LOOKBACK, "forecast")
    n, n_sensors = len(win.judged), scaled.shape[1]
    inputs, targets = win.inputs, win.targets
    X = torch.from_numpy(np.array(inputs))
    Y = torch.from_numpy(np.array(targets))  # a writable copy
    all_idx = np.arange(n)
    cpu = torch.device("cpu")

    def batch_fn(idx):  # the same shape as Detector.fit's
        return torch.from_numpy(inputs[idx]), torch.from_numpy(targets[idx])

    epochs = 1 if quick else ANCESTOR_EPOCHS
    threads = QUICK_THREADS if quick else default_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # warm-up: a few batches of the ancestor's model on a throwaway copy
        torch.manual_seed(1)
        warm = ancestor_deepcnn(LOOKBACK, n_sensors)
        opt = torch.optim.Adam(warm.parameters(), lr=ANCESTOR_LR)
        for k in range(20):
            opt.zero_grad()
            nn.functional.mse_loss(warm(X[k * 32:(k + 1) * 32]), Y[k * 32:(k + 1) * 32]).backward()
            opt.step()

        # the ancestor: shuffled DataLoader, batch 32, Adam lr 1e-5, MSE, 3 epochs (seeded, so every
        # run follows the same trajectory; the median wall time is kept)
        totals = []
        for _ in range(1 if quick else 3):
            torch.manual_seed(0)
            model = ancestor_deepcnn(LOOKBACK, n_sensors)
            loader = DataLoader(TensorDataset(X, Y), batch_size=ANCESTOR_BATCH, shuffle=True,
                                generator=torch.Generator().manual_seed(0))
            optimizer = torch.optim.Adam(model.parameters(), lr=ANCESTOR_LR)
            criterion = nn.MSELoss()
            epoch_losses, epoch_times = [], []
            t0 = time.perf_counter()
            for _ in range(epochs):
                te = time.perf_counter()
                total, count = 0.0, 0
                model.train()
                for x, y in loader:
                    optimizer.zero_grad()
                    loss = criterion(model(x), y)
                    loss.backward()
                    optimizer.step()
                    total += loss.item()
                    count += 1
                epoch_losses.append(total / count)
                epoch_times.append(time.perf_counter() - te)
            totals.append({"total_s": time.perf_counter() - t0, "epoch_s": epoch_times, "losses": epoch_losses})
        middle = sorted(totals, key=lambda r: r["total_s"])[len(totals) // 2]
        t_ancestor, epoch_times = middle["total_s"], middle["epoch_s"]
        ancestor_eval = evaluate_loss(model, batch_fn, all_idx, cpu)
    finally:
        torch.set_num_threads(before)
    target = epoch_losses[-1]
    details.update(ancestor_runs=totals, ancestor_epoch_losses=epoch_losses, ancestor_total_s=t_ancestor,
                   target_loss=target, ancestor_eval_mse=ancestor_eval, threads=threads)

    # ours: build_model(ModelConfig(), S) with TrainConfig() defaults, stopped once the loss is reached
    cfg = TrainConfig(epochs=2, num_threads=QUICK_THREADS) if quick else TrainConfig()
    with torch_runtime(cfg.num_threads, 1):  # warm-up
        warm = build_model(ModelConfig(), n_sensors)
        token = CancelToken()
        train_model(warm, batch_fn, all_idx[:cfg.batch_size * 20], np.empty(0, dtype=np.int64), cfg, device=cpu,
                    on_batch=lambda p: token.cancel() if p.batch >= 20 else None, cancel=token)

    def run_ours(model_cfg: ModelConfig = ModelConfig()) -> dict:
        state: dict = {"losses": [], "times": []}
        token = CancelToken()

        def on_batch(p) -> None:
            now = time.perf_counter() - state["t0"]
            losses = state["losses"]
            losses.append(p.loss)
            state["times"].append(now)
            seen = len(losses)
            if "moving" not in state and seen >= MOVING and sum(losses[-MOVING:]) / MOVING <= target:
                state["moving"] = {"seconds": now, "epoch": p.epoch, "batch": p.batch, "batches": seen,
                                   "windows": (p.epoch - 1) * n + min(p.batch * cfg.batch_size, n)}
            if "epoch_mean" not in state and p.train_loss <= target:
                state["epoch_mean"] = {"seconds": now, "epoch": p.epoch, "batch": p.batch, "batches": seen}
            if "moving" in state and "epoch_mean" in state:
                token.cancel()

        with torch_runtime(cfg.num_threads, cfg.seed):
            model = build_model(model_cfg, n_sensors)
            state["t0"] = time.perf_counter()
            history = train_model(model, batch_fn, all_idx, np.empty(0, dtype=np.int64), cfg, device=cpu,
                                  on_batch=on_batch, cancel=token)
            state["total_s"] = time.perf_counter() - state["t0"]
            state["eval_mse"] = evaluate_loss(model, batch_fn, all_idx, cpu)
        state["stop_reason"] = history.stop_reason
        state["min_moving"] = min(
            (sum(state["losses"][k - MOVING:k]) / MOVING for k in range(MOVING, len(state["losses"]) + 1)),
            default=math.nan)
        del state["losses"]
        return state

    def replay_eval(every: int = 5) -> dict:
        """The same (seeded, deterministic) run again, untimed: every ``every`` batches, the MSE of
        the model in eval mode (no dropout) on all windows, until it is <= the ancestor's."""
        state: dict = {"batches": 0}
        token = CancelToken()
        with torch_runtime(cfg.num_threads, cfg.seed):
            model = build_model(ModelConfig(), n_sensors)

            def on_batch(p) -> None:
                state["batches"] += 1
                if state["batches"] % every == 0:
                    mse = evaluate_loss(model, batch_fn, all_idx, cpu)  # draws no random numbers
                    if mse <= ancestor_eval:
                        state.update(reached=state["batches"], mse=mse)
                        token.cancel()

            train_model(model, batch_fn, all_idx, np.empty(0, dtype=np.int64), cfg, device=cpu,
                        on_batch=on_batch, cancel=token)
        return state

    runs = [run_ours() for _ in range(1 if quick else repeats)]
    replay = replay_eval()
    details["eval_replay"] = replay
    no_dropout = [run_ours(ModelConfig(dropout=0.0)) for _ in range(1 if quick else 3)]
    details["ours_no_dropout_runs"] = no_dropout
    details["ours_runs"] = runs
    reached = [r["moving"]["seconds"] for r in runs if "moving" in r]
    t_ours = statistics.median(reached) if len(reached) == len(runs) else math.nan
    reached_mean = [r["epoch_mean"]["seconds"] for r in runs if "epoch_mean" in r]
    t_ours_mean = statistics.median(reached_mean) if len(reached_mean) == len(runs) else math.nan
    ratio = t_ancestor / t_ours if math.isfinite(t_ours) else 0.0
    first = runs[0]

    plural = "s" if epochs > 1 else ""
    table.add(f"ancestor: {epochs} epoch{plural}, batch {ANCESTOR_BATCH}, Adam lr {ANCESTOR_LR:g} (wall)",
              f"{fmt_s(t_ancestor)} ({', '.join(fmt_s(t) for t in epoch_times)} per epoch)", value=t_ancestor)
    table.add(f"L* = ancestor's mean training loss of epoch {epochs}", f"{target:.5f}",
              "~0.036 (ancestor's report)", value=target)
    if "moving" in first:
        m = first["moving"]
        where = f"epoch {m['epoch']}, batch {m['batch']} ({m['windows']:,} windows seen)"
    else:
        where = f"never (lowest moving mean {first['min_moving']:.5f})"
    table.add(f"ours (batch 256, lr 1e-3, dropout on): moving mean of last {MOVING} batch losses <= L*",
              f"{fmt_s(t_ours)} at {where}", value=t_ours)
    table.add("speed-up to L* (ancestor wall / ours)", f"{ratio:,.1f}x", f">= {T_TRAIN_SPEEDUP:.0f}x",
              ratio >= T_TRAIN_SPEEDUP, ratio)
    if "epoch_mean" in first:
        e = first["epoch_mean"]
        where = f"epoch {e['epoch']}, batch {e['batch']}"
        alt = f"{fmt_s(t_ours_mean)} at {where} ({t_ancestor / t_ours_mean:,.1f}x)"
    else:
        alt = "not reached"
    table.add("ours, other rule: running mean of the epoch so far <= L*", alt, value=t_ours_mean)
    if "reached" in replay:
        k = replay["reached"]
        at = [r["times"][k - 1] if k <= len(r["times"]) else r["times"][-1] / len(r["times"]) * k for r in runs]
        t_eval = statistics.median(at)
        estimated = any(k > len(r["times"]) for r in runs)
        eval_text = (f"{fmt_s(t_eval)}{' (est.)' if estimated else ''} at batch {k} "
                     f"({t_ancestor / t_eval:,.1f}x)")
    else:
        t_eval, eval_text = math.nan, "not reached"
    details["eval_rule_s"] = t_eval
    table.add(f"ours, same quality in eval mode: MSE on all windows <= the ancestor's ({ancestor_eval:.5f}), "
              f"checked every 5 batches", eval_text, value=t_eval)
    nd = [r["moving"]["seconds"] for r in no_dropout if "moving" in r]
    if len(nd) == len(no_dropout):
        t_nd = statistics.median(nd)
        m = no_dropout[0]["moving"]
        nd_text = f"{fmt_s(t_nd)} at epoch {m['epoch']}, batch {m['batch']} ({t_ancestor / t_nd:,.1f}x)"
    else:
        t_nd, nd_text = math.nan, "not reached"
    details["no_dropout_rule_s"] = t_nd
    table.add("ours with `dropout=0` (not the default), same moving-mean rule, for information", nd_text,
              value=t_nd)
    table.add("MSE on all windows, eval mode: ancestor after training / ours when stopped",
              f"{ancestor_eval:.5f} / {statistics.median(r['eval_mse'] for r in runs):.5f}")
    thread_word = "threads" if threads > 1 else "thread"
    table.note(f"Both sides train on the same {n:,} min-max scaled windows (all of them, no validation split), "
               f"with {threads} torch {thread_word}, in this process. Ancestor: median of {len(totals)} runs after a "
               f"warm-up; ours: median of {len(runs)} runs (seed 0) after a warm-up, timed from the `train_model` "
               f"call to the batch that met the rule (the callback's own cost included).")
    table.note("Primary rule: the mean of the last 20 batch losses (training mode, so with our dropout) "
               "first <= L*. The ancestor's L* is the plain mean of its epoch-3 batch losses.")
    table.note("Eval-mode rule: an untimed replay of the same seeded run measures the model without dropout "
               "every 5 batches; its time is the timed runs' clock at that batch.")
    return table, details


# ------------------------------------------------------------------------------------------------
# sections 3-5: one fresh child process per model
# ------------------------------------------------------------------------------------------------

def child_main(args: argparse.Namespace) -> None:
    """load -> fit -> score -> contributions for one model; timings and RSS to ``--child-out``."""
    out: dict = {"model": args.child, "rss": {"start": rss_mb()}}
    t = time.perf_counter()
    import torch

    from msda_widgets import Detector
    from msda_widgets.engine.training import CancelToken, torch_runtime
    out["import_s"] = time.perf_counter() - t
    out["rss"]["import"] = rss_mb()

    path = Path(args.data) if args.data else None
    t = time.perf_counter()
    df, source = load_data(path, args.quick)
    out["load_s"], out["source"] = time.perf_counter() - t, source
    out["rss"]["load"] = rss_mb()

    settings: dict = {"seed": 0}
    if args.quick:
        settings.update(epochs=1, num_threads=QUICK_THREADS)
    cap = args.lstm_cap if args.child == "lstm_ae" else None
    token = CancelToken()
    capped = {"hit": False}

    def on_epoch(p) -> None:
        if cap is not None and p.elapsed > cap and p.epoch < p.epochs:
            capped["hit"] = True
            token.cancel()

    t = time.perf_counter()
    det = Detector(model=args.child, **settings).fit(df, on_epoch=on_epoch, cancel=token)
    out["fit_s"] = time.perf_counter() - t
    h = det.history_
    out["fit"] = {"epochs_run": len(h.records), "epochs_max": det.config.train.epochs, "stop_reason": h.stop_reason,
                  "best_epoch": h.best_epoch, "train_seconds": h.seconds, "capped": capped["hit"], "cap_s": cap,
                  "epoch_s": [r.seconds for r in h.records],
                  "last_train_loss": h.records[-1].train_loss if h.records else None,
                  "best_val_loss": min((r.val_loss for r in h.records if r.val_loss is not None), default=None),
                  "threshold": float(det.threshold_), "threads": det.config.train.num_threads,
                  "torch_threads_default": torch.get_num_threads()}
    out["rss"]["fit"] = rss_mb()

    repeats = args.repeats
    t_score, samples = median_time(lambda: det.score(df), repeats)
    out["score_s"], out["score_samples"] = t_score, samples
    t_prep, samples = median_time(lambda: det.prepare(df), repeats)
    out["prepare_s"], out["prepare_samples"] = t_prep, samples
    _, scaled = det.prepare(df)
    with torch_runtime(det.config.train.num_threads):
        out["score_threads"] = torch.get_num_threads()
        t_err, samples = median_time(lambda: det._errors(det.model_, scaled, det.device_), repeats)
    out["errors_s"], out["errors_samples"] = t_err, samples
    out["n_windows"] = int(len(det.windows(scaled).judged))
    out["rss"]["score"] = rss_mb()

    t = time.perf_counter()
    contrib = det.contributions(df)
    out["contributions_s"] = time.perf_counter() - t
    out["contributions_shape"] = list(contrib.shape)
    out["rss"]["contributions"] = rss_mb()
    out["peak_rss_mb"] = rss_mb()["peak_mb"]

    if args.ancestor_lstm:
        x = torch.from_numpy(np.ascontiguousarray(det.windows(scaled).inputs))
        with torch_runtime(det.config.train.num_threads):
            t = time.perf_counter()
            ancestor_lstm_bug_forward(x)
            out["ancestor_lstm_forward_s"] = time.perf_counter() - t
        out["rss"]["ancestor_lstm"] = rss_mb()
    Path(args.child_out).write_text(json.dumps(out, indent=1))


def run_child(model: str, args: argparse.Namespace, path: Optional[Path]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{model}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", model, "--child-out", str(out),
               "--data", str(path) if path else "", "--repeats", str(args.repeats),
               "--lstm-cap", str(args.lstm_cap)]
        if args.quick:
            cmd.append("--quick")
        if args.ancestor_lstm and model == "lstm_ae":
            cmd.append("--ancestor-lstm")
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            raise SystemExit(f"benchmark child for {model!r} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        result = json.loads(out.read_text())
        result["process_s"] = time.perf_counter() - t
        return result


def child_tables(children: dict[str, dict], quick: bool, repeats: int) -> list[Table]:
    score = Table("3. Scoring all windows (fitted detector, warm-up then median of "
                  f"{repeats})", quick)
    targets = {"deepcnn": T_SCORE_DEEPCNN_S, "lstm_ae": T_SCORE_LSTM_S}
    names = {"deepcnn": "DeepCNN", "lstm_ae": "LSTM-AE"}
    for model, r in children.items():
        target = targets[model]
        score.add(f"{names[model]}: `det.score(df)` ({r['n_windows']:,} windows)", fmt_s(r["score_s"]),
                  f"<= {fmt_s(target)}", r["score_s"] <= target, r["score_s"])
        score.add(f"{names[model]}: model pass only, `det._errors(...)`", fmt_s(r["errors_s"]),
                  f"<= {fmt_s(target)}", r["errors_s"] <= target, r["errors_s"])
        score.add(f"{names[model]}: of which `det.prepare(df)` (pipeline + scaling)", fmt_s(r["prepare_s"]),
                  value=r["prepare_s"])
        score.add(f"{names[model]}: `det.contributions(df)` (single call)", fmt_s(r["contributions_s"]),
                  value=r["contributions_s"])
        if "ancestor_lstm_forward_s" in r:
            score.add("ancestor LSTM-AE bug shape (recurs over the windows), one forward pass",
                      fmt_s(r["ancestor_lstm_forward_s"]), value=r["ancestor_lstm_forward_s"])
    score.note(f"torch threads while scoring: {next(iter(children.values()))['score_threads']}. `score` includes "
               "preparing the table (imputation, scaling) and building the aligned Series.")
    if not any("ancestor_lstm_forward_s" in r for r in children.values()):
        score.note("The ancestor's LSTM-AE bug shape is not timed (pass --ancestor-lstm; reported at 12-15 s and "
                   "4.5 GB by its authors).")

    fit = Table("4. Full fit with default settings (`Detector(model=..., seed=0).fit(df)`, fresh process)",
                quick)
    for model, r in children.items():
        f = r["fit"]
        target = f"<= {T_FIT_DEEPCNN_S:.0f} s" if model == "deepcnn" else ""
        passed = r["fit_s"] <= T_FIT_DEEPCNN_S if model == "deepcnn" else None
        fit.add(f"{names[model]}: fit wall time", fmt_s(r["fit_s"]), target, passed, r["fit_s"])
        per_epoch = statistics.median(f["epoch_s"]) if f["epoch_s"] else math.nan
        fit.add(f"{names[model]}: epochs run / stop reason / best epoch",
                f"{f['epochs_run']} of {f['epochs_max']} / {f['stop_reason']}"
                f"{' (time cap ' + format(f['cap_s'], '.0f') + ' s hit)' if f['capped'] else ''}"
                f" / {f['best_epoch']}")
        fit.add(f"{names[model]}: median epoch (train + validation)", fmt_s(per_epoch), value=per_epoch)
        bv = f["best_val_loss"]
        fit.add(f"{names[model]}: best validation MSE / threshold",
                f"{bv:.5f} / {f['threshold']:.4f}" if bv is not None else f"- / {f['threshold']:.4f}")
    lstm = children.get("lstm_ae")
    if lstm is not None:
        fit.note(f"LSTM-AE fit is capped at {lstm['fit']['cap_s']:.0f} s: past that, training is cancelled at "
                 f"the next epoch boundary and the best weights are kept "
                 f"({'hit in this run' if lstm['fit']['capped'] else 'not hit in this run'}).")
    fit.note("Fit time includes preparing the data, training (validation split 0.1, early stopping, patience 5), "
             "scoring the fit data and setting the threshold; single run each.")

    mem = Table("5. Peak RSS, load -> fit -> score -> contributions (fresh subprocess per model)", quick)
    for model, r in children.items():
        rss = r["rss"]
        mem.add(f"{names[model]}: peak RSS", f"{r['peak_rss_mb']:.0f} MB", f"<= {T_PEAK_RSS_MB:.0f} MB",
                r["peak_rss_mb"] <= T_PEAK_RSS_MB, r["peak_rss_mb"])
        stages = " / ".join(f"{k} {v['peak_mb']:.0f}" for k, v in rss.items())
        mem.add(f"{names[model]}: peak RSS after each stage (MB)", stages)
    mem.note("Peak RSS = VmHWM of the child process (includes the Python interpreter, numpy, pandas and torch). "
             "`ru_maxrss` is not used: on Linux it survives fork + exec and would report the parent's peak.")
    return [score, fit, mem]


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------

def environment() -> dict:
    import pandas as pd
    import torch

    from msda_widgets import __version__
    from msda_widgets.engine.training import default_threads
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "usable_cores": affinity, "torch": torch.__version__,
            "torch_threads_used": default_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "numpy": np.__version__, "pandas": pd.__version__, "msda_widgets": __version__,
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tiny smoke run (3,000 rows, 1 epoch), under 30 s")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--data", metavar="CSV", help="the Canadian climate CSV (default: the shared data folder)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats for medians (default 5; quick 2)")
    p.add_argument("--lstm-cap", type=float, default=LSTM_CAP_S,
                   help=f"seconds after which the LSTM-AE fit stops at an epoch boundary (default {LSTM_CAP_S:.0f})")
    p.add_argument("--ancestor-lstm", action="store_true",
                   help="also time the ancestor's LSTM-AE bug shape (slow: ~10+ s)")
    p.add_argument("--skip-children", action="store_true", help="only sections 0-2 (no fit / score / RSS)")
    p.add_argument("--child", choices=["deepcnn", "lstm_ae"], help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    command = shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(
        [sys.executable, str(Path(__file__)), *argv])
    print(f"Command: `{command}`  (cwd {os.getcwd()})\n")
    t_start = time.perf_counter()
    path = find_data(args.data)
    env = environment()
    print("## msda_widgets engine benchmark" + (" (QUICK smoke run: targets not judged)" if args.quick else ""))
    print()
    print(f"- CPU: {env['cpu']} ({env['usable_cores']} usable cores); torch {env['torch']} with "
          f"{env['torch_threads_used']} threads; numpy {env['numpy']}, pandas {env['pandas']}, "
          f"Python {env['python']}")
    if env["loadavg_start"]:
        print(f"- load average at start: {', '.join(f'{v:.2f}' for v in env['loadavg_start'])}")
    if args.quick:
        print(f"- quick run: {QUICK_THREADS} torch thread, {QUICK_ROWS:,} rows, 1 epoch")
    if path is None:
        print("- DATA: Canadian_climate_history.csv NOT FOUND; using synthetic "
              "make_sensors(n_steps=29_221, n_sensors=26) instead")
    print()

    from msda_widgets.engine.data import Scaler

    tables: list[Table] = []
    details: dict = {}
    table, details["load_prepare"], (df, sd) = bench_load_prepare(path, args.quick, args.repeats)
    print(f"- data: {details['load_prepare']['source']}, {df.shape[0]:,} rows x {df.shape[1]} columns, "
          f"{details['load_prepare']['missing_cells']:,} missing cells\n")
    tables.append(table)
    print(table.markdown(), flush=True)

    # the ancestor imputed, then min-max scaled on the data; both sides use these windows
    scaled = Scaler("minmax").fit(sd.values).transform(sd.values)
    table, details["windowing"] = bench_windowing(scaled, args.quick, args.repeats)
    tables.append(table)
    print(table.markdown(), flush=True)
    table, details["training"] = bench_training(scaled, args.quick, args.repeats)
    tables.append(table)
    print(table.markdown(), flush=True)

    if not args.skip_children:
        children = {m: run_child(m, args, path) for m in ("deepcnn", "lstm_ae")}
        details["children"] = children
        for table in child_tables(children, args.quick, args.repeats):
            tables.append(table)
            print(table.markdown(), flush=True)

    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    judged = [r for t in tables for r in t.rows if r["passed"] is not None]
    failed = [r["measure"] for r in judged if not r["passed"]]
    total = time.perf_counter() - t_start
    if args.quick:
        print(f"Quick run finished in {total:.1f} s (targets are not judged on a quick run).")
    else:
        print(f"**{len(judged) - len(failed)} of {len(judged)} targets met** in {total:.0f} s."
              + (f" Failed: {'; '.join(failed)}." if failed else ""))
    if env["loadavg_end"]:
        print(f"Load average at the end: {', '.join(f'{v:.2f}' for v in env['loadavg_end'])} "
              f"(on a busy machine timings are pessimistic).")
    if args.json:
        payload = {"command": command, "quick": args.quick, "seconds": total, "environment": env,
                   "data": {"path": str(path) if path else None, "synthetic": path is None},
                   "sections": [t.to_dict() for t in tables], "details": details,
                   "summary": {"judged": len(judged), "failed": failed}}
        Path(args.json).write_text(json.dumps(payload, indent=1, default=float))
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
