"""Invariants under random input (hypothesis).

* windowing: ``make_windows`` equals a naive loop for any length, sensors, lookback and task, and
  refuses too-short input with a clear error;
* scores: finite on every scored row, NaN exactly on the first unscored rows (in time order),
  aligned to the caller's index in the caller's row order, for random small frames;
* thresholds: monotone in their parameter (quantile q, k-sigma k up; POT risk down);
* explanations: every method gives finite values of shape (window steps, sensors), a finite
  score and base value, for random valid rows of random frames.

One tiny detector per model is fitted once per module; the random inputs are scored against it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from msda_widgets.engine import catalogue
from msda_widgets import ConfigError, DataError, Detector
from msda_widgets.engine.data import make_windows
from msda_widgets.engine.explain import EXPLAINERS, offsets_for
from msda_widgets.engine.thresholds import THRESHOLDS, compute_threshold

from ..conftest import make_series

#: Examples per property (kept small: the whole file runs in well under a minute on 2 cores).
N_WINDOWS = 300
N_SCORES = 60
N_THRESHOLDS = 300
N_EXPLAIN = 20


def fast(examples: int) -> settings:
    """Few, reproducible examples without a per-example deadline (training-free but torch-bound)."""
    return settings(max_examples=examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


LOOKBACK = 5
SENSORS = ("s0", "s1", "s2")
MODELS = {
    "deepcnn": dict(model="deepcnn", conv_channels=(4,), dense_units=8),
    "lstm_ae": dict(model="lstm_ae", hidden_sizes=(6,)),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def detector(request):
    frame = make_series(n=300, n_sensors=len(SENSORS), seed=2)
    return Detector(**MODELS[request.param], lookback=LOOKBACK, epochs=2, batch_size=64, num_threads=1,
                    seed=0).fit(frame)


def _unscored(det: Detector) -> int:
    """Rows at the start (time order) that no window judges."""
    return LOOKBACK if det.kind == "forecast" else LOOKBACK - 1


# -- windowing --------------------------------------------------------------------------------

@fast(N_WINDOWS)
@given(n=st.integers(1, 40), sensors=st.integers(1, 4), lookback=st.integers(1, 45),
       task=st.sampled_from(["forecast", "reconstruct"]), seed=st.integers(0, 2**16))
def test_make_windows_matches_a_naive_loop(n, sensors, lookback, task, seed):
    values = np.random.default_rng(seed).standard_normal((n, sensors)).astype(np.float32)
    need = lookback + 1 if task == "forecast" else lookback
    if n < need:
        with pytest.raises(DataError, match=f"lookback={lookback} needs at least {need} rows; got {n}"):
            make_windows(values, lookback, task)
        return
    win = make_windows(values, lookback, task)
    count = n - lookback if task == "forecast" else n - lookback + 1
    assert win.inputs.shape == (count, lookback, sensors)
    assert not win.inputs.flags.writeable  # a view of the caller's data: never written through
    for i in range(count):
        np.testing.assert_array_equal(win.inputs[i], values[i:i + lookback])
        if task == "forecast":
            np.testing.assert_array_equal(win.targets[i], values[i + lookback])
            assert win.judged[i] == i + lookback
        else:
            np.testing.assert_array_equal(win.targets[i], values[i:i + lookback])
            assert win.judged[i] == i + lookback - 1
    assert win.judged.dtype == np.int64 and np.all(np.diff(win.judged) == 1)


# -- scores -------------------------------------------------------------------------------------

@st.composite
def frames(draw, min_rows: int):
    """A small frame of the fitted sensors: random values (some missing), an hourly time index
    with random gaps, rows in a random order."""
    n = draw(st.integers(min_rows, 48))
    values = draw(hnp.arrays(np.float64, (n, len(SENSORS)),
                             elements=st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False)))
    missing = draw(hnp.arrays(np.bool_, (n, len(SENSORS)), elements=st.booleans()))
    values = np.where(missing & (draw(st.booleans())), np.nan, values)
    values[0] = np.nan_to_num(values[0])  # every sensor keeps at least one observed value
    gaps = draw(hnp.arrays(np.int64, n, elements=st.integers(1, 5)))
    index = pd.DatetimeIndex(pd.Timestamp("2024-01-01") + pd.to_timedelta(np.cumsum(gaps), unit="h"), name="time")
    order = draw(st.permutations(range(n)))
    return pd.DataFrame(values, index=index, columns=list(SENSORS)).iloc[list(order)]


@fast(N_SCORES)
@given(data=st.data())
def test_scores_are_finite_where_scored_nan_on_the_first_rows_and_aligned(detector, data):
    frame = data.draw(frames(min_rows=LOOKBACK + 1))
    before = frame.copy()
    detection = detector.detect(frame)
    scores = detection.scores
    assert scores.index.equals(frame.index)  # the caller's rows, in the caller's order
    rank = frame.index.argsort().argsort()  # each row's place in time
    unscored = rank < _unscored(detector)
    assert scores[unscored].isna().all()
    assert np.isfinite(scores[~unscored]).all()
    contributions = detection.contributions
    assert contributions.index.equals(frame.index) and list(contributions.columns) == list(SENSORS)
    assert contributions[unscored].isna().all().all() and np.isfinite(contributions[~unscored]).all().all()
    assert not detection.anomalies[unscored].any()
    # the same rows in time order get the same scores (alignment, not position)
    in_order = detector.score(frame.sort_index())
    np.testing.assert_array_equal(in_order.reindex(frame.index).to_numpy(), scores.to_numpy())
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched


# -- thresholds -----------------------------------------------------------------------------------

score_vectors = hnp.arrays(
    np.float64, st.integers(2, 3000),
    elements=st.one_of(st.floats(0, 1e6, allow_nan=False, allow_infinity=False), st.just(np.nan)),
).filter(lambda a: np.isfinite(a).sum() >= 2)
heavy_tails = st.builds(
    lambda seed, n, shape: np.abs(np.random.default_rng(seed).standard_t(shape, n)),
    st.integers(0, 2**16), st.integers(500, 4000), st.floats(0.5, 30))


@pytest.mark.parametrize("name", ["quantile", "ksigma", "pot"])
@fast(N_THRESHOLDS)
@given(scores=st.one_of(score_vectors, heavy_tails), a=st.floats(0, 1), b=st.floats(0, 1))
def test_threshold_is_monotone_in_its_parameter(name, scores, a, b):
    method = THRESHOLDS[name]
    low, high = sorted((a, b))
    if name == "pot":  # risk spans decades: draw it on a log scale
        p_low, p_high = (min(method.high, float(np.exp(np.log(method.low) + t * np.log(method.high / method.low))))
                         for t in (low, high))
    else:
        p_low, p_high = (method.low + t * (method.high - method.low) for t in (low, high))
    t_low = compute_threshold(scores, name, p_low)
    t_high = compute_threshold(scores, name, p_high)
    assert np.isfinite(t_low) and np.isfinite(t_high)
    if method.increasing:
        assert t_low <= t_high, (p_low, p_high, t_low, t_high)
    else:
        assert t_low >= t_high, (p_low, p_high, t_low, t_high)
    finite = scores[np.isfinite(scores)]
    if name in ("quantile", "pot"):  # both are thresholds within or above the data
        assert finite.min() <= min(t_low, t_high)


# -- explanations -------------------------------------------------------------------------------

EXPLAIN_OPTIONS = {"shap": {"nsamples": 64}, "kernel_shap": {}, "lime": {"n_samples": 64},
                   "integrated_gradients": {"n_steps": 8}}


@pytest.mark.parametrize("method", sorted(EXPLAINERS))
@fast(N_EXPLAIN)
@given(data=st.data())
def test_explanations_are_finite_and_shaped_like_the_window(detector, method, data):
    frame = data.draw(frames(min_rows=LOOKBACK + 2))
    rank = frame.index.argsort().argsort()
    scored = np.flatnonzero(rank >= _unscored(detector))
    when = int(data.draw(st.sampled_from(list(scored))))
    if not EXPLAINERS[method].info.serves(catalogue.model_info(detector.config.model.model)):  # e.g. grad_cam on the autoencoder
        with pytest.raises(ConfigError, match=method):
            detector.explain(frame, when, method)
        return
    e = detector.explain(frame, when, method, **EXPLAIN_OPTIONS.get(method, {}))
    steps = len(offsets_for(detector.kind, LOOKBACK))
    assert e.values.shape == (steps, len(SENSORS)) == e.inputs.shape == e.raw.shape
    assert np.isfinite(e.values).all(), e.values
    assert np.isfinite(e.score) and np.isfinite(e.base_value)
    assert e.when == frame.index[when] and e.sensors == SENSORS
    np.testing.assert_allclose(e.score, detector.score(frame).iloc[when], rtol=1e-4, atol=1e-6)
