"""One training loop for every model: Adam + MSE, chronological validation, early stopping.

The loop reports through two optional callbacks, ``on_batch(progress)`` and
``on_epoch(progress)``, and checks a :class:`CancelToken` before every batch, so a dashboard
can draw a live loss curve and stop a run within one batch. Exceptions raised by a callback
propagate to the caller of ``fit`` (they are never swallowed).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..errors import TrainingError

__all__ = ["CancelToken", "Progress", "EpochRecord", "History", "train_model", "resolve_device",
           "torch_runtime"]

STOP_COMPLETED = "completed"
STOP_EARLY = "early_stopping"
STOP_CANCELLED = "cancelled"
STOP_DIVERGED = "diverged"


class CancelToken:
    """Thread-safe flag a UI sets to stop training; checked before every batch."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def reset(self) -> None:
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled})"


@dataclass(frozen=True)
class Progress:
    """What a callback receives. ``val_loss`` is ``None`` until a validation pass has run."""

    phase: str            # "batch" or "epoch"
    epoch: int            # 1-based
    epochs: int
    batch: int            # 1-based batch within the epoch (== batches at the end of an epoch)
    batches: int
    loss: float           # this batch's loss ("batch") or the epoch's mean training loss ("epoch")
    train_loss: float     # running mean training loss of the current epoch
    val_loss: Optional[float]
    elapsed: float        # seconds since training started
    eta: float            # estimated seconds left for the remaining epochs

    @property
    def fraction(self) -> float:
        return ((self.epoch - 1) * self.batches + self.batch) / (self.epochs * self.batches)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: Optional[float]
    seconds: float
    elapsed: float


@dataclass(frozen=True)
class History:
    """The loss curve of a fit and why it ended (``stop_reason``)."""

    records: tuple[EpochRecord, ...] = ()
    stop_reason: str = STOP_COMPLETED
    best_epoch: Optional[int] = None
    seconds: float = 0.0
    n_train: int = 0
    n_val: int = 0
    message: str = ""

    @property
    def train_loss(self) -> list[float]:
        return [r.train_loss for r in self.records]

    @property
    def val_loss(self) -> list[Optional[float]]:
        return [r.val_loss for r in self.records]

    def to_frame(self):
        import pandas as pd
        return pd.DataFrame([r.__dict__ for r in self.records],
                            columns=["epoch", "train_loss", "val_loss", "seconds", "elapsed"]).set_index("epoch")

    def to_dict(self) -> dict:
        return {"records": [dict(r.__dict__) for r in self.records], "stop_reason": self.stop_reason,
                "best_epoch": self.best_epoch, "seconds": self.seconds, "n_train": self.n_train,
                "n_val": self.n_val, "message": self.message}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(records=tuple(EpochRecord(**r) for r in d.get("records", [])),
                   stop_reason=d.get("stop_reason", STOP_COMPLETED), best_epoch=d.get("best_epoch"),
                   seconds=float(d.get("seconds", 0.0)), n_train=int(d.get("n_train", 0)),
                   n_val=int(d.get("n_val", 0)), message=d.get("message", ""))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device='cuda' was requested but no CUDA device is available; use device='auto'.")
    return torch.device(device)


def default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


_THREADS_LOCK = threading.Lock()


@contextlib.contextmanager
def torch_runtime(num_threads: Optional[int], seed: Optional[int] = None) -> Iterator[None]:
    """Set torch's CPU threads (and, with a seed, a private RNG state) and restore them after."""
    with _THREADS_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(num_threads or default_threads())
    try:
        if seed is None:
            yield
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                yield
    finally:
        with _THREADS_LOCK:
            torch.set_num_threads(before)


