import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from msda_widgets import ConfigError, DataError, Detector, ModelFileError, NotFittedError
from msda_widgets.engine.detector import FORMAT, FORMAT_VERSION

from ..conftest import make_series

FAST = dict(epochs=4, batch_size=64, seed=0)
FAST_LSTM = dict(model="lstm_ae", hidden_sizes=(32, 16), epochs=6, batch_size=64, seed=0)


@pytest.fixture(scope="module")
def spiky():
    return make_series(n=900, n_sensors=4, seed=1, spike_at=700, spike_sensor=2)


@pytest.fixture(scope="module")
def cnn(spiky):
    return Detector(lookback=12, **FAST).fit(spiky)


@pytest.mark.parametrize("settings", [dict(lookback=12, epochs=15, batch_size=64, seed=0),
                                      dict(lookback=12, **{**FAST_LSTM, "epochs": 15})],
                         ids=["deepcnn", "lstm_ae"])
def test_injected_spike_gets_the_top_score_at_its_timestamp(spiky, settings):
    det = Detector(**settings).fit(spiky.iloc[:600])
    scores = det.score(spiky)
    assert scores.idxmax() == spiky.index[700]
    assert det.predict(spiky).loc[spiky.index[700]]
    top_sensor = det.contributions(spiky).loc[spiky.index[700]].idxmax()
    assert top_sensor == "s2"


def test_scores_are_aligned_with_nan_where_no_window_judges(cnn, spiky):
    scores = cnn.score(spiky)
    assert scores.index.equals(spiky.index) and scores.name == "score"
    assert scores.iloc[:12].isna().all() and scores.iloc[12:].notna().all()
    det = Detector(model="lstm_ae", lookback=12, hidden_sizes=(8,), epochs=1, seed=0).fit(spiky)
    s = det.score(spiky)
    assert s.iloc[:11].isna().all() and s.iloc[11:].notna().all()  # the AE judges a window's last row


def test_scores_follow_rows_of_an_unsorted_frame(cnn, spiky):
    shuffled = spiky.sample(frac=1.0, random_state=0)
    a = cnn.score(spiky)
    b = cnn.score(shuffled)
    assert b.index.equals(shuffled.index)
    pd.testing.assert_series_equal(b.sort_index(), a, check_freq=False)


def test_callers_frame_is_not_modified(spiky):
    before = spiky.copy()
    Detector(lookback=8, epochs=1, seed=0).fit(spiky).score(spiky)
    pd.testing.assert_frame_equal(spiky, before)


def test_contributions_add_up_to_the_l2_score(cnn, spiky):
    det = cnn.detect(spiky)
    total = np.sqrt(det.contributions.sum(axis=1, min_count=1))
    np.testing.assert_allclose(total.to_numpy(), det.scores.to_numpy(), rtol=1e-5)
    assert list(det.contributions.columns) == list(spiky.columns)
    assert (det.anomalies == (det.scores > cnn.threshold_)).all()
    assert det.n_anomalies == int(det.anomalies.sum()) and det.scored.sum() == len(spiky) - 12


def test_same_seed_gives_identical_scores(spiky):
    a = Detector(lookback=10, **FAST).fit(spiky).score(spiky)
    b = Detector(lookback=10, **FAST).fit(spiky).score(spiky)
    pd.testing.assert_series_equal(a, b, check_exact=True)
    c = Detector(lookback=10, **{**FAST, "seed": 1}).fit(spiky).score(spiky)
    assert not np.allclose(a.dropna(), c.dropna())


def test_fit_leaves_global_torch_rng_untouched(spiky):
    torch.manual_seed(42)
    expected = torch.rand(2)
    torch.manual_seed(42)
    Detector(lookback=8, epochs=1, seed=3).fit(spiky)
    assert torch.equal(torch.rand(2), expected)


@pytest.mark.parametrize("settings", [FAST, FAST_LSTM, {**FAST, "score": "mahalanobis"},
                                      {**FAST_LSTM, "reduction": "window", "threshold": "pot"}],
                         ids=["deepcnn", "lstm_ae", "mahalanobis", "window-pot"])
def test_save_load_round_trip_gives_identical_scores(spiky, tmp_path, settings):
    det = Detector(lookback=8, **settings).fit(spiky)
    path = det.save(tmp_path / "model.msda")
    det2 = Detector.load(path)
    pd.testing.assert_series_equal(det.score(spiky), det2.score(spiky), check_exact=True)
    assert det2.threshold_ == det.threshold_
    assert det2.get_params() == det.get_params()
    assert det2.history_ == det.history_
    assert det2.sensors_ == det.sensors_


def test_threshold_changes_without_retraining(cnn, spiky):
    weights = {k: v.clone() for k, v in cnn.model_.state_dict().items()}
    original = cnn.threshold_
    try:
        values = [cnn.set_threshold("quantile", q) for q in (0.9, 0.95, 0.99)]
        assert values == sorted(values) and values[0] < values[-1]
        n_flags = [cnn.set_threshold("quantile", q) and cnn.predict(spiky).sum() for q in (0.9, 0.99)]
        assert n_flags[0] > n_flags[1]
        assert cnn.set_threshold("fixed", 123.0) == 123.0 and not cnn.predict(spiky).any()
        ks = cnn.set_threshold("ksigma", 3)
        s = cnn.threshold_scores_  # the held-out tail by default
        assert ks == pytest.approx(s.mean() + 3 * s.std())
    finally:
        cnn.set_threshold("quantile", None)
    assert cnn.threshold_ == original
    for k, v in cnn.model_.state_dict().items():
        assert torch.equal(v, weights[k])


