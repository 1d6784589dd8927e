"""The Detector's contracts with scikit-learn, PyOD and shap, and fit/load parity."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pandas as pd
import pytest

from msda_widgets import ConfigError, Detector, ModelFileError
from msda_widgets.config import DetectorConfig
from msda_widgets.engine import catalogue
from msda_widgets.engine.detector import SETTINGS, _Fitted

from ..conftest import make_series

FAST = dict(lookback=8, epochs=3, batch_size=64, seed=0)


@pytest.fixture(scope="module")
def spiky() -> pd.DataFrame:
    return make_series(n=700, n_sensors=4, seed=3, spike_at=600, spike_sensor=1)


@pytest.fixture(scope="module")
def cnn(spiky) -> Detector:
    return Detector(**FAST).fit(spiky)


# ------------------------------------------------------------------------- scikit-learn

def test_every_setting_is_named_in_the_signature_with_the_config_default():
    params = inspect.signature(Detector.__init__).parameters
    named = [p for p in params if p not in ("self", "unknown")]
    assert sorted(named) == sorted(SETTINGS) and len(named) == len(SETTINGS)
    defaults = DetectorConfig().flat()
    for name in named:
        built = DetectorConfig.from_flat(**{name: params[name].default}).flat()[name]
        assert built == defaults[name], name


def test_get_params_returns_the_settings_as_given_and_set_params_validates():
    det = Detector(model="lstm_ae", lookback=7, hidden_sizes=[16, 8])
    params = det.get_params(deep=True)
    assert set(params) == set(SETTINGS)
    assert params["lookback"] == 7 and params["hidden_sizes"] == [16, 8] and params["model"] == "lstm_ae"
    assert det.set_params(lookback=9) is det and det.lookback == 9 and det.get_params()["lookback"] == 9
    with pytest.raises(ConfigError, match="lookback"):
        det.set_params(lookback=-1)
    assert det.lookback == 9  # a refused change leaves the settings as they were
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        Detector(epoch=3)


def test_sklearn_clone_copies_settings_and_no_fitted_state(cnn):
    base = pytest.importorskip("sklearn.base")
    twin = base.clone(cnn)
    assert twin is not cnn and not twin.is_fitted
    assert twin.get_params() == cnn.get_params()
    assert twin.config == cnn.config


def test_fit_accepts_y_and_ignores_it(spiky, cnn):
    det = Detector(**FAST).fit(spiky, y=np.zeros(len(spiky)))
    np.testing.assert_array_equal(det.decision_scores_, cnn.decision_scores_)


# ------------------------------------------------------------------------- PyOD's contract

def test_pyod_attributes_describe_the_fit_data(cnn, spiky):
    scores = cnn.decision_function(spiky)
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float64 and scores.shape == (len(spiky),)
    assert np.isnan(scores[:FAST["lookback"]]).all() and np.isfinite(scores[FAST["lookback"]:]).all()
    np.testing.assert_array_equal(scores, cnn.score(spiky).to_numpy())
    np.testing.assert_array_equal(cnn.decision_scores_, scores)
    expected = np.nan_to_num(scores, nan=-np.inf) > cnn.threshold_
    np.testing.assert_array_equal(cnn.labels_, expected.astype(int))
    assert set(np.unique(cnn.labels_)) <= {0, 1} and cnn.labels_[600] == 1  # the injected spike


def test_the_class_docstring_lists_every_fitted_attribute():
    doc = Detector.__doc__
    for f in dataclasses.fields(_Fitted):
        assert f"``{f.name}_``" in doc, f.name
    for name in ("labels_", "sensors_", "decision_scores_", "threshold_"):
        assert f"``{name}``" in doc


# ------------------------------------------------------------------------- fit / load parity

def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, pd.Index):
        return a.equals(b) and a.dtype == b.dtype and a.name == b.name
    return a == b


@pytest.mark.parametrize("settings", [FAST, {**FAST, "model": "lstm_ae", "hidden_sizes": (8,), "epochs": 2,
                                             "score": "mahalanobis", "standardize_errors": True}],
                         ids=["deepcnn", "lstm_ae-mahalanobis-standardized"])
def test_load_sets_every_fitted_attribute_exactly_as_fit(spiky, tmp_path, settings):
    det = Detector(**settings).fit(spiky)
    loaded = Detector.load(det.save(tmp_path / "m.msda"))
    plain = ("threshold", "train_scores", "train_index", "threshold_scores", "decision_scores", "error_mean", "error_precision",
             "error_scale", "background", "data_report", "fit_seconds", "versions")
    for name in plain:
        assert _same(getattr(det, name + "_"), getattr(loaded, name + "_")), name
    assert loaded.history_.to_dict() == det.history_.to_dict()
    assert loaded.pipeline_.to_state().keys() == det.pipeline_.to_state().keys()
    assert loaded.sensors_ == det.sensors_ and str(loaded.device_) == str(det.device_)
    np.testing.assert_array_equal(loaded.labels_, det.labels_)
    np.testing.assert_array_equal(loaded.scaler_.transform(spiky.to_numpy()), det.scaler_.transform(spiky.to_numpy()))
    for k, v in det.model_.state_dict().items():
        assert np.array_equal(v.numpy(), loaded.model_.state_dict()[k].numpy()), k
    assert loaded.get_params() == {k: tuple(v) if isinstance(v, list) else v for k, v in det.get_params().items()}
    pd.testing.assert_series_equal(loaded.score(spiky), det.score(spiky), check_exact=True)
    assert loaded.data_report_.messages() == det.data_report_.messages()


# ------------------------------------------------------------------------- standardised errors

def test_an_irrelevant_noisy_sensor_changes_neither_flags_nor_blame_when_errors_are_standardized():
    clean = make_series(n=900, n_sensors=4, seed=5, spike_at=750, spike_sensor=2, spike_size=6.0)
    rng = np.random.default_rng(0)
    noisy = clean.assign(noise=50.0 * rng.standard_normal(len(clean)))
    settings = dict(FAST, epochs=6, scaling="standard", standardize_errors=True)
    a = Detector(**settings).fit(clean.iloc[:650])
    b = Detector(**settings).fit(noisy.iloc[:650])
    ca, cb = a.contributions(clean), b.contributions(noisy)
    assert ca.loc[clean.index[750]].idxmax() == "s2" and cb.loc[noisy.index[750]].idxmax() == "s2"
    assert a.score(clean).iloc[650:].idxmax() == b.score(noisy).iloc[650:].idxmax() == clean.index[750]
    # without standardisation the noise sensor is not divided by its spread, so it takes part of the blame
    raw = Detector(**dict(settings, standardize_errors=False)).fit(noisy.iloc[:650])
    share = raw.contributions(noisy).iloc[650:]["noise"].mean() / raw.contributions(noisy).iloc[650:].sum(axis=1).mean()
    std_share = cb.iloc[650:]["noise"].mean() / cb.iloc[650:].sum(axis=1).mean()
    assert std_share < share
    # each standardized sensor's error has unit spread on the held-out tail (its scale is its RMS there)
    assert b.error_scale_.shape == (5,) and (b.error_scale_ > 0).all()


# ------------------------------------------------------------------------- shap interop

def test_explanations_convert_to_shap_and_shap_plots_accept_them(cnn, spiky):
    shap = pytest.importorskip("shap")
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    e = cnn.explain(spiky, 600, method="kernel_shap")
    sx = e.to_shap()
    assert isinstance(sx, shap.Explanation) and sx.values.shape == (4,) and list(sx.feature_names) == list(e.sensors)
    assert sx.values.sum() + sx.base_values == pytest.approx(e.score, abs=1e-6)  # kernel SHAP is exact
    cells = e.to_shap(by="cell")
    assert cells.values.shape == (4 * (FAST["lookback"] + 1),) and cells.feature_names[-1] == "s3@0"
    shap.plots.waterfall(sx, show=False)
    many = cnn.explain_many(spiky, [600, 601, 650], method="error").to_shap()
    assert many.values.shape == (3, 4)
    shap.plots.bar(many, show=False)
    with pytest.raises(ConfigError, match="'sensor' or 'cell'"):
        e.to_shap(by="time")


# ------------------------------------------------------------------------- PyOD adapter

@pytest.fixture(scope="module")
def pyod_models():
    pytest.importorskip("pyod")
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest
    from msda_widgets.engine.adapters import register_pyod
    register_pyod("test_pyod_iforest", lambda: IForest(n_estimators=50, random_state=0), replace=True)
    register_pyod("test_pyod_ecod", ECOD, replace=True)
    return ("test_pyod_iforest", "test_pyod_ecod")


@pytest.fixture(scope="module")
def gaussian() -> pd.DataFrame:
    """Independent noise with a level shift far outside the training range (rows 646-653, sensor
    s1): windows that lie inside it are far out on four of their features."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.standard_normal((700, 4)), columns=["s0", "s1", "s2", "s3"],
                      index=pd.date_range("2024-01-01", periods=700, freq="h", name="time"))
    df.iloc[646:654, 1] = 6.0
    return df


