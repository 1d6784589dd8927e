"""Reliability numbers (issue 6): how fast bad input is refused, big input loaded, and whether
repeated Stop / Train leaves anything behind.

  * the bad-data corpus (tests/data/bad/): every file through load_csv + the data pipeline,
    outcome counts and the slowest file;
  * 1,000,000 rows x 3 sensors (a 42 MB CSV written to a temporary folder, removed after):
    load_csv, the pipeline, and Controller.load(path);
  * a 50 MB upload handed to Controller.load_upload: refused before parsing (time);
  * Stop -> Train -> Stop x 50 through the Controller (tiny CNN, 20,000 x 8 rows, every other cycle
    trains one epoch): live worker threads afterwards and RSS growth after a 6-cycle warm-up.

The tests (tests/reliability/) assert the behaviour; this script records the numbers for
BENCHMARKS.md. Nothing is written outside a temporary folder.

    .venv/bin/python benchmarks/bench_reliability.py [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msda_widgets import datasets, load_csv  # noqa: E402
from msda_widgets.app.controller import Controller  # noqa: E402
from msda_widgets.config import DataConfig  # noqa: E402
from msda_widgets.engine.data import DataPipeline  # noqa: E402
from msda_widgets.errors import DataError  # noqa: E402

BAD = ROOT / "tests" / "data" / "bad"
TINY = {"model": "deepcnn", "conv_channels": (8, 8), "dense_units": 8, "lookback": 5, "seed": 0,
        "num_threads": 1, "batch_size": 64, "epochs": 1000, "validation_split": 0.0}


def corpus() -> dict:
    manifest = json.loads((BAD / "cases.json").read_text(encoding="utf-8"))
    paths = [BAD / case["file"] for case in manifest["cases"]]
    min_rows = int(manifest["lookback"]) + 2
    refused, loaded, other, slowest = 0, 0, [], (0.0, "")
    t_all = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        try:
            frame = load_csv(path)
            DataPipeline(DataConfig()).fit_prepare(frame, min_rows=min_rows)
            loaded += 1
        except DataError:
            refused += 1
        except Exception as exc:  # noqa: BLE001 - counted: the tests require there are none
            other.append(f"{path.name}: {type(exc).__name__}")
        slowest = max(slowest, (time.perf_counter() - t0, path.name))
    return {"files": len(paths), "refused_DataError": refused, "loaded": loaded, "other_exceptions": other,
            "total_s": time.perf_counter() - t_all, "slowest_s": slowest[0], "slowest_file": slowest[1]}


def million_rows() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "million.csv"
        n = 1_000_000
        rng = np.random.default_rng(0)
        frame = pd.DataFrame({"time": pd.date_range("2020-01-01", periods=n, freq="min"),
                              "a": rng.standard_normal(n).round(4), "b": rng.standard_normal(n).round(4),
                              "c": rng.standard_normal(n).round(4)})
        frame.to_csv(path, index=False)
        size_mb = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        loaded = load_csv(path)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        DataPipeline(DataConfig()).fit_prepare(loaded, min_rows=12)
        t_pipe = time.perf_counter() - t0
        c = Controller(warm_up=False)
        t0 = time.perf_counter()
        ok = c.load(str(path))
        t_ctl = time.perf_counter() - t0
    return {"csv_mb": size_mb, "load_csv_s": t_load, "pipeline_s": t_pipe, "controller_load_s": t_ctl,
            "controller_ok": bool(ok)}


def big_upload() -> dict:
    c = Controller(warm_up=False)
    c.load(datasets.demo())
    content = b"0" * 50_000_000
    t0 = time.perf_counter()
    ok = c.load_upload(content, "big.csv")
    return {"refused": not ok, "seconds": time.perf_counter() - t0, "message": c.state.message}


def stop_train_cycles(cycles: int = 50) -> dict:
    import psutil
    c = Controller(settings=TINY, warm_up=False)
    c.load(datasets.make_sensors(n_steps=20000, n_sensors=8, anomalies=3, seed=3))
    proc = psutil.Process()

    def cycle(i: int) -> None:
        c.stop()
        c.train()
        if i % 2:
            deadline = time.monotonic() + 30
            while not c.state.history and time.monotonic() < deadline:
                time.sleep(0.005)
        c.stop()
        c.wait(30)

    for i in range(6):
        cycle(i)
    gc.collect()
    baseline = proc.memory_info().rss
    t0 = time.perf_counter()
    for i in range(cycles):
        cycle(i)
    seconds = time.perf_counter() - t0
    gc.collect()
    workers = [t.name for t in threading.enumerate() if t.name.startswith("msda-train")]
    return {"cycles": cycles, "seconds": seconds, "live_worker_threads": len(workers),
            "rss_growth_mb": (proc.memory_info().rss - baseline) / 2 ** 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    results = {}
    for name, func in (("bad-data corpus", corpus), ("1,000,000 rows", million_rows),
                       ("50 MB upload", big_upload), ("Stop -> Train -> Stop x 50", stop_train_cycles)):
        results[name] = func()
        print(f"{name}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in results[name].items()), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