def test_mahalanobis_and_window_scores_are_finite(spiky):
    for settings in ({"score": "mahalanobis"}, {"model": "lstm_ae", "hidden_sizes": (8,), "reduction": "window"}):
        det = Detector(lookback=8, epochs=2, seed=0, **settings).fit(spiky)
        s = det.score(spiky).dropna()
        assert np.isfinite(s).all() and (s >= 0).all()


def test_validation_split_is_chronological(spiky):
    det = Detector(lookback=10, epochs=2, validation_split=0.2, seed=0).fit(spiky)
    n_windows = len(spiky) - 10
    assert det.history_.n_val == n_windows - round(0.8 * len(spiky))  # windows starting in the last 20 %
    assert det.history_.n_train + det.history_.n_val < n_windows       # a gap: no window spans both parts
    assert all(r.val_loss is not None for r in det.history_.records)
    det = Detector(lookback=10, epochs=1, validation_split=0.0, seed=0).fit(spiky)
    assert det.history_.n_val == 0 and det.history_.records[0].val_loss is None


def test_accepts_arrays_series_and_paths(tmp_path, spiky):
    arr = spiky.to_numpy()
    det = Detector(lookback=6, epochs=1, seed=0).fit(arr)
    assert det.sensors_ == ("sensor_1", "sensor_2", "sensor_3", "sensor_4")
    assert len(det.score(arr)) == len(arr)
    path = tmp_path / "data.csv"
    spiky.to_csv(path)
    s = Detector(lookback=6, epochs=1, seed=0).fit(path).score(path)
    assert isinstance(s.index, pd.DatetimeIndex) and len(s) == len(spiky)
    one = Detector(lookback=6, epochs=1, seed=0).fit(spiky["s0"])
    assert one.sensors_ == ("s0",)


def test_errors_are_clear():
    with pytest.raises(ConfigError, match="Did you mean 'lookback'"):
        Detector(lookbak=5)
    with pytest.raises(ConfigError, match="Unknown model"):
        Detector(model="transformer")
    with pytest.raises(NotFittedError, match="call fit"):
        Detector().score(make_series(50))
    with pytest.raises(DataError, match="lookback"):
        Detector(lookback=10).fit(make_series(11))
    with pytest.raises(DataError, match="2-D"):
        Detector().fit(np.zeros((2, 2, 2)))
    with pytest.raises(ConfigError, match="lookback >= 4"):
        Detector(lookback=3).fit(make_series(50))


def test_scoring_data_missing_a_fitted_sensor_is_refused(cnn, spiky):
    with pytest.raises(DataError, match="s3"):
        cnn.score(spiky.drop(columns="s3"))


def test_repr_and_params():
    det = Detector(model="lstm_ae", lookback=20)
    assert "lstm_ae" in repr(det) and "lookback=20" in repr(det) and "not fitted" in repr(det)
    assert det.get_params()["lookback"] == 20
    det.set_params(lookback=30)
    assert det.lookback == 30


# -- model files ---------------------------------------------------------------------------

class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_load_refuses_pickles_foreign_truncated_and_newer_files(cnn, tmp_path):
    good = cnn.save(tmp_path / "good.msda")
    bad_pickle = tmp_path / "pickle.msda"
    torch.save({"format": FORMAT, "format_version": 1, "payload": Evil()}, bad_pickle)
    with pytest.raises(ModelFileError, match="Python objects other than tensors"):
        Detector.load(bad_pickle)
    truncated = tmp_path / "truncated.msda"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        Detector.load(truncated)
    foreign = tmp_path / "foreign.msda"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ModelFileError, match="not an msda_widgets model"):
        Detector.load(foreign)
    newer = tmp_path / "newer.msda"
    bundle = torch.load(good, weights_only=True)
    bundle["format_version"] = FORMAT_VERSION + 1
    torch.save(bundle, newer)
    with pytest.raises(ModelFileError, match="format version"):
        Detector.load(newer)
    junk = tmp_path / "junk.msda"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError):
        Detector.load(junk)
    with pytest.raises(ModelFileError, match="No model file"):
        Detector.load(tmp_path / "absent.msda")
    tampered = tmp_path / "tampered.msda"
    bundle = torch.load(good, weights_only=True)
    bundle["state_dict"] = {k: v[..., :1] for k, v in bundle["state_dict"].items()}
    torch.save(bundle, tampered)
    with pytest.raises(ModelFileError, match="damaged or inconsistent"):
        Detector.load(tampered)


# -- architecture ------------------------------------------------------------------------------

ENGINE = Path(__file__).resolve().parents[2] / "msda_widgets" / "engine"


def test_engine_source_imports_no_widget_library():
    for path in ENGINE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in {"ipywidgets", "bqplot", "traitlets", "anywidget", "IPython"}, \
                    f"{path.name} imports {name}"


def test_engine_import_loads_no_widget_library_and_top_level_is_lazy():
    code = ("import sys, msda_widgets; assert 'torch' not in sys.modules, 'import msda_widgets loaded torch'; "
            "import msda_widgets.engine.detector, msda_widgets.engine.training, msda_widgets.datasets; "
            "bad = [m for m in ('ipywidgets', 'bqplot') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
