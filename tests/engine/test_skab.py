"""The SKAB benchmark code (benchmarks/bench_skab.py) on a few real SKAB files."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from msda_widgets.engine.metrics import evaluate

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_skab.py"


def load_bench():
    if "bench_skab" in sys.modules:
        return sys.modules["bench_skab"]
    spec = importlib.util.spec_from_file_location("bench_skab", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_skab"] = module          # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def test_parse_settings_and_smoothing_are_causal():
    bench = load_bench()
    assert bench.parse_settings(["lookback=30", "scaling=standard"]) == {"lookback": 30, "scaling": "standard"}
    s = np.array([np.nan, 1.0, 3.0, 5.0, 100.0])
    out = bench.smooth(s, 2)
    assert math.isnan(out[0]) and out[1:4].tolist() == [1.0, 2.0, 4.0]
    # a later value never changes an earlier smoothed score
    assert bench.smooth(s[:4], 2)[1:].tolist() == out[1:4].tolist()


@pytest.mark.shared_data
@pytest.mark.slow
def test_skab_protocol_on_three_files(shared_data):
    bench = load_bench()
    root = shared_data / "skab"
    if not root.is_dir():
        pytest.skip("../shared/data/skab is not present")
    files = bench.skab_files(root)
    assert len(files) == 34                       # valve1 16 + valve2 4 + other 14
    assert [f.parent.name for f in files[:2]] == ["valve1", "valve1"]
    # valve1/0: typical; other/1: a clear anomaly; other/2: anomalies inside its 400 training rows
    picked = [root / "valve1" / "0.csv", root / "other" / "1.csv", root / "other" / "2.csv"]
    out = bench.run(picked, ["deepcnn"], windows=[1, 10], quantiles=[0.99], log=lambda s: None)
    res = out["results"]
    assert set(res) == {"deepcnn", "zscore", "all-flagged"}

    total_test_rows = sum(len(bench.read_skab(f)) - bench.TRAIN_ROWS for f in picked)
    for name in ("deepcnn", "zscore"):
        pooled = res[name][("l2", 1, "quantile", None)]
        assert pooled.test.sum() == total_test_rows          # every test row counted once
        row = pooled.row()
        for key in ("f1", "far", "mar", "roc_auc", "pr_auc"):
            assert 0.0 <= row[key] <= 1.0, (name, key, row[key])
        assert len(pooled.roc) == 3 and pooled.roc[1] > 0.9    # other/1.csv is easy (0.99 measured)
        assert row["f1"] > 0.3

    # the trivial "flag everything" baseline runs through the same code: FAR 100 %, MAR 0
    everything = res["all-flagged"][("-", 1, "-", None)].row()
    assert everything["far"] == 1.0 and everything["mar"] == 0.0
    positives = res["all-flagged"][("-", 1, "-", None)].test
    assert positives[2] == 0 and positives[3] == 0           # no FN, no TN

    # the pooled counts agree with evaluate() on each file separately
    pooled = res["zscore"][("l2", 1, "quantile", None)]
    tp = fp = fn = tn = 0
    from msda_widgets.engine.thresholds import compute_threshold
    for f in picked:
        df = bench.read_skab(f)
        s = bench.zscore_scorer(df)["l2"]
        thr = compute_threshold(s[:bench.TRAIN_ROWS], "quantile")
        r = evaluate(s[bench.TRAIN_ROWS:], df["anomaly"].to_numpy()[bench.TRAIN_ROWS:], threshold=thr)
        tp, fp, fn, tn = tp + r.tp, fp + r.fp, fn + r.fn, tn + r.tn
    assert pooled.test.tolist() == [tp, fp, fn, tn]

    text = bench.report(out, len(picked), "test")
    assert "Conv-AE | 0.78 | 13.6 | 28.0" in text
    assert "chosen by looking at the test labels" in text


def _notebook_flags(scores: np.ndarray, train_rows: int = 400, steps: int = 60) -> np.ndarray:
    """SKAB's Conv-AE notebook, loop by loop: window residuals, UCL = 4/3 x q(0.999) of the training
    windows, row i flagged when all windows i-59 .. i-1 are anomalous."""
    import pandas as pd
    n_windows = len(scores) - steps + 1
    resid = np.array([scores[j:j + steps].mean() for j in range(n_windows)])
    ucl = pd.Series(resid[: train_rows - steps + 1]).quantile(0.999) * 4 / 3
    anomalous = resid > ucl
    flags = np.zeros(len(scores), dtype=bool)
    for i in range(steps - 1, n_windows - steps + 1):
        if np.all(anomalous[i - steps + 1:i]):
            flags[i] = True
    return flags


@pytest.mark.parametrize("seed", range(6))
def test_conv_ae_post_processing_matches_the_notebooks_loop(seed):
    bench = load_bench()
    rng = np.random.default_rng(seed)
    scores = rng.gamma(2.0, 1.0, size=1100)
    start = int(rng.integers(450, 800))
    scores[start:start + int(rng.integers(150, 250))] += 5.0  # a sustained anomaly, well above the noise
    flags, ucl = bench.conv_ae_flags(scores)
    assert np.array_equal(flags, _notebook_flags(scores))
    assert ucl > 0 and flags.any()  # the sustained anomaly is found...
    assert not flags[:59].any() and not flags[-118:].any()  # ...and the loop bounds are kept
