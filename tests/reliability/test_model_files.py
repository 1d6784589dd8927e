"""Model files: only ``Detector.save``'s zip of tensors and plain values is ever loaded.

Complements tests/engine/test_detector.py (which covers one pickle, a half-truncated file, a
foreign bundle, a newer version, random bytes, a missing file and a sliced state_dict): here
every payload would leave a marker file behind if it were ever unpickled, files are cut at many
points, versions are tampered in every type, each part of a valid bundle gets a wrong shape or a
non-finite value, and an upload to the dashboard carrying a payload is refused too.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from msda_widgets import Detector, ModelFileError
from msda_widgets.app.controller import Controller
from msda_widgets.engine.detector import FORMAT, FORMAT_VERSION

from ..conftest import make_series

LOOKBACK = 6
SETTINGS = {
    "deepcnn": dict(model="deepcnn", conv_channels=(4,), dense_units=8),
    "lstm_ae": dict(model="lstm_ae", hidden_sizes=(4,)),
}


class Payload:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def frame():
    return make_series(n=300, n_sensors=3, seed=0)


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def saved(request, frame, tmp_path_factory):
    det = Detector(**SETTINGS[request.param], lookback=LOOKBACK, epochs=1, batch_size=64, num_threads=1,
                   seed=0).fit(frame)
    path = det.save(tmp_path_factory.mktemp(request.param) / "good.msda")
    return det, path


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a payload inside a model file was executed"


def _bundle(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _write(tmp_path: Path, bundle: dict, name: str = "tampered.msda") -> Path:
    out = tmp_path / name
    torch.save(bundle, out)
    return out


def test_load_uses_weights_only(saved, monkeypatch):
    det, path = saved
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = Detector.load(path)
    assert calls == [True]
    assert loaded.threshold_ == det.threshold_


@pytest.mark.parametrize("where", ["top", "bundle", "state_dict", "pipeline", "list"])
def test_a_pickle_payload_is_refused_and_never_runs(saved, tmp_path, marker, where):
    _, path = saved
    bundle = _bundle(path)
    evil = Payload(marker)
    if where == "top":
        bundle = evil
    elif where == "bundle":
        bundle["payload"] = evil
    elif where == "state_dict":
        bundle["state_dict"] = {**bundle["state_dict"], "extra": evil}
    elif where == "pipeline":
        bundle["pipeline"] = {**bundle["pipeline"], "sensors": [evil]}
    else:
        bundle["history"] = [1, 2, evil]
    bad = _write(tmp_path, bundle)
    with pytest.raises(ModelFileError, match="Python objects other than tensors") as info:
        Detector.load(bad)
    message = str(info.value)
    assert "open" in message and "Nothing in it was run" in message
    assert "weights_only" not in message and "\x1b" not in message  # not torch's advice to disable it
    with pytest.raises(ModelFileError):
        Detector.load(io.BytesIO(bad.read_bytes()))  # an open file is checked the same way


@pytest.mark.parametrize("kind", ["raw_pickle", "legacy_torch", "gzip"])
def test_pickles_that_are_not_save_s_zip_are_refused_before_unpickling(tmp_path, marker, kind):
    evil = {"format": FORMAT, "format_version": FORMAT_VERSION, "x": Payload(marker)}
    path = tmp_path / "model.msda"
    if kind == "raw_pickle":
        path.write_bytes(pickle.dumps(evil))
    elif kind == "legacy_torch":
        torch.save(evil, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(gzip.compress(pickle.dumps(evil)))
    with pytest.raises(ModelFileError, match="not the zip archive that Detector.save writes"):
        Detector.load(path)


def test_an_upload_carrying_a_payload_is_never_unpickled(saved, tmp_path, marker):
    _, path = saved
    bundle = _bundle(path)
    bundle["payload"] = Payload(marker)
    content = _write(tmp_path, bundle).read_bytes()
    c = Controller()
    for name in ("model.msda", "data.csv", "data.pkl"):
        for data in (content, pickle.dumps(Payload(marker))):
            assert c.load_upload(data, name) is False
            assert c.state.level == "error" and name in c.state.message
    assert c.frame is None


def test_an_empty_file_is_refused_plainly(tmp_path):
    empty = tmp_path / "empty.msda"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"empty \(0 bytes\)"):
        Detector.load(empty)
    with pytest.raises(ModelFileError, match="empty"):
        Detector.load(io.BytesIO(b""))


@pytest.mark.parametrize("keep", [1, 3, 10, 100, 0.25, 0.5, 0.9, -100, -1])
def test_a_truncated_file_is_refused(saved, tmp_path, keep):
    _, path = saved
    raw = path.read_bytes()
    n = keep if isinstance(keep, int) and keep > 0 else (len(raw) + keep if isinstance(keep, int)
                                                        else int(len(raw) * keep))
    cut = tmp_path / "cut.msda"
    cut.write_bytes(raw[:n])
    with pytest.raises(ModelFileError, match="truncated or not an msda_widgets model|not the zip archive"):
        Detector.load(cut)


@pytest.mark.parametrize("content", [b"hello\n", b"time,a,b\n2024-01-01,1,2\n", b"\x00" * 64,
                                     b"PK\x03\x04 but nothing else"],
                         ids=["text", "csv", "zeros", "zip-magic-only"])
def test_files_that_are_not_models_are_refused(tmp_path, content):
    path = tmp_path / "model.msda"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="not an msda_widgets model"):
        Detector.load(path)


def test_a_zip_that_is_not_a_torch_file_is_refused(tmp_path):
    path = tmp_path / "model.msda"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data.pkl", "not a pickle")
    with pytest.raises(ModelFileError, match="truncated or not an msda_widgets model"):
        Detector.load(path)


@pytest.mark.parametrize("version", [0, -1, FORMAT_VERSION + 1, 999, "1", 1.0, True, None, [1]])
def test_a_wrong_format_version_is_refused(saved, tmp_path, version):
    _, path = saved
    bundle = _bundle(path)
    bundle["format_version"] = version
    with pytest.raises(ModelFileError, match="model format version .* reads version"):
        Detector.load(_write(tmp_path, bundle))


def test_a_missing_or_foreign_format_marker_is_refused(saved, tmp_path):
    _, path = saved
    for change in ({"format": "someone.else"}, {"format": None}):
        bundle = {**_bundle(path), **change}
        with pytest.raises(ModelFileError, match="no 'msda_widgets.detector' marker"):
            Detector.load(_write(tmp_path, bundle))


def _tampered(bundle: dict) -> dict:
    """name -> a function that damages one part of a valid bundle."""
    config = json.loads(bundle["config"])
    nan = float("nan")
    return {
        "background_sensors": lambda b: b.update(background=b["background"][..., :2]),
        "background_steps": lambda b: b.update(background=b["background"][:, :3]),
        "background_empty": lambda b: b.update(background=b["background"][:0]),
        "background_nan": lambda b: b.update(background=b["background"] * nan),
        "train_scores_2d": lambda b: b.update(train_scores=b["train_scores"][:, None]),
        "train_scores_empty": lambda b: b.update(train_scores=b["train_scores"][:0]),
        "train_scores_inf": lambda b: b.update(train_scores=b["train_scores"] * float("inf")),
        "error_mean_shape": lambda b: b.update(error_mean=b["error_mean"][:1]),
        "error_precision_shape": lambda b: b.update(error_precision=b["error_precision"][:1]),
        "threshold_nan": lambda b: b.update(threshold=nan),
        "threshold_inf": lambda b: b.update(threshold=float("inf")),
        "threshold_text": lambda b: b.update(threshold="high"),
        "weights_nan": lambda b: b.update(state_dict={k: v * nan if v.is_floating_point() else v
                                                      for k, v in b["state_dict"].items()}),
        "weights_shape": lambda b: b.update(state_dict={k: v[..., :1] for k, v in b["state_dict"].items()}),
        "weights_missing": lambda b: b.update(state_dict=dict(list(b["state_dict"].items())[1:])),
        "lookback": lambda b: b.update(config=json.dumps({**config, "lookback": LOOKBACK + 3})),
        "config_unknown_key": lambda b: b.update(config=json.dumps({**config, "evil": 1})),
        "config_not_json": lambda b: b.update(config="{not json"),
        "history_not_a_dict": lambda b: b.update(history="[]"),
        "versions_not_json": lambda b: b.update(versions="{x"),
        "scaler_sensors": lambda b: b.update(scaler={k: v[:1] if isinstance(v, torch.Tensor) else v
                                                     for k, v in b["scaler"].items()}),
        "scaler_missing": lambda b: b.pop("scaler"),
        "pipeline_not_a_dict": lambda b: b.update(pipeline="x"),
    }


TAMPERINGS = sorted(_tampered({"config": "{}"}))


@pytest.mark.parametrize("damage", TAMPERINGS)
def test_a_valid_bundle_with_a_tampered_part_is_refused_at_load(saved, tmp_path, frame, damage):
    _, path = saved
    bundle = _bundle(path)
    _tampered(bundle)[damage](bundle)
    with pytest.raises(ModelFileError) as info:
        Detector.load(_write(tmp_path, bundle))
    message = str(info.value)
    assert "damaged or inconsistent" in message or "Invalid saved" in message, message
    assert "Traceback" not in message and len(message) < 800


def test_the_untampered_bundle_still_loads_and_scores_identically(saved, frame, tmp_path):
    det, path = saved
    again = _write(tmp_path, _bundle(path), "resaved.msda")
    loaded = Detector.load(again)
    np.testing.assert_array_equal(loaded.score(frame).to_numpy(), det.score(frame).to_numpy())