@pytest.mark.parametrize("which", [0, 1], ids=["IForest", "ECOD"])
def test_pyod_detectors_run_behind_the_detector_api_and_are_explained(pyod_models, gaussian, which):
    spiky = gaussian
    name = pyod_models[which]
    info = catalogue.model_info(name)
    assert info.kind == "score" and not info.differentiable and info.family == "adapter"
    assert {m.name for m in catalogue.methods_for(name)} == {"kernel_shap", "lime"}
    det = Detector(model=name, lookback=4, seed=0, scaling="standard").fit(spiky.iloc[:600])
    scores = det.score(spiky)
    assert scores.iloc[:3].isna().all() and scores.iloc[3:].notna().all()
    # exactly PyOD's own decision function on the flattened windows of the scaled data
    _, scaled = det.prepare(spiky)
    flat = det.layout.windows(scaled).reshape(len(spiky) - 3, -1).astype(np.float64)
    np.testing.assert_allclose(scores.iloc[3:].to_numpy(), det.model_.estimator.decision_function(flat), rtol=1e-6)
    assert scores.iloc[600:].idxmax() in spiky.index[646:657]  # a window holding the shift
    assert det.detect(spiky).contributions.isna().all().all()  # no per-sensor errors: said, not made up
    e = det.explain(spiky, 650, method="kernel_shap")
    assert e.by_sensor.index[0] == "s1"  # the spiked sensor
    assert e.values.sum() == pytest.approx(e.score - e.base_value, abs=1e-6)
    assert np.isfinite(det.explain(spiky, 600, method="lime").values).all()
    with pytest.raises(ConfigError, match="not differentiable.*kernel_shap"):
        det.explain(spiky, 600, method="shap")
    with pytest.raises(ConfigError, match="per-sensor errors|does not explain"):
        det.explain(spiky, 600, method="error")
    with pytest.raises(ModelFileError, match="cannot be saved"):
        det.save("never-written.msda")
    with pytest.raises(ConfigError, match="Mahalanobis"):
        Detector(model=name, lookback=4, score="mahalanobis").fit(spiky)


