"""The Detector: fit / score / predict / contributions / threshold / save / load.

It follows PyOD's contract: ``__init__`` stores settings only, ``fit`` returns ``self``, a higher
score is more anomalous, fitted attributes end in ``_``. Scores are aligned to the caller's rows:
a row that no window judges (the first ``lookback`` rows) gets NaN, never a shifted value.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import pandas as pd
import torch

from ..config import DetectorConfig
from ..errors import ConfigError, DataError, ModelFileError, NotFittedError, TrainingError
from .data import DataPipeline, DataReport, Scaler, SensorData, Windows, load_csv, make_windows
from .models import build_model, get_spec
from .thresholds import compute_threshold
from .training import CancelToken, History, Progress, resolve_device, torch_runtime, train_model

__all__ = ["Detector", "Detection", "FORMAT", "FORMAT_VERSION"]

FORMAT = "msda_widgets.detector"
FORMAT_VERSION = 1
SCORE_BATCH = 1024
BACKGROUND_SIZE = 100  # normal training windows kept for SHAP / baselines

DataLike = Union[pd.DataFrame, pd.Series, np.ndarray, str, os.PathLike]


@dataclass(frozen=True)
class Detection:
    """Everything one scoring pass gives, aligned to the caller's rows.

    ``scores`` is NaN where no window judges a row (``scored`` is False there);
    ``contributions`` holds each sensor's squared error, so for the ``l2`` score
    ``scores == sqrt(contributions.sum(axis=1))``.
    """

    scores: pd.Series
    anomalies: pd.Series
    contributions: pd.DataFrame
    threshold: float
    data: SensorData

    @property
    def scored(self) -> pd.Series:
        return self.scores.notna().rename("scored")

    @property
    def n_anomalies(self) -> int:
        return int(self.anomalies.sum())


@dataclass(frozen=True)
class _Errors:
    judged: np.ndarray    # (N,) row of the prepared series each score belongs to
    squared: np.ndarray   # (N, S) per-sensor squared error (the contributions)
    vector: np.ndarray    # (N, S) error vector used by the Mahalanobis score


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _encode(obj: Any) -> Any:
    """Turn numpy arrays into tensors so the bundle loads with ``weights_only=True``."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biuf":
            return torch.from_numpy(np.ascontiguousarray(obj))
        return {"__strings__": [str(v) for v in obj.tolist()]}
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        if set(obj) == {"__strings__"}:
            return np.array(obj["__strings__"], dtype=object)
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor over ``a``; read-only or strided views (windows) are copied first."""
    if not (a.flags.writeable and a.flags.c_contiguous):
        a = np.array(a, order="C")
    return torch.from_numpy(a)


def _versions() -> dict[str, str]:
    from .. import __version__
    return {"msda_widgets": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "format_version": str(FORMAT_VERSION)}


_ZIP_MAGIC = b"PK\x03\x04"


def _file_head(path: Any) -> bytes:
    """The first 4 bytes of a path or an open binary file (whose position is kept)."""
    if hasattr(path, "read"):
        position = path.tell()
        head = path.read(4)
        path.seek(position)
        return head
    with open(path, "rb") as f:
        return f.read(4)


def _check_bundle(det: "Detector", n_sensors: int, scaler: Scaler, model: torch.nn.Module, threshold: float,
                  train_scores: np.ndarray, error_mean: np.ndarray, error_precision: np.ndarray,
                  background: np.ndarray) -> None:
    """Refuse (ValueError) a loaded bundle whose parts do not fit together: a tampered shape or a
    non-finite value would otherwise only fail later, at score or explain time, with an obscure error."""
    steps = det.lookback + (1 if det.task == "forecast" else 0)
    checks = [
        (np.shape(scaler.offset_) == (n_sensors,) and np.shape(scaler.scale_) == (n_sensors,),
         f"the scaler has {np.size(scaler.offset_)} sensors, the data pipeline {n_sensors}"),
        (all(bool(torch.isfinite(p).all()) for p in model.parameters()), "the weights hold NaN or inf values"),
        (math.isfinite(threshold), f"the threshold is {threshold}"),
        (train_scores.ndim == 1 and train_scores.size >= 1 and np.isfinite(train_scores).all(),
         f"the training scores (shape {train_scores.shape}) are not a non-empty 1-D array of finite numbers"),
        (error_mean.shape == (n_sensors,) and error_precision.shape == (n_sensors, n_sensors)
         and np.isfinite(error_mean).all() and np.isfinite(error_precision).all(),
         f"the error statistics have shapes {error_mean.shape} and {error_precision.shape}; expected "
         f"({n_sensors},) and ({n_sensors}, {n_sensors}) of finite numbers"),
        (background.ndim == 3 and len(background) >= 1 and background.shape[1:] == (steps, n_sensors)
         and np.isfinite(background).all(),
         f"the background windows have shape {background.shape}; expected (K >= 1, {steps}, {n_sensors}) "
         f"of finite numbers"),
    ]
    for ok, problem in checks:
        if not ok:
            raise ValueError(problem)


class Detector:
    """Multi-sensor time-series anomaly detector.

    >>> det = Detector(model="deepcnn", lookback=10, epochs=30, seed=0).fit(df)   # doctest: +SKIP
    >>> det.score(df), det.predict(df), det.contributions(df)                     # doctest: +SKIP

    Settings are the fields of :class:`~msda_widgets.config.DataConfig`, ``ModelConfig``,
    ``TrainConfig`` and ``ScoreConfig`` passed as flat keywords; unknown ones are refused.
    """

    def __init__(self, model: str = "deepcnn", **settings: Any) -> None:
        self.config = DetectorConfig.from_flat(model=model, **settings)
        get_spec(self.config.model.model)  # unknown model names fail here, not at fit time

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: DetectorConfig) -> "Detector":
        if not isinstance(config, DetectorConfig):
            raise ConfigError(f"from_config needs a DetectorConfig; got {type(config).__name__}.")
        return cls(**config.flat())

    def get_params(self) -> dict[str, Any]:
        return self.config.flat()

    def set_params(self, **settings: Any) -> "Detector":
        """Change settings (a fitted model is kept until the next ``fit``)."""
        self.config = self.config.replace(**settings)
        get_spec(self.config.model.model)
        return self

    def __repr__(self) -> str:
        defaults = DetectorConfig().flat()
        changed = {k: v for k, v in self.config.flat().items() if v != defaults[k] or k == "model"}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"Detector({args}){'' if self.is_fitted else ' [not fitted]'}"

    # -- fitted state -----------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "model_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("This Detector is not fitted yet: call fit(data) first "
                                 "(or Detector.load(path) for a saved one).")

    @property
    def lookback(self) -> int:
        return self.config.model.lookback

    @property
    def task(self) -> str:
        return get_spec(self.config.model.model).task

    @property
    def sensors_(self) -> tuple[str, ...]:
        self._check_fitted()
        return self.pipeline_.sensors_

    # -- data --------------------------------------------------------------------------------
    def _frame(self, data: DataLike) -> pd.DataFrame:
        if isinstance(data, pd.DataFrame):
            return data
        if isinstance(data, pd.Series):
            return data.to_frame(name=data.name if data.name is not None else "sensor_1")
        if isinstance(data, (str, os.PathLike)):
            return load_csv(data, time_column=self.config.data.time_column,
                            missing_values=self.config.data.missing_values)
        if isinstance(data, np.ndarray):
            if data.ndim == 1:
                data = data[:, None]
            if data.ndim != 2:
                raise DataError(f"An array must be 2-D (time x sensors); got shape {data.shape}.")
            return pd.DataFrame(data, columns=[f"sensor_{i + 1}" for i in range(data.shape[1])])
        raise DataError(f"Expected a DataFrame, a 2-D array or a CSV path; got {type(data).__name__}.")

    def _min_rows(self, fitting: bool) -> int:
        # fit needs at least two windows; scoring at least one
        return self.lookback + (2 if fitting else (1 if self.task == "forecast" else 0))

    def prepare(self, data: DataLike) -> tuple[SensorData, np.ndarray]:
        """The fitted pipeline applied to ``data``: (prepared data, scaled float32 values)."""
        self._check_fitted()
        sd = self.pipeline_.prepare(self._frame(data), min_rows=self._min_rows(False))
        return sd, self.scaler_.transform(sd.values)

    def windows(self, scaled: np.ndarray) -> Windows:
        return make_windows(scaled, self.lookback, self.task)

    # -- errors and scores -----------------------------------------------------------------
    def _errors(self, model: torch.nn.Module, scaled: np.ndarray, device: torch.device) -> _Errors:
        win = self.windows(scaled)
        n, s = len(win.judged), scaled.shape[1]
        squared = np.empty((n, s), dtype=np.float32)
        vector = np.empty((n, s), dtype=np.float32)
        forecast = self.task == "forecast"
        last = self.config.score.reduction == "last"
        model.eval()
        with torch.inference_mode():
            for start in range(0, n, SCORE_BATCH):
                stop = min(start + SCORE_BATCH, n)
                x = _tensor(win.inputs[start:stop]).to(device)
                out = model(x)
                if forecast:
                    y = _tensor(win.targets[start:stop]).to(device)
                    err = y - out
                    sq = err.square()
                elif last:
                    err = x[:, -1] - out[:, -1]
                    sq = err.square()
                else:
                    sq = (x - out).square().mean(dim=1)
                    err = sq.sqrt()
                squared[start:stop] = sq.cpu().numpy()
                vector[start:stop] = err.cpu().numpy()
        return _Errors(win.judged, squared, vector)

    def _scores_from(self, errors: _Errors) -> np.ndarray:
        if self.config.score.score == "mahalanobis":
            centred = errors.vector.astype(np.float64) - self.error_mean_
            return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, self.error_precision_, centred), 0.0))
        return np.sqrt(errors.squared.astype(np.float64).sum(axis=1))

    def _fit_mahalanobis(self, vectors: np.ndarray) -> None:
        v = vectors.astype(np.float64)
        self.error_mean_ = v.mean(axis=0)
        cov = np.atleast_2d(np.cov(v, rowvar=False)) if len(v) > 1 else np.eye(v.shape[1])
        ridge = 1e-6 * max(float(np.trace(cov)) / len(cov), 1e-12)
        self.error_precision_ = np.linalg.pinv(cov + ridge * np.eye(len(cov)))

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, data: DataLike, *, on_batch: Optional[Callable[[Progress], None]] = None,
            on_epoch: Optional[Callable[[Progress], None]] = None,
            cancel: Optional[CancelToken] = None) -> "Detector":
        """Fit the scaler, train the network and set ``threshold_`` from the fit data's scores.

        ``on_batch`` / ``on_epoch`` receive a :class:`~msda_widgets.engine.training.Progress`;
        ``cancel`` (a :class:`CancelToken`) stops training within one batch and keeps the best
        weights so far. The caller's data is never modified.
        """
        cfg = self.config
        spec = get_spec(cfg.model.model)
        if cfg.model.lookback < spec.min_lookback:
            raise ConfigError(f"{spec.name} needs lookback >= {spec.min_lookback}; got {cfg.model.lookback}.")
        t0 = time.perf_counter()
        pipeline = DataPipeline(cfg.data)
        sd = pipeline.fit_prepare(self._frame(data), min_rows=self._min_rows(True))
        lookback, n_rows = cfg.model.lookback, len(sd.values)
        n_val_rows = int(round(n_rows * cfg.train.validation_split))
        # the validation part must hold a window; the training part must keep two
        if n_val_rows < lookback + 1 or n_rows - n_val_rows < lookback + 2:
            n_val_rows = 0
        train_rows = n_rows - n_val_rows
        scaler = Scaler(cfg.data.scaling).fit(sd.values[:train_rows])
        scaled = scaler.transform(sd.values)
        win = make_windows(scaled, lookback, spec.task)
        starts = np.arange(len(win.judged))
        train_idx = np.flatnonzero(win.judged < train_rows)
        val_idx = np.flatnonzero(starts >= train_rows) if n_val_rows else np.empty(0, dtype=np.int64)
        inputs, targets, reconstruct = win.inputs, win.targets, spec.task == "reconstruct"

        def batch_fn(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            x = _tensor(inputs[idx])  # fancy indexing already copies, so no second copy is made
            return (x, x) if reconstruct else (x, _tensor(targets[idx]))

        device = resolve_device(cfg.train.device)
        with torch_runtime(cfg.train.num_threads, cfg.train.seed):
            if cfg.train.seed is None:
                torch.seed()
            model = build_model(cfg.model, sd.values.shape[1]).to(device)
            history = train_model(model, batch_fn, train_idx, val_idx, cfg.train, device=device,
                                  on_batch=on_batch, on_epoch=on_epoch, cancel=cancel)
            errors = self._errors(model, scaled, device)
        if not np.isfinite(errors.squared).all():
            raise TrainingError(f"The trained network gives NaN or infinite errors on the fit data (its weights "
                                f"grew too large); lower the learning rate (now {cfg.train.learning_rate:g}).")

        # only now, with everything computed, replace the fitted state (a failed fit keeps the old one)
        self.pipeline_, self.scaler_, self.model_, self.device_ = pipeline, scaler, model, device
        self.history_: History = history
        self.data_report_: DataReport = sd.report
        self._fit_mahalanobis(errors.vector[train_idx])
        self.train_scores_ = self._scores_from(errors)
        self.train_index_ = sd.index[errors.judged]
        self.threshold_ = compute_threshold(self.train_scores_, cfg.score.threshold, cfg.score.threshold_param)
        self.background_ = self._background(win, train_idx, self.train_scores_)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _background(self, win: Windows, train_idx: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Up to BACKGROUND_SIZE normal training windows (score <= threshold), evenly spaced in time.

        Shape ``(K, lookback + 1, S)`` for a forecaster (the window and the observed next step) and
        ``(K, lookback, S)`` for an autoencoder: the same layout as an explanation's input.
        Chosen without randomness, so explanations are reproducible; saved with the model.
        """
        normal = train_idx[scores[train_idx] <= self.threshold_]
        if len(normal) == 0:
            normal = train_idx
        pick = normal[np.unique(np.linspace(0, len(normal) - 1, min(BACKGROUND_SIZE, len(normal))).round().astype(int))]
        return self.explain_input(win, pick)

    def explain_input(self, win: Windows, idx: np.ndarray) -> np.ndarray:
        """The tensor layout explanations use for windows ``idx``: float32 ``(n, L(+1), S)``;
        a forecaster's observed next step is appended as the last time step (offset 0)."""
        x = np.asarray(win.inputs[idx], dtype=np.float32)
        if self.task == "forecast":
            x = np.concatenate([x, np.asarray(win.targets[idx], dtype=np.float32)[:, None, :]], axis=1)
        return np.ascontiguousarray(x)

    # -- explanations (see msda_widgets.engine.explain) --------------------------------------
    def explain(self, data: Union[DataLike, Detection], when: Any, method: str = "shap", **options: Any):
        """Attributions of this detector's own anomaly score at ``when`` (a timestamp/label of
        ``data``'s index, or an integer row position). Returns an ``Explanation``."""
        from .explain import explain
        return explain(self, data, when, method, **options)

    def explain_many(self, data: Union[DataLike, Detection], whens: Any = None, method: str = "shap",
                     **options: Any):
        """Explain many rows at once (default: every flagged row). Returns an ``ExplanationSet``."""
        from .explain import explain_many
        return explain_many(self, data, whens, method, **options)

    def activations(self, data: Union[DataLike, Detection], when: Any) -> dict:
        """Each layer's activations over time for the window judging ``when``."""
        from .explain import activations
        return activations(self, data, when)

    # -- scoring -------------------------------------------------------------------------------
    def detect(self, data: DataLike) -> Detection:
        """Scores, anomaly flags and per-sensor contributions in one pass, on the caller's rows."""
        self._check_fitted()
        frame = self._frame(data)
        sd = self.pipeline_.prepare(frame, min_rows=self._min_rows(False))
        scaled = self.scaler_.transform(sd.values)
        with torch_runtime(self.config.train.num_threads):
            errors = self._errors(self.model_, scaled, self.device_)
        n_rows = len(sd.values)
        full_scores = np.full(n_rows, np.nan)
        full_scores[errors.judged] = self._scores_from(errors)
        full_contrib = np.full((n_rows, len(sd.sensors)), np.nan)
        full_contrib[errors.judged] = errors.squared
        scores = pd.Series(full_scores[sd.positions], index=frame.index, name="score")
        contributions = pd.DataFrame(full_contrib[sd.positions], index=frame.index, columns=list(sd.sensors))
        anomalies = (scores > self.threshold_).rename("anomaly")
        return Detection(scores, anomalies, contributions, float(self.threshold_), sd)

    def score(self, data: DataLike) -> pd.Series:
        """Anomaly score per row of ``data`` (NaN where no window judges the row)."""
        return self.detect(data).scores

    def predict(self, data: DataLike) -> pd.Series:
        """True where the score is above ``threshold_`` (False where there is no score)."""
        return self.detect(data).anomalies

    def contributions(self, data: DataLike) -> pd.DataFrame:
        """Per-sensor squared prediction / reconstruction error (rows x sensors)."""
        return self.detect(data).contributions

    # -- threshold -------------------------------------------------------------------------
    def set_threshold(self, method: Optional[str] = None, param: Optional[float] = None) -> float:
        """Recompute ``threshold_`` from the fit data's scores: no retraining needed."""
        self._check_fitted()
        method = method or self.config.score.threshold
        value = compute_threshold(self.train_scores_, method, param)
        self.config = self.config.replace(threshold=method, threshold_param=param)
        self.threshold_ = value
        return value

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write a bundle (weights, JSON config, scaler, threshold, versions) to ``path``."""
        self._check_fitted()
        bundle = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": json.dumps(self.config.flat(), default=_json_default),
            "versions": json.dumps(_versions()),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.model_.state_dict().items()},
            "pipeline": _encode(self.pipeline_.to_state()),
            "scaler": _encode(self.scaler_.to_state()),
            "threshold": float(self.threshold_),
            "train_scores": torch.from_numpy(np.asarray(self.train_scores_, dtype=np.float64)),
            "error_mean": torch.from_numpy(self.error_mean_),
            "error_precision": torch.from_numpy(self.error_precision_),
            "history": json.dumps(self.history_.to_dict(), default=_json_default),
            "background": torch.from_numpy(self.background_),
        }
        path = Path(path)
        torch.save(bundle, path)
        return path

    @classmethod
    def load(cls, path: Union[str, os.PathLike, io.BufferedIOBase]) -> "Detector":
        """Load a bundle written by :meth:`save`. Only save's zip archive reaches the unpickler, and
        only tensors and plain values are unpickled (``torch.load(weights_only=True)``); every part
        is then checked against the others (shapes, finite values). Anything else (empty, truncated,
        foreign, tampered or newer files) is refused with :class:`ModelFileError`."""
        name = getattr(path, "name", path)
        try:
            head = _file_head(path)
            if not head:
                raise ModelFileError(f"{name!s} is empty (0 bytes), so it is not an msda_widgets model. "
                                     f"Choose a file written by Detector.save.")
            if head != _ZIP_MAGIC:  # never hand anything but save's zip archive to the unpickler
                raise ModelFileError(f"{name!s} is not an msda_widgets model file (it is not the zip archive "
                                     f"that Detector.save writes). Choose a file written by Detector.save.")
            bundle = torch.load(path, map_location="cpu", weights_only=True)
        except ModelFileError:
            raise
        except FileNotFoundError:
            raise ModelFileError(f"No model file at {name!s}.") from None
        except pickle.UnpicklingError as exc:
            # torch's own text suggests weights_only=False and carries terminal colour codes: name the
            # refused object only
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            what = f"such as {found.group(1)}" if found else "or pickle instructions"
            raise ModelFileError(
                f"Refused to load {name!s}: it contains Python objects other than tensors and plain values "
                f"({what}), so it was tampered with or is not an msda_widgets model. Nothing in it was run."
            ) from None
        except Exception as exc:  # zip or unpickling errors of a damaged file
            raise ModelFileError(f"Cannot read {name!s}: the file is truncated or not an msda_widgets "
                                 f"model ({type(exc).__name__}).") from None
        if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
            raise ModelFileError(f"{name!s} is not an msda_widgets model file (no '{FORMAT}' marker).")
        version = bundle.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
            raise ModelFileError(f"{name!s} has model format version {version!r}; this msda_widgets reads "
                                 f"version {FORMAT_VERSION}. Save it again with this version, or upgrade.")
        try:
            det = cls(**json.loads(bundle["config"]))
            pipeline = DataPipeline.from_state(_decode(bundle["pipeline"]))
            scaler = Scaler.from_state(_decode(bundle["scaler"]))
            model = build_model(det.config.model, len(pipeline.sensors_))
            model.load_state_dict(bundle["state_dict"], strict=True)
            history = History.from_dict(json.loads(bundle["history"]))
            threshold = float(bundle["threshold"])
            train_scores = bundle["train_scores"].numpy()
            error_mean = bundle["error_mean"].numpy()
            error_precision = bundle["error_precision"].numpy()
            background = bundle["background"].numpy()
            _check_bundle(det, len(pipeline.sensors_), scaler, model, threshold, train_scores, error_mean,
                          error_precision, background)
            versions = json.loads(bundle.get("versions", "{}"))
        except ModelFileError:
            raise
        except Exception as exc:  # any inconsistency inside the bundle
            detail = f"{type(exc).__name__}: {exc}"[:400]
            raise ModelFileError(f"{name!s} is damaged or inconsistent ({detail}). Fit the detector again "
                                 f"and save it.") from None
        device = resolve_device("cpu" if det.config.train.device == "cuda" and not torch.cuda.is_available()
                                else det.config.train.device)
        det.pipeline_, det.scaler_, det.model_, det.device_ = pipeline, scaler, model.to(device).eval(), device
        det.history_, det.threshold_, det.train_scores_ = history, threshold, train_scores
        det.error_mean_, det.error_precision_, det.background_ = error_mean, error_precision, background
        det.versions_ = versions
        return det