BatchFn = Callable[[np.ndarray], "tuple[torch.Tensor, torch.Tensor]"]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _finite_weights(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def evaluate_loss(model: nn.Module, batch_fn: BatchFn, indices: np.ndarray, device: torch.device,
                  batch_size: int = 2048) -> float:
    """Mean squared error over ``indices`` in eval mode without gradients."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.inference_mode():
            for start in range(0, len(indices), batch_size):
                x, y = batch_fn(indices[start:start + batch_size])
                x, y = x.to(device), y.to(device)
                total += float(nn.functional.mse_loss(model(x), y, reduction="sum"))
                count += y.numel()
    finally:
        model.train(was_training)
    return total / max(count, 1)


def train_model(model: nn.Module, batch_fn: BatchFn, train_idx: np.ndarray, val_idx: np.ndarray,
                config: TrainConfig, *, device: torch.device,
                on_batch: Optional[Callable[[Progress], None]] = None,
                on_epoch: Optional[Callable[[Progress], None]] = None,
                cancel: Optional[CancelToken] = None) -> History:
    """Train ``model`` in place and return its :class:`History`.

    ``batch_fn(indices) -> (inputs, targets)`` builds a batch of windows. The caller sets the
    seed (see :func:`torch_runtime`); shuffling uses ``numpy.random.default_rng(config.seed)``.
    The loss is checked before every step and the weights after every epoch, so a divergence
    (NaN / inf) stops training within the epoch it happens in. When training ends early (early
    stopping, cancel, divergence), the best weights seen so far are restored. A divergence before
    any epoch completed raises
    :class:`~msda_widgets.errors.TrainingError`.
    """
    if len(train_idx) == 0:
        raise TrainingError("No training windows: the data is shorter than the lookback.")
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.MSELoss()
    batches = math.ceil(len(train_idx) / config.batch_size)
    total_batches = batches * config.epochs
    records: list[EpochRecord] = []
    best_state, best_value, best_epoch = None, math.inf, None
    stale = 0
    stop_reason, message = STOP_COMPLETED, ""
    t0 = time.perf_counter()
    done_batches = 0
    last_val: Optional[float] = None
    model.to(device)
    model.train()

    def eta() -> float:
        elapsed = time.perf_counter() - t0
        return elapsed / max(done_batches, 1) * (total_batches - done_batches)

    try:
        for epoch in range(1, config.epochs + 1):
            t_epoch = time.perf_counter()
            order = train_idx[rng.permutation(len(train_idx))]
            running, seen = 0.0, 0
            for b in range(batches):
                if cancel is not None and cancel.cancelled:
                    stop_reason, message = STOP_CANCELLED, f"Cancelled during epoch {epoch}."
                    break
                x, y = batch_fn(order[b * config.batch_size:(b + 1) * config.batch_size])
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                value = loss.detach().item()
                if not math.isfinite(value):
                    stop_reason = STOP_DIVERGED
                    message = (f"The training loss became {value} at epoch {epoch}, batch {b + 1}; "
                               f"lower the learning rate (now {config.learning_rate:g}).")
                    break
                loss.backward()
                optimizer.step()
                running += value * len(y)
                seen += len(y)
                done_batches += 1
                if on_batch is not None:
                    on_batch(Progress("batch", epoch, config.epochs, b + 1, batches, value, running / seen,
                                      last_val, time.perf_counter() - t0, eta()))
            if stop_reason != STOP_COMPLETED:
                break
            if not _finite_weights(model):  # the last step can break the weights with a finite loss
                stop_reason = STOP_DIVERGED
                message = (f"The weights became non-finite (NaN or inf) during epoch {epoch}; "
                           f"lower the learning rate (now {config.learning_rate:g}).")
                break
            train_loss = running / max(seen, 1)
            val_loss = evaluate_loss(model, batch_fn, val_idx, device) if len(val_idx) else None
            if val_loss is not None and not math.isfinite(val_loss):
                stop_reason = STOP_DIVERGED
                message = (f"The validation loss became {val_loss} at epoch {epoch}; "
                           f"lower the learning rate (now {config.learning_rate:g}).")
                break
            last_val = val_loss
            elapsed = time.perf_counter() - t0
            records.append(EpochRecord(epoch, train_loss, val_loss, time.perf_counter() - t_epoch, elapsed))
            monitored = val_loss if val_loss is not None else train_loss
            if monitored < best_value - config.min_delta:
                best_value, best_epoch, best_state, stale = monitored, epoch, _snapshot(model), 0
            else:
                stale += 1
            if on_epoch is not None:
                on_epoch(Progress("epoch", epoch, config.epochs, batches, batches, train_loss, train_loss,
                                  val_loss, elapsed, eta()))
            if config.patience and stale >= config.patience:
                stop_reason = STOP_EARLY
                message = f"Stopped early at epoch {epoch}: no improvement for {config.patience} epochs."
                break
    finally:
        model.eval()

    if stop_reason == STOP_DIVERGED and best_state is None:
        raise TrainingError(message + " No epoch finished with a finite loss, so there is no model to keep.")
    # The weights in the model are the best ones only if training ran to the end of the best epoch.
    if best_state is not None and (stop_reason != STOP_COMPLETED or best_epoch != len(records)):
        model.load_state_dict(best_state)
    if stop_reason == STOP_DIVERGED:
        message += f" Kept the weights of epoch {best_epoch}."
    return History(tuple(records), stop_reason, best_epoch, time.perf_counter() - t0,
                   len(train_idx), len(val_idx), message)