def test_register_pyod_refuses_what_is_not_a_detector(pyod_models):
    from msda_widgets.engine.adapters import register_pyod
    with pytest.raises(ConfigError, match="decision_function"):
        register_pyod("not_a_detector", dict)
    with pytest.raises(ConfigError, match="already registered"):
        from pyod.models.ecod import ECOD
        register_pyod(pyod_models[0], ECOD)


# ------------------------------------------------------------------------- thresholds out of sample

def test_the_default_threshold_comes_from_the_held_out_tail(spiky):
    det = Detector(**FAST).fit(spiky)
    n_val = len(det.threshold_scores_)
    assert 50 <= n_val < len(det.train_scores_)
    np.testing.assert_array_equal(det.threshold_scores_, det.train_scores_[-n_val:])
    assert det.threshold_ == pytest.approx(np.quantile(det.threshold_scores_, 0.99))
    fit_all = Detector(**FAST, threshold_on="fit").fit(spiky)
    np.testing.assert_array_equal(fit_all.threshold_scores_, fit_all.train_scores_)
    assert det.set_threshold("quantile", 0.9) == pytest.approx(np.quantile(det.threshold_scores_, 0.9))
    short = Detector(**FAST, validation_split=0.0).fit(spiky)  # no tail: every fit window counts
    np.testing.assert_array_equal(short.threshold_scores_, short.train_scores_)


def test_min_duration_flags_only_runs_and_never_looks_ahead(cnn, spiky):
    from msda_widgets.engine.results import persistent
    above = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1], dtype=bool)
    np.testing.assert_array_equal(persistent(above, 1), above)
    np.testing.assert_array_equal(persistent(above, 2), [0, 0, 1, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(persistent(above, 3), [0, 0, 0, 0, 0, 0, 1, 0, 0])
    for k in (2, 3):  # causal: the flags of a prefix are the prefix of the flags
        full = persistent(above, k)
        assert all((persistent(above[:n], k) == full[:n]).all() for n in range(1, len(above)))
    d = cnn.detect(spiky)
    two = d.with_threshold(d.threshold, min_duration=2)
    raw = d.row_scores > d.threshold
    np.testing.assert_array_equal(two.row_flags, raw & np.r_[False, raw[:-1]])
    assert two.n_anomalies <= d.n_anomalies and d.min_duration == 1
    det = Detector(**FAST, min_duration=3).fit(spiky)
    flags = det.predict(spiky).to_numpy()
    above3 = (det.score(spiky) > det.threshold_).to_numpy()
    np.testing.assert_array_equal(flags, persistent(above3, 3))
