import math
import threading

import numpy as np
import pytest
import torch

from msda_widgets.config import TrainConfig
from msda_widgets.engine.training import CancelToken, History, train_model, torch_runtime
from msda_widgets.errors import TrainingError


def _problem(n=512, seed=0):
    """y = sum of the window: a linear model learns it quickly."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 3, generator=g)
    y = x.sum(dim=1)
    return x, y


def _batch_fn(x, y):
    def fn(idx):
        idx = torch.as_tensor(idx)
        return x[idx], y[idx]
    return fn


def _model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))


def _run(config, x=None, y=None, **kw):
    if x is None:
        x, y = _problem()
    torch.manual_seed(0)
    model = _model()
    idx = np.arange(len(x))
    hist = train_model(model, _batch_fn(x, y), idx[:448], idx[448:], config, device=torch.device("cpu"), **kw)
    return model, hist


def test_loss_decreases_and_history_is_complete():
    _, hist = _run(TrainConfig(epochs=8, batch_size=32, learning_rate=1e-2, patience=0))
    assert isinstance(hist, History)
    assert len(hist.records) == 8 and hist.stop_reason == "completed"
    assert hist.train_loss[-1] < 0.2 * hist.train_loss[0]
    assert all(v is not None and math.isfinite(v) for v in hist.val_loss)
    assert hist.n_train == 448 and hist.n_val == 64
    assert list(hist.to_frame().index) == list(range(1, 9))
    assert History.from_dict(hist.to_dict()) == hist


def test_callbacks_report_progress_per_batch_and_epoch():
    batches, epochs = [], []
    _run(TrainConfig(epochs=2, batch_size=100, patience=0), on_batch=batches.append, on_epoch=epochs.append)
    assert len(batches) == 2 * 5  # ceil(448 / 100) batches per epoch
    assert [p.batch for p in batches[:5]] == [1, 2, 3, 4, 5]
    assert batches[-1].fraction == pytest.approx(1.0)
    assert all(p.eta >= 0 and p.elapsed >= 0 for p in batches)
    assert [p.epoch for p in epochs] == [1, 2]
    assert epochs[0].val_loss is not None and epochs[0].phase == "epoch"
    assert batches[5].val_loss == epochs[0].val_loss  # batches of epoch 2 know epoch 1's val loss


def test_cancel_takes_effect_within_one_batch():
    token = CancelToken()
    seen = []

    def on_batch(p):
        seen.append(p)
        if len(seen) == 3:
            token.cancel()

    _, hist = _run(TrainConfig(epochs=5, batch_size=16, patience=0), on_batch=on_batch, cancel=token)
    assert len(seen) == 3
    assert hist.stop_reason == "cancelled"


def test_cancel_from_another_thread():
    token = CancelToken()
    started = threading.Event()
    result = {}

    def work():
        result["hist"] = _run(TrainConfig(epochs=10_000, batch_size=8, patience=0),
                              on_batch=lambda p: started.set(), cancel=token)[1]

    t = threading.Thread(target=work)
    t.start()
    assert started.wait(30)
    token.cancel()
    t.join(30)
    assert not t.is_alive()
    assert result["hist"].stop_reason == "cancelled"


def test_early_stopping_restores_best_weights():
    x, y = _problem()
    y = torch.randn_like(y)  # nothing to learn: validation loss stops improving quickly
    model, hist = _run(TrainConfig(epochs=200, batch_size=64, learning_rate=1e-2, patience=3), x, y)
    assert hist.stop_reason == "early_stopping"
    assert len(hist.records) == hist.best_epoch + 3
    best_val = min(v for v in hist.val_loss)
    assert hist.val_loss[hist.best_epoch - 1] == best_val


def test_non_finite_loss_keeps_last_good_weights():
    x, y = _problem()
    calls = {"n": 0}
    good = _batch_fn(x, y)

    def poisoned(idx):
        calls["n"] += 1
        xb, yb = good(idx)
        if calls["n"] > 14 + 2:  # after epoch 1 (14 batches) + its validation batch
            yb = yb * float("nan")
        return xb, yb

    torch.manual_seed(0)
    model = _model()
    idx = np.arange(len(x))
    hist = train_model(model, poisoned, idx[:448], idx[448:], TrainConfig(epochs=5, batch_size=32, patience=0),
                       device=torch.device("cpu"))
    assert hist.stop_reason == "diverged"
    assert len(hist.records) == 1 and hist.best_epoch == 1
    assert "learning rate" in hist.message and "epoch 1" in hist.message
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_divergence_in_first_epoch_raises():
    x, y = _problem()
    with pytest.raises(TrainingError, match="lower the learning rate"):
        _run(TrainConfig(epochs=3, batch_size=32), x, y * float("inf"))


def test_exception_in_callback_propagates():
    def boom(p):
        raise ValueError("callback failed")

    with pytest.raises(ValueError, match="callback failed"):
        _run(TrainConfig(epochs=1), on_epoch=boom)


def test_training_is_deterministic_for_a_seed():
    a, _ = _run(TrainConfig(epochs=3, batch_size=32, seed=7))
    b, _ = _run(TrainConfig(epochs=3, batch_size=32, seed=7))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_torch_runtime_restores_threads_and_rng():
    before_threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with torch_runtime(1, seed=5):
        assert torch.get_num_threads() == 1
        torch.rand(100)
    assert torch.get_num_threads() == before_threads
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG stream is untouched


def test_cancel_token_reset():
    t = CancelToken()
    t.cancel()
    assert t.cancelled
    t.reset()
    assert not t.cancelled
