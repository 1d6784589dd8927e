"""Training faults: divergence, double Train, Stop/Train cycles, failing callbacks and views.

Faults are injected by wrapping the engine's ``train_model`` so that a batch callback corrupts
the network's weights (NaN, inf or huge values) at a chosen epoch and batch, by learning rates
that blow the loss up, by callbacks that raise, and by state observers (views) that raise.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref

import numpy as np
import psutil
import pytest
import torch

import msda_widgets.engine.detector as detector_module
from msda_widgets import Detector, datasets
from msda_widgets.app.controller import Controller
from msda_widgets.engine.training import CancelToken
from msda_widgets.errors import TrainingError

from ..conftest import make_series

LOOKBACK = 8
TINY_CNN = dict(model="deepcnn", lookback=LOOKBACK, conv_channels=(4,), dense_units=8)
TINY_LSTM = dict(model="lstm_ae", lookback=LOOKBACK, hidden_sizes=(8,))
COMMON = dict(batch_size=32, num_threads=1, seed=0, patience=0)
MODELS = {"deepcnn": TINY_CNN, "lstm_ae": TINY_LSTM}


@pytest.fixture(scope="module")
def frame():
    return make_series(n=400, n_sensors=3, seed=0)


@pytest.fixture(scope="module")
def demo():
    return datasets.make_sensors(n_steps=1500, n_sensors=3, anomalies=3, seed=3)


def corrupt_at(monkeypatch, epoch: int, batch, value: float) -> dict:
    """Make training fill the first weight tensor with ``value`` at (epoch, batch) (batch
    ``"last"`` = the epoch's last batch). Returns a dict that records what was seen."""
    real = detector_module.train_model
    seen: dict = {"batches": [], "epoch1_state": None, "corrupted": False}

    def wrapped(model, *args, on_batch=None, on_epoch=None, **kwargs):
        def batch_hook(p):
            seen["batches"].append((p.epoch, p.batch))
            if p.epoch == epoch and p.batch == (p.batches if batch == "last" else batch):
                with torch.no_grad():
                    next(model.parameters()).fill_(value)
                seen["corrupted"] = True
            if on_batch is not None:
                on_batch(p)

        def epoch_hook(p):
            if p.epoch == epoch - 1:
                seen["good_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if on_epoch is not None:
                on_epoch(p)

        return real(model, *args, on_batch=batch_hook, on_epoch=epoch_hook, **kwargs)

    monkeypatch.setattr(detector_module, "train_model", wrapped)
    return seen


# -- engine ----------------------------------------------------------------------------------

@pytest.mark.parametrize("lr", [1e6, 1e12])
def test_exploding_learning_rate_is_stopped_in_the_first_epoch(frame, lr):
    batches = []
    det = Detector(**TINY_CNN, **{**COMMON, "epochs": 5}, learning_rate=lr)
    with pytest.raises(TrainingError, match=r"lower the learning rate") as info:
        det.fit(frame, on_batch=lambda p: batches.append((p.epoch, p.batch, p.batches)))
    assert "epoch 1," in str(info.value) and "no model to keep" in str(info.value)
    assert batches and all(e == 1 for e, _, _ in batches)
    assert len(batches) < batches[0][2]  # stopped before the first epoch's batches ran out
    assert not det.is_fitted


def test_a_failed_refit_keeps_the_previous_model(frame):
    det = Detector(**TINY_CNN, **{**COMMON, "epochs": 2}).fit(frame)
    before = det.score(frame).to_numpy()
    model_before, threshold_before = det.model_, det.threshold_
    det.set_params(learning_rate=1e9)
    with pytest.raises(TrainingError):
        det.fit(frame)
    assert det.model_ is model_before and det.threshold_ == threshold_before
    np.testing.assert_array_equal(det.score(frame).to_numpy(), before)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("validation_split", [0.0, 0.2])
@pytest.mark.parametrize("where", [3, "last"], ids=["mid-epoch", "last-batch"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_corrupted_weights_stop_training_within_the_epoch_and_keep_the_last_good_ones(
        monkeypatch, frame, model, validation_split, where, value):
    seen = corrupt_at(monkeypatch, epoch=2, batch=where, value=value)
    det = Detector(**MODELS[model], **{**COMMON, "epochs": 4}, validation_split=validation_split).fit(frame)
    h = det.history_
    assert seen["corrupted"]
    assert h.stop_reason == "diverged", h
    assert "epoch 2" in h.message and "Kept the weights of epoch 1" in h.message
    assert len(h.records) == 1 and h.best_epoch == 1
    # detected within the epoch it happened in: no batch of epoch 3 ever ran
    assert max(e for e, _ in seen["batches"]) == 2
    # the weights are exactly those at the end of epoch 1
    state = det.model_.state_dict()
    for k, v in seen["good_state"].items():
        assert torch.equal(state[k], v), k
    scores = det.score(frame)
    assert np.isfinite(scores.iloc[LOOKBACK + 1:]).all()
    assert np.isfinite(det.threshold_)


def test_huge_but_finite_weights_after_the_last_step_are_refused(monkeypatch, frame):
    """The loss is checked before each step and the weights after each epoch; weights that are
    finite but so large that the errors overflow are caught when the fit data is scored."""
    corrupt_at(monkeypatch, epoch=2, batch="last", value=1e30)
    with pytest.raises(TrainingError, match="lower the learning rate"):
        Detector(**TINY_CNN, **{**COMMON, "epochs": 2}, validation_split=0.0).fit(frame)


@pytest.mark.parametrize("hook", ["on_batch", "on_epoch"])
def test_exception_in_a_callback_reaches_the_caller_of_fit(frame, hook):
    calls = []

    def boom(p):
        calls.append(p)
        raise KeyError("callback broke")

    det = Detector(**TINY_CNN, **{**COMMON, "epochs": 3})
    with pytest.raises(KeyError, match="callback broke"):
        det.fit(frame, **{hook: boom})
    assert len(calls) == 1  # training stopped at the first failing call
    assert not det.is_fitted


def test_cancel_before_the_first_batch_trains_nothing(frame):
    token = CancelToken()
    token.cancel()
    det = Detector(**TINY_CNN, **{**COMMON, "epochs": 3}).fit(frame, cancel=token)
    assert det.history_.stop_reason == "cancelled" and det.history_.records == ()


# -- controller ------------------------------------------------------------------------------

def _controller(demo, **settings) -> Controller:
    c = Controller(settings={**TINY_CNN, **COMMON, "batch_size": 64, "epochs": 3, **settings})
    assert c.load(demo)
    return c


def _train_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("msda-train") and t.is_alive()]


@pytest.fixture
def thread_errors(monkeypatch):
    """Exceptions that escape any thread (a worker killed by an uncaught exception)."""
    errors: list = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    return errors


def _plain(message: str) -> bool:
    return "Traceback" not in message and "File \"" not in message and "\n" not in message


def test_controller_reports_divergence_in_the_first_epoch(demo, thread_errors):
    c = _controller(demo, learning_rate=1e6)
    assert c.train() and c.wait(60)
    s = c.state
    assert s.task == "error" and s.level == "error"
    assert "lower the learning rate" in s.message and "epoch 1," in s.message and _plain(s.message)
    assert "previous results" not in s.message  # there were none
    assert s.results is None and s.detector is None
    assert not thread_errors and not _train_threads()


def test_controller_keeps_the_last_good_weights_when_training_diverges_later(monkeypatch, demo, thread_errors):
    corrupt_at(monkeypatch, epoch=2, batch=3, value=float("nan"))
    c = _controller(demo)
    assert c.train() and c.wait(60)
    s = c.state
    assert s.task == "finished" and s.level == "warning", s.message
    assert "Kept the weights of epoch 1" in s.message and _plain(s.message)
    assert len(s.history) == 1
    assert np.isfinite(s.results.scores[LOOKBACK:]).all() and np.isfinite(s.threshold)
    assert not thread_errors


@pytest.mark.parametrize("hook", ["on_batch", "on_epoch"])
def test_controller_reports_an_exception_raised_in_a_training_callback(monkeypatch, demo, thread_errors, hook):
    real = detector_module.train_model

    def wrapped(model, *args, **kwargs):
        def boom(p):
            raise ZeroDivisionError("injected callback failure")
        kwargs[hook] = boom
        return real(model, *args, **kwargs)

    monkeypatch.setattr(detector_module, "train_model", wrapped)
    c = _controller(demo)
    assert c.train() and c.wait(60)
    s = c.state
    assert s.task == "error" and s.level == "error"
    assert "ZeroDivisionError" in s.message and "injected callback failure" in s.message and _plain(s.message)
    assert not thread_errors and not c.is_training


@pytest.mark.parametrize("trait", ["history", "progress"])
def test_a_view_that_raises_during_training_ends_the_run_with_a_reported_error(demo, thread_errors, trait):
    c = _controller(demo, epochs=50)
    assert c.train()

    def broken_view(change):
        raise RuntimeError(f"view of {trait} broke")

    c.state.observe(broken_view, trait)  # attached once the run is going
    assert c.wait(60)
    s = c.state
    assert s.task == "error" and s.level == "error", s.message
    assert f"view of {trait} broke" in s.message and "Training failed" in s.message
    assert not thread_errors and not _train_threads()
    c.state.unobserve(broken_view, trait)
    assert c.train() and c.wait(60) and c.state.task == "finished"  # the dashboard still works


@pytest.mark.parametrize("trait", ["results", "detector", "threshold"])
def test_a_view_that_raises_on_the_results_is_reported(demo, thread_errors, trait):
    c = _controller(demo)

    def broken_view(change):
        raise RuntimeError(f"view of {trait} broke")

    c.state.observe(broken_view, trait)
    assert c.train() and c.wait(60)
    s = c.state
    assert s.task == "error" and s.level == "error"
    assert "a view failed to show its results" in s.message and f"view of {trait} broke" in s.message
    assert not thread_errors and not _train_threads()


def test_a_view_that_raises_when_training_starts_starts_no_run(demo, thread_errors):
    c = _controller(demo)

    def broken_view(change):
        raise RuntimeError("view of progress broke")

    c.state.observe(broken_view, "progress")
    assert c.train() is False
    assert not _train_threads() and not c.is_training
    assert c.wait(1) is True  # no half-made thread to join
    s = c.state
    assert s.task == "error" and s.level == "error" and "view of progress broke" in s.message
    assert not thread_errors


def test_train_clicked_from_many_threads_at_once_starts_one_run(demo):
    c = _controller(demo, epochs=500, batch_size=8)
    barrier = threading.Barrier(8)
    answers: list = []

    def click():
        barrier.wait()
        answers.append(c.train())

    clickers = [threading.Thread(target=click) for _ in range(8)]
    for t in clickers:
        t.start()
    for t in clickers:
        t.join(30)
    try:
        assert sorted(answers) == [False] * 7 + [True]
        assert len(_train_threads()) == 1
        assert "already running" in c.state.message or c.state.task == "running"
    finally:
        c.stop()
        assert c.wait(30)
    assert not _train_threads()


def test_stop_before_the_first_epoch_keeps_the_previous_results(demo, thread_errors):
    c = _controller(demo)
    assert c.train() and c.wait(60) and c.state.task == "finished"
    results, detector = c.state.results, c.state.detector
    c.update_settings(epochs=5, batch_size=1)  # an epoch of ~1500 batches: Stop lands inside it
    assert c.train()
    c.stop()
    assert c.wait(60)
    s = c.state
    assert s.task == "cancelled" and s.level == "warning"
    assert "stopped by you before the first epoch" in s.message and "previous results are kept" in s.message
    assert s.results is results and s.detector is detector
    assert not thread_errors


#: Stop -> Train -> Stop cycles and the RSS bound. One run on the frame below holds about 5 MB
#: (the prepared data, the scaled copy, scores, contributions and the Detection); measured: keeping
#: every second run alive grows RSS by ~135 MB over 50 cycles, while the real controller stays
#: within ±10 MB of its baseline. 50 MB therefore catches a leak of one run in five, with room
#: for allocator noise.
CYCLES = 50
RSS_BOUND_MB = 50


def test_stop_train_stop_50_times_leaves_no_threads_and_no_memory_growth(thread_errors):
    data = datasets.make_sensors(n_steps=20000, n_sensors=8, anomalies=3, seed=3)
    c = Controller(settings={**TINY_CNN, **COMMON, "batch_size": 64, "epochs": 1000})
    assert c.load(data)
    proc = psutil.Process()
    detectors: list[weakref.ref] = []
    outcomes: list[str] = []

    def cycle(i: int) -> None:
        c.stop()  # Stop with nothing running is harmless
        assert c.train(), c.state.message
        if i % 2:  # every other cycle runs one full epoch, so a model is trained and published
            deadline = time.monotonic() + 30
            while not c.state.history and time.monotonic() < deadline:
                time.sleep(0.005)
        c.stop()
        assert c.wait(30)
        outcomes.append(c.state.task)
        if c.state.detector is not None and (not detectors or detectors[-1]() is not c.state.detector):
            detectors.append(weakref.ref(c.state.detector))

    for i in range(6):  # warm-up: imports, torch's thread pool, allocator arenas
        cycle(i)
    gc.collect()
    baseline = proc.memory_info().rss
    t0 = time.perf_counter()
    for i in range(CYCLES):
        cycle(i)
    seconds = time.perf_counter() - t0
    gc.collect()
    growth_mb = (proc.memory_info().rss - baseline) / 2**20

    assert not _train_threads(), [t.name for t in threading.enumerate()]
    assert not thread_errors
    assert set(outcomes) == {"cancelled"}, outcomes
    alive = [r for r in detectors if r() is not None]
    assert len(detectors) >= CYCLES // 2 and alive == [detectors[-1]]  # only the published one lives
    assert growth_mb < RSS_BOUND_MB, f"RSS grew {growth_mb:.1f} MB over {CYCLES} cycles ({seconds:.1f} s)"
