"""Tests for msda_widgets.engine.thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msda_widgets.engine import thresholds
from msda_widgets.engine.thresholds import (
    THRESHOLDS,
    ThresholdMethod,
    compute_threshold,
    register_threshold,
)
from msda_widgets.errors import ConfigError, DataError


def gpd_sample(rng: np.random.Generator, gamma: float, sigma: float, size: int) -> np.ndarray:
    """Generalised Pareto draws by inverting the CDF."""
    u = rng.uniform(size=size)
    if gamma == 0.0:
        return -sigma * np.log(u)
    return sigma / gamma * (u ** -gamma - 1.0)


def gpd_quantile(gamma: float, sigma: float, p: float) -> float:
    """The value a GPD(gamma, sigma) exceeds with probability p."""
    return -sigma * math.log(p) if gamma == 0.0 else sigma / gamma * (p ** -gamma - 1.0)


# --- registry --------------------------------------------------------------------------------

def test_builtin_registry_entries():
    assert set(THRESHOLDS) >= {"quantile", "ksigma", "pot", "fixed"}
    expected = {  # name: (param_name, default, low, high, increasing)
        "quantile": ("q", 0.99, 0.5, 1.0, True),
        "ksigma": ("k", 3.0, 0.0, 10.0, True),
        "pot": ("risk", 1e-3, 1e-6, 0.1, False),
        "fixed": ("value", 1.0, 0.0, math.inf, True),
    }
    for name, (param_name, default, low, high, increasing) in expected.items():
        m = THRESHOLDS[name]
        assert m.name == name
        assert (m.param_name, m.default, m.low, m.high, m.increasing) == \
            (param_name, default, low, high, increasing)
        assert m.description and "\n" not in m.description


def test_register_threshold_adds_a_usable_method_and_refuses_a_clash(monkeypatch):
    monkeypatch.setattr(thresholds, "THRESHOLDS", dict(THRESHOLDS))
    median_plus = ThresholdMethod(
        name="median_plus", func=lambda s, c: float(np.median(s) + c), default=1.0,
        param_name="c", description="Median plus c.", low=0.0, high=5.0, increasing=True)
    register_threshold(median_plus)
    assert thresholds.THRESHOLDS["median_plus"] is median_plus
    scores = np.array([1.0, 2.0, 3.0, np.nan, 10.0])
    assert compute_threshold(scores, "median_plus") == pytest.approx(2.5 + 1.0)
    assert compute_threshold(scores, "median_plus", 2.0) == pytest.approx(2.5 + 2.0)
    with pytest.raises(ConfigError, match="median_plus.*outside"):
        compute_threshold(scores, "median_plus", 6.0)

    with pytest.raises(ConfigError, match="'median_plus' is already registered"):
        register_threshold(median_plus)
    with pytest.raises(ConfigError, match="'quantile' is already registered"):
        register_threshold(ThresholdMethod("quantile", lambda s, p: 0.0, 0.5, "p", "x", 0.0, 1.0, True))
    assert thresholds.THRESHOLDS["quantile"] is THRESHOLDS["quantile"]
    # the module-level registry was patched, not the real one
    assert "median_plus" not in THRESHOLDS


def test_threshold_method_validates_itself():
    with pytest.raises(ConfigError, match="default .* outside"):
        ThresholdMethod("bad", lambda s, p: 0.0, 2.0, "p", "x", 0.0, 1.0, True)
    with pytest.raises(ConfigError, match="callable"):
        ThresholdMethod("bad", "not a function", 0.5, "p", "x", 0.0, 1.0, True)
    with pytest.raises(ConfigError, match="non-empty string name"):
        ThresholdMethod("", lambda s, p: 0.0, 0.5, "p", "x", 0.0, 1.0, True)
    with pytest.raises(ConfigError, match="register_threshold expects a ThresholdMethod"):
        register_threshold("quantile")


# --- simple methods --------------------------------------------------------------------------

@pytest.mark.parametrize("q", [0.5, 0.9, 0.99, 0.999, 1.0])
def test_quantile_equals_numpy_quantile(q):
    scores = np.random.default_rng(1).gamma(2.0, size=5000)
    assert compute_threshold(scores, "quantile", q) == np.quantile(scores, q)


def test_quantile_default_is_99th_percentile():
    scores = np.random.default_rng(2).normal(size=1000)
    assert compute_threshold(scores) == np.quantile(scores, 0.99)


@pytest.mark.parametrize("k", [0.0, 1.0, 3.0, 10.0])
def test_ksigma_equals_mean_plus_k_std(k):
    scores = np.random.default_rng(3).lognormal(size=4000)
    expected = scores.mean() + k * scores.std()
    assert compute_threshold(scores, "ksigma", k) == pytest.approx(expected, rel=1e-12)
    # a hand-computed case: mean 2, population std 1
    assert compute_threshold([1.0, 3.0], "ksigma", k) == pytest.approx(2.0 + k)


def test_fixed_returns_value_and_needs_no_scores():
    assert compute_threshold(np.random.default_rng(0).normal(size=10), "fixed", 4.25) == 4.25
    assert compute_threshold([], "fixed", 0.5) == 0.5
    assert compute_threshold([np.nan], "fixed") == 1.0
    assert compute_threshold([], "fixed", math.inf) == math.inf


# --- POT -------------------------------------------------------------------------------------

def test_pot_on_exponential_data_matches_the_true_quantile():
    scores = np.random.default_rng(0).exponential(1.0, 100_000)
    z = compute_threshold(scores, "pot", 1e-3)
    assert z == pytest.approx(-math.log(1e-3), rel=0.05)
    assert compute_threshold(scores, "pot") == z  # 1e-3 is the default


# Over 40 seeds the relative error's sd was at most 3.4 % for these cases (heavier tails and smaller
# risks extrapolate further and vary more: gamma=0.4 at 1e-4 has an sd of 8 %).
@pytest.mark.parametrize("gamma, risk", [(-0.2, 1e-3), (0.2, 1e-3), (0.4, 1e-3),
                                         (-0.2, 1e-4), (0.0, 1e-4)])
def test_pot_recovers_the_gpd_quantile(gamma, risk):
    rng = np.random.default_rng(int(1000 * (gamma + 1)))
    scores = gpd_sample(rng, gamma, 1.5, 100_000)
    z = compute_threshold(scores, "pot", risk)
    assert z == pytest.approx(gpd_quantile(gamma, 1.5, risk), rel=0.10)


def test_pot_extrapolates_beyond_the_data():
    # risk 1e-6 on 100k points lies beyond the sample: the fitted tail must still land near the
    # true quantile (13.8; relative error sd ~7 % over 40 seeds), not at the sample maximum.
    scores = np.random.default_rng(4).exponential(1.0, 100_000)
    z = compute_threshold(scores, "pot", 1e-6)
    assert z == pytest.approx(-math.log(1e-6), rel=0.25)
    assert z > np.quantile(scores, 1.0 - 1e-4)


@pytest.mark.parametrize("gamma", [-0.4, -0.2, 0.0, 0.25, 0.5])
def test_grimshaw_fit_recovers_shape_and_scale(gamma):
    y = gpd_sample(np.random.default_rng(7), gamma, 2.0, 20_000)
    fit = thresholds._fit_gpd(y)
    assert fit is not None
    g, s = fit
    assert g == pytest.approx(gamma, abs=0.05)
    assert s == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("gamma", [-0.3, 0.0, 0.3])
def test_grimshaw_fit_is_the_maximum_likelihood(gamma):
    stats = pytest.importorskip("scipy.stats")
    y = gpd_sample(np.random.default_rng(11), gamma, 1.0, 3000)
    g, s = thresholds._fit_gpd(y)
    c, _, scale = stats.genpareto.fit(y, floc=0.0)
    ours = thresholds._gpd_loglik(y, g, s)
    theirs = float(np.sum(stats.genpareto.logpdf(y, c, loc=0.0, scale=scale)))
    assert ours == pytest.approx(float(np.sum(stats.genpareto.logpdf(y, g, loc=0.0, scale=s))),
                                 rel=1e-9)
    assert ours >= theirs - 1e-6 * abs(theirs)


@pytest.mark.parametrize("risk", [1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1])
@pytest.mark.parametrize("dist", ["exponential", "normal", "pareto", "uniform", "ties"])
def test_pot_is_finite_and_above_its_initial_threshold(risk, dist):
    rng = np.random.default_rng(5)
    scores = {
        "exponential": rng.exponential(size=5000),
        "normal": rng.normal(size=5000),
        "pareto": rng.pareto(1.5, size=5000),
        "uniform": rng.uniform(size=5000),
        "ties": np.round(rng.exponential(size=5000), 1),
    }[dist]
    z = compute_threshold(scores, "pot", risk)
    assert math.isfinite(z)
    assert z >= np.quantile(scores, 0.98)


def test_pot_falls_back_to_the_quantile_with_few_excesses():
    # 200 scores -> 4 excesses over the 98th percentile: too few to fit a tail
    scores = np.random.default_rng(6).exponential(size=200)
    for risk in (1e-6, 1e-3, 0.01):
        assert compute_threshold(scores, "pot", risk) == np.quantile(scores, 1.0 - risk)
    # and never below the initial threshold
    assert compute_threshold(scores, "pot", 0.1) == np.quantile(scores, 0.98)


def test_pot_falls_back_when_nothing_exceeds_the_initial_threshold():
    # t = 0 (98th percentile) and only 5 excesses: the 0.999 quantile, 1.0
    scores = np.concatenate([np.zeros(995), np.ones(5)])
    assert compute_threshold(scores, "pot", 1e-3) == 1.0
    # t is already the maximum: no excess at all
    assert compute_threshold(np.full(50, 3.0), "pot") == 3.0


def test_fit_gpd_refuses_degenerate_excesses():
    assert thresholds._fit_gpd(np.array([])) is None
    assert thresholds._fit_gpd(np.array([1.0, 0.0, 2.0])) is None
    assert thresholds._fit_gpd(np.array([1.0, np.inf])) is None


def test_pot_is_scale_and_shift_equivariant():
    scores = np.random.default_rng(8).exponential(size=20_000)
    z = compute_threshold(scores, "pot", 1e-4)
    assert compute_threshold(10.0 * scores + 3.0, "pot", 1e-4) == pytest.approx(10.0 * z + 3.0,
                                                                                 rel=1e-6)


# --- monotonicity ----------------------------------------------------------------------------

def _param_grid(m: ThresholdMethod) -> np.ndarray:
    if m.name == "pot":
        return np.geomspace(m.low, m.high, 25)
    high = m.high if math.isfinite(m.high) else 1e6
    return np.linspace(m.low, high, 25)


@st.composite
def score_arrays(draw):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    size = draw(st.sampled_from([2, 3, 10, 60, 500, 3000]))
    kind = draw(st.sampled_from(["normal", "exponential", "pareto", "lognormal", "ties", "constant"]))
    rng = np.random.default_rng(seed)
    scores = {
        "normal": lambda: rng.normal(size=size),
        "exponential": lambda: rng.exponential(size=size),
        "pareto": lambda: rng.pareto(1.0, size=size),
        "lognormal": lambda: rng.lognormal(sigma=2.0, size=size),
        "ties": lambda: rng.integers(0, 4, size=size).astype(float),
        "constant": lambda: np.full(size, 2.5),
    }[kind]()
    return scores * draw(st.sampled_from([1e-3, 1.0, 1e3]))


@pytest.mark.parametrize("name", ["quantile", "ksigma", "pot", "fixed"])
@settings(max_examples=30, deadline=None)
@given(scores=score_arrays())
def test_threshold_is_monotone_in_its_parameter(name, scores):
    m = THRESHOLDS[name]
    values = np.array([compute_threshold(scores, name, p) for p in _param_grid(m)])
    assert np.all(np.isfinite(values))
    steps = np.diff(values) if m.increasing else -np.diff(values)
    tol = 1e-12 * max(1.0, float(np.max(np.abs(values))))  # np.quantile may wobble by an ulp
    assert np.all(steps >= -tol), (name, values)


def test_pot_decreases_strictly_with_risk_on_a_real_tail():
    scores = np.random.default_rng(9).exponential(size=50_000)
    values = [compute_threshold(scores, "pot", r) for r in (1e-6, 1e-5, 1e-4, 1e-3)]
    assert all(a > b for a, b in zip(values, values[1:]))


# --- NaNs and errors -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["quantile", "ksigma", "pot", "fixed"])
def test_nan_and_inf_scores_are_ignored(name):
    clean = np.random.default_rng(10).exponential(size=3000)
    dirty = np.concatenate([[np.nan] * 20, clean[:1000], [np.nan, np.inf, -np.inf], clean[1000:]])
    assert compute_threshold(dirty, name) == compute_threshold(clean, name)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown threshold method 'quantil'.*"
                                          r"'fixed', 'ksigma', 'pot', 'quantile'.*Did you mean 'quantile'"):
        compute_threshold([1.0, 2.0, 3.0], "quantil")
    with pytest.raises(ConfigError, match="known methods"):
        compute_threshold([1.0, 2.0, 3.0], None)


@pytest.mark.parametrize("name, param", [
    ("quantile", 0.4), ("quantile", 1.01), ("ksigma", -0.5), ("ksigma", 11.0),
    ("pot", 0.0), ("pot", 0.2), ("fixed", -1.0), ("quantile", math.nan),
])
def test_parameter_outside_its_range_is_refused(name, param):
    m = THRESHOLDS[name]
    with pytest.raises(ConfigError, match=rf"{m.param_name}=.*outside"):
        compute_threshold(np.arange(100.0), name, param)


@pytest.mark.parametrize("param", ["0.9", True, [0.9]])
def test_non_numeric_parameter_is_refused(param):
    with pytest.raises(ConfigError, match="q must be a number"):
        compute_threshold(np.arange(100.0), "quantile", param)


@pytest.mark.parametrize("name", ["quantile", "ksigma", "pot"])
@pytest.mark.parametrize("scores", [[], [1.0], [np.nan, 2.0, np.nan]])
def test_too_few_scores_is_refused(name, scores):
    with pytest.raises(ConfigError, match="needs at least 2 finite scores; got [01]"):
        compute_threshold(scores, name)


def test_scores_must_be_one_dimensional_numbers():
    with pytest.raises(DataError, match="1-D"):
        compute_threshold(np.ones((10, 2)))
    with pytest.raises(DataError, match="1-D array of numbers"):
        compute_threshold(["a", "b"])


def test_caller_array_is_not_modified():
    scores = np.array([3.0, np.nan, 1.0, 2.0, 5.0] * 10)
    before = scores.copy()
    for name in THRESHOLDS:
        compute_threshold(scores, name)
    np.testing.assert_array_equal(scores, before)
