"""Determinism: the same data and seed give bit-identical results.

Across two fits in one process (whatever the global RNG states), across a save/load round trip,
and across two Python processes: weights, loss history, scores, contributions, threshold and the
explanations of every method (the random ones, shap, kernel_shap and lime, are seeded).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from msda_widgets.engine import catalogue
from msda_widgets import Detector
from msda_widgets.engine.explain import EXPLAINERS

from ..conftest import make_series

SETTINGS = {
    "deepcnn": dict(model="deepcnn", conv_channels=(8,), dense_units=8),
    "lstm_ae": dict(model="lstm_ae", hidden_sizes=(8,)),
}
COMMON = dict(lookback=6, epochs=3, batch_size=32, num_threads=1, seed=11, validation_split=0.2)
OPTIONS = {"shap": {"nsamples": 64}, "lime": {"n_samples": 64}}


def _frame():
    return make_series(n=260, n_sensors=3, seed=4, spike_at=200, spike_sensor=1)


def _methods(det: Detector) -> list[str]:
    return [name for name, m in sorted(EXPLAINERS.items()) if m.info.serves(catalogue.model_info(det.config.model.model))]


def _fit(model: str) -> Detector:
    return Detector(**SETTINGS[model], **COMMON).fit(_frame())


def _explanations(det: Detector, rows=(200, 120)) -> dict[str, np.ndarray]:
    frame = _frame()
    return {f"{m}@{r}": det.explain(frame, r, m, **OPTIONS.get(m, {})).values for m in _methods(det)
            for r in rows}


def _assert_same(a: Detector, b: Detector) -> None:
    frame = _frame()
    sa, sb = a.model_.state_dict(), b.model_.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    da, db = a.detect(frame), b.detect(frame)
    np.testing.assert_array_equal(da.scores.to_numpy(), db.scores.to_numpy())
    np.testing.assert_array_equal(da.contributions.to_numpy(), db.contributions.to_numpy())
    assert a.threshold_ == b.threshold_
    ea, eb = _explanations(a), _explanations(b)
    assert ea.keys() == eb.keys() and len(ea) >= 12
    for key in ea:
        np.testing.assert_array_equal(ea[key], eb[key], err_msg=key)


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def fitted(request):
    return request.param, _fit(request.param)


def test_two_fits_with_one_seed_are_bit_identical(fitted):
    model, first = fitted
    torch.manual_seed(999)      # the global RNG states must not matter
    np.random.seed(999)
    state = torch.random.get_rng_state()
    second = _fit(model)
    assert torch.equal(torch.random.get_rng_state(), state)  # and are left alone
    assert first.history_.train_loss == second.history_.train_loss
    assert first.history_.val_loss == second.history_.val_loss
    _assert_same(first, second)


def test_a_saved_and_loaded_detector_gives_identical_scores_and_explanations(fitted, tmp_path):
    _, det = fitted
    loaded = Detector.load(det.save(tmp_path / "det.msda"))
    _assert_same(det, loaded)
    # and a second round trip of the loaded one changes nothing either
    again = Detector.load(loaded.save(tmp_path / "again.msda"))
    _assert_same(loaded, again)


def test_explaining_twice_gives_identical_values(fitted):
    _, det = fitted
    first, second = _explanations(det), _explanations(det)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_another_seed_gives_other_weights(fitted):
    model, det = fitted
    other = Detector(**SETTINGS[model], **{**COMMON, "seed": COMMON["seed"] + 1}).fit(_frame())
    assert any(not torch.equal(p, q) for p, q in zip(det.model_.parameters(), other.model_.parameters()))


CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {root!r})
from tests.reliability.test_determinism import _fit, _frame, _explanations
out = {{}}
for model in ("deepcnn", "lstm_ae"):
    det = _fit(model)
    out[model] = {{"scores": det.score(_frame()).to_numpy().tolist(),
                   "explanations": {{k: v.tolist() for k, v in _explanations(det, rows=(200,)).items()}}}}
print(json.dumps(out))
"""


def test_another_process_gives_identical_scores_and_explanations():
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=root)], capture_output=True, text=True,
                          timeout=240, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    for model in ("deepcnn", "lstm_ae"):
        det = _fit(model)
        here = det.score(_frame()).to_numpy()
        np.testing.assert_array_equal(np.asarray(child[model]["scores"], dtype=float), here)
        for key, values in _explanations(det, rows=(200,)).items():
            # float32 values survive JSON exactly (repr of the float64 they widen to)
            np.testing.assert_array_equal(np.asarray(child[model]["explanations"][key], dtype=values.dtype),
                                          values, err_msg=f"{model} {key}")
