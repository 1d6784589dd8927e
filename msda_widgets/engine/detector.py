"""The Detector: fit / score / predict / contributions / threshold / save / load.

It follows PyOD's and scikit-learn's contracts: ``__init__`` names every setting in its signature
and stores them only (``get_params`` / ``set_params`` / ``sklearn.base.clone`` work), ``fit(X,
y=None)`` returns ``self``, a higher score is more anomalous, fitted attributes end in ``_``.
Scores are aligned to the caller's rows: a row that no window judges (the first rows, see
:class:`~msda_widgets.engine.layout.WindowLayout`) gets NaN, never a shifted value.

The detector scores through :class:`~msda_widgets.engine.scoring.ScoreModule`, the same module
every explanation method differentiates; ``fit`` and ``load`` set the fitted state through one
code path (:meth:`Detector._set_fitted`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pickle
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import pandas as pd
import torch

from .._version import __version__
from ..config import DetectorConfig
from ..errors import ConfigError, DataError, ModelFileError, NotFittedError, TrainingError
from .data import DataPipeline, DataReport, Scaler, SensorData, load_csv
from .layout import WindowLayout
from .models import build_model, get_spec
from .results import Detection, aligned_labels
from .scoring import ScoreModule, Scoring
from .thresholds import compute_threshold
from .training import (CancelToken, EpochRecord, History, Progress, evaluate_loss, resolve_device, torch_runtime,
                       train_model)

__all__ = ["Detector", "Detection", "FORMAT", "FORMAT_VERSION"]

FORMAT = "msda_widgets.detector"
FORMAT_VERSION = 2
SCORE_BATCH = 1024
BACKGROUND_SIZE = 100  # normal training windows kept for SHAP / baselines
#: The smallest spread a sensor's error is divided by (relative to the largest), so a sensor the
#: model forecasts perfectly cannot turn a rounding error into a huge score.
ERROR_SCALE_FLOOR = 1e-3
#: Held-out windows needed before thresholds are computed from them (``threshold_on="holdout"``).
MIN_HOLDOUT = 50

DataLike = Union[pd.DataFrame, pd.Series, np.ndarray, str, os.PathLike]

#: Every setting, in the order of the constructor's signature.
SETTINGS: tuple[str, ...] = tuple(DetectorConfig().flat())


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


@dataclass(frozen=True, eq=False)
class _Fitted:
    """Everything ``fit`` learns and ``save`` writes; :meth:`Detector._set_fitted` publishes it as
    the ``*_`` attributes (one code path for fit and load)."""

    pipeline: DataPipeline
    scaler: Scaler
    model: torch.nn.Module
    device: torch.device
    history: History
    threshold: float
    train_scores: np.ndarray       # (N,) scores of the fit data's windows, in time order
    train_index: pd.Index          # (N,) the rows they judge
    threshold_scores: np.ndarray   # the scores thresholds are computed from (the held-out tail's, by default)
    decision_scores: np.ndarray    # (n,) the fit data's scores on the caller's rows (NaN: unscored)
    error_mean: np.ndarray
    error_precision: np.ndarray
    error_scale: Optional[np.ndarray]
    background: np.ndarray
    data_report: DataReport
    fit_seconds: float
    versions: dict


def _encode_index(index: pd.Index) -> dict:
    if isinstance(index, pd.DatetimeIndex):
        return {"kind": "datetime", "ticks": torch.from_numpy(index.asi8.copy()), "unit": str(index.unit),
                "tz": str(index.tz) if index.tz is not None else "", "name": index.name}
    values = np.asarray(index)
    if values.dtype.kind in "biuf":
        return {"kind": "numeric", "values": torch.from_numpy(np.ascontiguousarray(values)), "name": index.name}
    return {"kind": "text", "values": [str(v) for v in values.tolist()], "name": index.name}


def _decode_index(state: dict) -> pd.Index:
    kind, name = state["kind"], state.get("name")
    if kind == "datetime":
        index = pd.DatetimeIndex(state["ticks"].numpy().astype(f"datetime64[{state['unit']}]"), name=name)
        return index.tz_localize("UTC").tz_convert(state["tz"]) if state["tz"] else index
    if kind == "numeric":
        return pd.Index(state["values"].numpy(), name=name)
    if kind == "text":
        return pd.Index(list(state["values"]), dtype=object, name=name)
    raise ValueError(f"unknown index kind {kind!r}")


def _report_state(report: DataReport) -> str:
    return json.dumps(dataclasses.asdict(report), default=_json_default)


def _report_from(text: str) -> DataReport:
    values = json.loads(text)
    tuples = {f.name for f in dataclasses.fields(DataReport) if str(f.type).startswith("tuple")}
    return DataReport(**{k: tuple(v) if k in tuples else v for k, v in values.items()})


def _check_bundle(det: "Detector", f: _Fitted) -> None:
    """Refuse (ValueError) a loaded bundle whose parts do not fit together: a tampered shape or a
    non-finite value would otherwise only fail later, at score or explain time, with an obscure error."""
    n_sensors = len(f.pipeline.sensors_)
    steps = det.layout.steps
    scale = f.error_scale
    checks = [
        (np.shape(f.scaler.offset_) == (n_sensors,) and np.shape(f.scaler.scale_) == (n_sensors,),
         f"the scaler has {np.size(f.scaler.offset_)} sensors, the data pipeline {n_sensors}"),
        (all(bool(torch.isfinite(p).all()) for p in f.model.parameters()), "the weights hold NaN or inf values"),
        (math.isfinite(f.threshold), f"the threshold is {f.threshold}"),
        (f.train_scores.ndim == 1 and f.train_scores.size >= 1 and np.isfinite(f.train_scores).all(),
         f"the training scores (shape {f.train_scores.shape}) are not a non-empty 1-D array of finite numbers"),
        (f.threshold_scores.ndim == 1 and f.threshold_scores.size >= 1 and np.isfinite(f.threshold_scores).all(),
         f"the threshold scores (shape {f.threshold_scores.shape}) are not a non-empty 1-D array of finite numbers"),
        (len(f.train_index) == len(f.train_scores),
         f"{len(f.train_index)} training rows for {len(f.train_scores)} training scores"),
        (f.decision_scores.ndim == 1, f"the fit data's scores have shape {f.decision_scores.shape}"),
        (f.error_mean.shape == (n_sensors,) and f.error_precision.shape == (n_sensors, n_sensors)
         and np.isfinite(f.error_mean).all() and np.isfinite(f.error_precision).all(),
         f"the error statistics have shapes {f.error_mean.shape} and {f.error_precision.shape}; expected "
         f"({n_sensors},) and ({n_sensors}, {n_sensors}) of finite numbers"),
        (scale is None or (scale.shape == (n_sensors,) and np.isfinite(scale).all() and (scale > 0).all()),
         f"the error scale has shape {None if scale is None else scale.shape}; expected ({n_sensors},) of "
         f"positive numbers"),
        (f.background.ndim == 3 and len(f.background) >= 1 and f.background.shape[1:] == (steps, n_sensors)
         and np.isfinite(f.background).all(),
         f"the background windows have shape {f.background.shape}; expected (K >= 1, {steps}, {n_sensors}) "
         f"of finite numbers"),
        (math.isfinite(f.fit_seconds) and f.fit_seconds >= 0, f"the fit took {f.fit_seconds} s"),
    ]
    for ok, problem in checks:
        if not ok:
            raise ValueError(problem)


class Detector:
    """Multi-sensor time-series anomaly detector.

    >>> det = Detector(model="deepcnn", lookback=10, epochs=30, seed=0).fit(df)   # doctest: +SKIP
    >>> det.score(df), det.predict(df), det.contributions(df)                     # doctest: +SKIP

    Settings are the fields of :class:`~msda_widgets.config.DataConfig`, ``ModelConfig``,
    ``TrainConfig`` and ``ScoreConfig``, all named in this signature (keywords after ``model``);
    they are validated at once (unknown or bad values raise ``ConfigError``) and kept as given,
    so ``get_params`` / ``set_params`` and ``sklearn.base.clone`` work.

    Fitted attributes (set by ``fit`` and, identically, by ``load``):

    ``model_``
        the network (``torch.nn.Module``), ``device_`` the device it runs on;
    ``pipeline_``, ``scaler_``
        the fitted data pipeline and scaler; ``sensors_`` the sensor names;
    ``threshold_``
        the decision threshold; ``labels_`` (0/1) and ``decision_scores_`` the fit data's flags and
        scores on its own rows (NaN where no window judges a row), as in PyOD;
    ``train_scores_``, ``train_index_``
        the scores of the fit data's windows and the rows they judge (time order);
        ``threshold_scores_`` the scores thresholds are computed from (``threshold_on``: by default
        those of the held-out validation tail, which the model was not fitted on);
    ``error_mean_``, ``error_precision_``
        the Mahalanobis statistics of the training errors; ``error_scale_`` each sensor's error
        spread on normal held-out data when ``standardize_errors`` (else ``None``);
    ``background_``
        up to 100 normal training windows ``(K, T, S)`` (SHAP's background, the baselines);
    ``history_``, ``data_report_``, ``fit_seconds_``, ``versions_``
        the loss curve, what data preparation did, the fit's duration, the library versions.
    """

    def __init__(self, model: str = "deepcnn", *,
                 time_column: Optional[str] = "auto", sensors: Optional[tuple] = None,
                 label_columns: Optional[tuple] = None, impute: str = "interpolate",
                 missing_values: tuple = (), duplicates: str = "mean", scaling: str = "minmax",
                 drop_constant: bool = True,
                 lookback: int = 10, kernel_size: int = 3, conv_channels: tuple = (32, 32),
                 dense_units: int = 40, hidden_sizes: tuple = (128, 64), dropout: float = 0.2,
                 n_components: Optional[int] = None, n_clusters: Optional[int] = None, n_estimators: int = 100,
                 epochs: int = 30, batch_size: int = 256, learning_rate: float = 1e-3,
                 validation_split: float = 0.1, patience: int = 5, min_delta: float = 1e-5,
                 seed: Optional[int] = 0, device: str = "auto", num_threads: Optional[int] = None,
                 score: str = "l2", reduction: str = "last", threshold: str = "quantile",
                 threshold_param: Optional[float] = None, standardize_errors: bool = False,
                 threshold_on: str = "holdout", min_duration: int = 1,
                 **unknown: Any) -> None:
        given = dict(locals())
        if unknown:  # refused with a suggestion, as DetectorConfig does
            DetectorConfig.from_flat(**unknown)
        self._params = {name: given[name] for name in SETTINGS}
        self.config = DetectorConfig.from_flat(**self._params)
        get_spec(self.config.model.model)  # unknown model names fail here, not at fit time
        self._scoring: Optional[Scoring] = None
        self._scoring_key: tuple = ()
        self._scoring_lock = threading.Lock()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: DetectorConfig) -> "Detector":
        if not isinstance(config, DetectorConfig):
            raise ConfigError(f"from_config needs a DetectorConfig; got {type(config).__name__}.")
        return cls(**config.flat())

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The settings as given to the constructor (scikit-learn's contract; ``deep`` changes
        nothing: a Detector holds no nested estimators)."""
        return dict(self._params)

    def set_params(self, **settings: Any) -> "Detector":
        """Change settings (validated; a fitted model is kept until the next ``fit``)."""
        config = self.config.replace(**settings)
        get_spec(config.model.model)
        self.config = config
        self._params = {**self._params, **settings}
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

    def _set_fitted(self, f: _Fitted) -> None:
        """Publish a fitted state: the one place the ``*_`` attributes are written."""
        for name in (fld.name for fld in dataclasses.fields(_Fitted)):
            setattr(self, name + "_", getattr(f, name))
        with self._scoring_lock:
            self._scoring, self._scoring_key = None, ()

    @property
    def lookback(self) -> int:
        return self.config.model.lookback

    @property
    def kind(self) -> str:
        """What the model does with a window: ``forecast``, ``reconstruct`` or ``score``."""
        return get_spec(self.config.model.model).kind

    @property
    def layout(self) -> WindowLayout:
        return WindowLayout(self.lookback, self.kind)

    @property
    def sensors_(self) -> tuple[str, ...]:
        self._check_fitted()
        return self.pipeline_.sensors_

    @property
    def labels_(self) -> np.ndarray:
        """The fit data's rows scoring above ``threshold_``, 0/1 (PyOD's ``labels_``; 0 where unscored;
        the ``min_duration`` rule is not applied here, ``predict`` applies it)."""
        self._check_fitted()
        with np.errstate(invalid="ignore"):
            return (np.asarray(self.decision_scores_) > self.threshold_).astype(np.int64)

    # -- data --------------------------------------------------------------------------------
    def as_frame(self, data: DataLike) -> pd.DataFrame:
        """The table this detector reads from ``data``: a DataFrame as it is, a Series as one
        column, a 2-D array with columns ``sensor_1 ..``, a CSV path through ``load_csv``."""
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

    def prepare(self, data: DataLike) -> tuple[SensorData, np.ndarray]:
        """The fitted pipeline applied to ``data``: (prepared data, scaled float32 values)."""
        self._check_fitted()
        sd = self.pipeline_.prepare(self.as_frame(data), min_rows=self.layout.min_rows())
        return sd, self.scaler_.transform(sd.values)

    # -- the score -----------------------------------------------------------------------------
    def _score_module(self, model: torch.nn.Module, error_mean: Optional[np.ndarray] = None,
                      error_precision: Optional[np.ndarray] = None,
                      error_scale: Optional[np.ndarray] = None, score: Optional[str] = None) -> ScoreModule:
        cfg = self.config.score
        score = score or cfg.score
        maha = score == "mahalanobis"
        return ScoreModule(model, self.kind, score, cfg.reduction, error_mean if maha else None,
                           error_precision if maha else None, error_scale)

    def scoring(self) -> Scoring:
        """The fitted score as explanations use it (see :class:`~msda_widgets.engine.scoring.Scoring`).

        One record per fitted state and score settings, built on first use and reused: a new fit,
        a load or other score settings give a new one."""
        self._check_fitted()
        cfg = self.config
        key = (self.model_, self.background_, self.error_mean_, self.error_precision_, self.error_scale_,
               cfg.score.score, cfg.score.reduction, str(self.device_))
        with self._scoring_lock:
            same = len(key) == len(self._scoring_key) and all(
                a is b or (isinstance(a, str) and a == b) for a, b in zip(key, self._scoring_key))
            if self._scoring is None or not same:
                module = self._score_module(self.model_, self.error_mean_, self.error_precision_,
                                            self.error_scale_).to(self.device_)
                self._scoring = Scoring(module, self.layout, tuple(self.sensors_), self.background_, self.scaler_,
                                        torch.device(self.device_), cfg.train.num_threads, cfg.model.model)
                self._scoring_key = key
            return self._scoring

    @staticmethod
    def _passes(module: ScoreModule, windows: np.ndarray, device: torch.device,
                raw: bool) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
        """Score windows ``(N, T, S)`` in batches: (float64 scores, squared errors ``(N, S)``,
        error vectors ``(N, S)``). ``raw``: errors before the error scale and no scores (``fit``
        learns the scale and the statistics from them)."""
        n = len(windows)
        s = windows.shape[2]
        scores = np.full(n, np.nan)
        squared = np.empty((n, s), dtype=np.float32) if module.has_errors else None
        vector = np.empty((n, s), dtype=np.float32) if module.has_errors else None
        module.eval()
        with torch.inference_mode():
            for start in range(0, n, SCORE_BATCH):
                stop = min(start + SCORE_BATCH, n)
                x = _tensor(windows[start:stop]).to(device)
                if not module.has_errors:
                    scores[start:stop] = module.scores64(x).cpu().numpy()
                    continue
                sq, err = module.raw_errors(x)
                if raw:
                    err = err if err is not None else sq.sqrt()
                else:
                    sq, err = module.scale_errors(sq, err)
                    scores[start:stop] = module.combine(sq, err).cpu().numpy()
                squared[start:stop] = sq.cpu().numpy()
                vector[start:stop] = err.cpu().numpy()
        return scores, squared, vector

    @staticmethod
    def _mahalanobis_stats(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = vectors.astype(np.float64)
        mean = v.mean(axis=0)
        cov = np.atleast_2d(np.cov(v, rowvar=False)) if len(v) > 1 else np.eye(v.shape[1])
        ridge = 1e-6 * max(float(np.trace(cov)) / len(cov), 1e-12)
        return mean, np.linalg.pinv(cov + ridge * np.eye(len(cov)))

    @staticmethod
    def _error_scale(vectors: np.ndarray) -> np.ndarray:
        """Each sensor's error spread (root mean square) on normal held-out windows, floored at
        ``ERROR_SCALE_FLOOR`` times the largest so no sensor's error is divided by ~0."""
        rms = np.sqrt(np.mean(np.square(vectors.astype(np.float64)), axis=0))
        top = float(rms.max()) if rms.size and np.isfinite(rms).all() else 1.0
        return np.maximum(rms, max(top * ERROR_SCALE_FLOOR, 1e-12)).astype(np.float32)

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, X: DataLike, y: Any = None, *, on_batch: Optional[Callable[[Progress], None]] = None,
            on_epoch: Optional[Callable[[Progress], None]] = None,
            cancel: Optional[CancelToken] = None) -> "Detector":
        """Fit the scaler, train the model and set ``threshold_`` from the fit data's scores.

        ``y`` is ignored (unsupervised; accepted for scikit-learn's and PyOD's contract).
        ``on_batch`` / ``on_epoch`` receive a :class:`~msda_widgets.engine.training.Progress`;
        ``cancel`` (a :class:`CancelToken`) stops training within one batch and keeps the best
        weights so far. The caller's data is never modified; a failed fit keeps the previous
        fitted state.
        """
        cfg = self.config
        spec = get_spec(cfg.model.model)
        if cfg.model.lookback < spec.min_lookback:
            raise ConfigError(f"{spec.name} needs lookback >= {spec.min_lookback}; got {cfg.model.lookback}.")
        if spec.kind == "score" and cfg.score.score == "mahalanobis":
            raise ConfigError(f"{spec.name} outputs its own score, so it has no error vector for the Mahalanobis "
                              f"score; use score='l2'.")
        layout = self.layout
        t0 = time.perf_counter()
        pipeline = DataPipeline(cfg.data)
        frame = self.as_frame(X)
        sd = pipeline.fit_prepare(frame, min_rows=layout.min_rows(fitting=True))
        lookback, n_rows = cfg.model.lookback, len(sd.values)
        n_val_rows = int(round(n_rows * cfg.train.validation_split))
        # the validation part must hold a window; the training part must keep two
        if n_val_rows < lookback + 1 or n_rows - n_val_rows < lookback + 2:
            n_val_rows = 0
        train_rows = n_rows - n_val_rows
        scaler = Scaler(cfg.data.scaling).fit(sd.values[:train_rows])
        scaled = scaler.transform(sd.values)
        windows = layout.windows(scaled)
        judged = layout.judged(n_rows)
        train_idx = np.flatnonzero(judged < train_rows)
        val_idx = np.flatnonzero(np.arange(len(judged)) >= train_rows) if n_val_rows else np.empty(0, dtype=np.int64)
        inputs, targets = layout.split(windows)
        reconstruct = spec.kind != "forecast"

        def batch_fn(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            x = _tensor(inputs[idx])  # fancy indexing already copies, so no second copy is made
            return (x, x) if reconstruct else (x, _tensor(targets[idx]))

        device = resolve_device(cfg.train.device)
        with torch_runtime(cfg.train.num_threads, cfg.train.seed):
            if cfg.train.seed is None:
                torch.seed()
            model = build_model(cfg.model, sd.values.shape[1]).to(device)
            if hasattr(model, "fit_windows"):
                history = self._fit_closed_form(model, inputs, train_idx, val_idx, batch_fn, device,
                                                on_epoch, cancel)
            else:
                history = train_model(model, batch_fn, train_idx, val_idx, cfg.train, device=device,
                                      on_batch=on_batch, on_epoch=on_epoch, cancel=cancel)
            raw = self._score_module(model, score="l2")
            scores, squared, vectors = self._passes(raw, windows, device, raw=True)
            error_mean = np.zeros(sd.values.shape[1])
            error_precision = np.eye(sd.values.shape[1])
            error_scale = None
            if raw.has_errors:
                if not np.isfinite(squared).all():
                    raise TrainingError(f"The trained network gives NaN or infinite errors on the fit data (its "
                                        f"weights grew too large); lower the learning rate (now "
                                        f"{cfg.train.learning_rate:g}).")
                if cfg.score.standardize_errors:
                    error_scale = self._error_scale(vectors[val_idx if len(val_idx) else train_idx])
                final = self._score_module(model, error_scale=error_scale, score="l2")
                scaled_sq, scaled_vec = final.scale_errors(torch.from_numpy(squared), torch.from_numpy(vectors))
                error_mean, error_precision = self._mahalanobis_stats(scaled_vec.numpy()[train_idx])
                final = self._score_module(model, error_mean, error_precision, error_scale)
                with torch.inference_mode():
                    scores = final.combine(scaled_sq, scaled_vec).numpy()
            elif not np.isfinite(scores).all():
                raise TrainingError("The fitted model gives NaN or infinite scores on the fit data.")
        threshold_scores = scores
        if cfg.score.threshold_on == "holdout" and len(val_idx) >= MIN_HOLDOUT:
            threshold_scores = scores[val_idx]
        threshold = compute_threshold(threshold_scores, cfg.score.threshold, cfg.score.threshold_param)
        full = np.full(n_rows, np.nan)
        full[judged] = scores
        self._set_fitted(_Fitted(
            pipeline=pipeline, scaler=scaler, model=model, device=device, history=history,
            threshold=float(threshold), train_scores=scores, train_index=sd.index[judged],
            threshold_scores=np.array(threshold_scores),
            decision_scores=full[sd.positions], error_mean=error_mean, error_precision=error_precision,
            error_scale=error_scale, background=self._background(windows, train_idx, scores, threshold),
            data_report=sd.report, fit_seconds=time.perf_counter() - t0, versions=_versions()))
        return self

    def _fit_closed_form(self, model: torch.nn.Module, inputs: np.ndarray, train_idx: np.ndarray,
                         val_idx: np.ndarray, batch_fn: Callable, device: torch.device,
                         on_epoch: Optional[Callable[[Progress], None]], cancel: Optional[CancelToken]) -> History:
        """Fit a model that learns in closed form (``fit_windows``) and report it as one epoch."""
        t0 = time.perf_counter()
        if cancel is not None and cancel.cancelled:
            return History((), "cancelled", None, 0.0, len(train_idx), len(val_idx), "Cancelled before fitting.")
        model.fit_windows(np.ascontiguousarray(inputs[train_idx], dtype=np.float32), seed=self.config.train.seed)
        model.to(device)
        if get_spec(self.config.model.model).kind == "score":
            train_loss, val_loss = float("nan"), None
        else:
            train_loss = evaluate_loss(model, batch_fn, train_idx, device)
            val_loss = evaluate_loss(model, batch_fn, val_idx, device) if len(val_idx) else None
        seconds = time.perf_counter() - t0
        record = EpochRecord(1, train_loss, val_loss, seconds, seconds)
        if on_epoch is not None:
            on_epoch(Progress("epoch", 1, 1, 1, 1, 1.0, seconds, 0.0, train_loss, val_loss))
        return History((record,), "completed", 1, seconds, len(train_idx), len(val_idx))

    @staticmethod
    def _background(windows: np.ndarray, train_idx: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
        """Up to BACKGROUND_SIZE normal training windows (score <= threshold), evenly spaced in time,
        in the layout explanations read ``(K, T, S)``. Chosen without randomness, so explanations
        are reproducible; saved with the model."""
        normal = train_idx[scores[train_idx] <= threshold]
        if len(normal) == 0:
            normal = train_idx
        pick = normal[np.unique(np.linspace(0, len(normal) - 1, min(BACKGROUND_SIZE, len(normal))).round().astype(int))]
        return np.ascontiguousarray(windows[pick], dtype=np.float32)

    # -- explanations (see msda_widgets.engine.explain) --------------------------------------
    def explain(self, data: Union[DataLike, Detection], when: Any, method: str = "shap", **options: Any):
        """Attributions of this detector's own anomaly score at ``when`` (a timestamp/label of
        ``data``'s index, or an integer row position). Returns an ``Explanation``."""
        from .explain import explain  # shap and captum load on first use
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
        """Scores, anomaly flags and per-sensor contributions in one pass (a :class:`Detection`,
        in prepared-row order and on the caller's rows)."""
        self._check_fitted()
        frame = self.as_frame(data)
        sd = self.pipeline_.prepare(frame, min_rows=self.layout.min_rows())
        scaled = self.scaler_.transform(sd.values)
        scoring = self.scoring()
        with torch_runtime(self.config.train.num_threads):
            scores, squared, _ = self._passes(scoring.module, scoring.layout.windows(scaled), self.device_, raw=False)
        n_rows, judged = len(sd.values), scoring.layout.judged(len(sd.values))
        row_scores = np.full(n_rows, np.nan)
        row_scores[judged] = scores
        row_contrib = np.full((n_rows, len(sd.sensors)), np.nan)
        if squared is not None:
            row_contrib[judged] = squared
        for a in (row_scores, row_contrib):
            a.flags.writeable = False
        label, labels = aligned_labels(frame, sd)
        return Detection(sd, scoring.layout, row_scores, row_contrib, float(self.threshold_), frame.index,
                         labels, label, self.config.score.min_duration)

    def score(self, data: DataLike) -> pd.Series:
        """Anomaly score per row of ``data`` (NaN where no window judges the row)."""
        return self.detect(data).scores

    def decision_function(self, X: DataLike) -> np.ndarray:
        """PyOD's name for :meth:`score`: a float64 array, one score per row of ``X`` in its own
        order, NaN where no window judges the row (the first rows of the series)."""
        return self.detect(X).scores.to_numpy(dtype=np.float64)

    def predict(self, data: DataLike) -> pd.Series:
        """True where the score is above ``threshold_`` (for ``min_duration`` rows in a row; False
        where there is no score)."""
        return self.detect(data).anomalies

    def contributions(self, data: DataLike) -> pd.DataFrame:
        """Per-sensor squared prediction / reconstruction error (rows x sensors)."""
        return self.detect(data).contributions

    # -- threshold -------------------------------------------------------------------------
    def set_threshold(self, method: Optional[str] = None, param: Optional[float] = None) -> float:
        """Recompute ``threshold_`` from ``threshold_scores_``: no retraining needed."""
        self._check_fitted()
        method = method or self.config.score.threshold
        value = compute_threshold(self.threshold_scores_, method, param)
        self.set_params(threshold=method, threshold_param=param)
        self.threshold_ = value
        return value

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write a bundle (weights, JSON config, scaler, threshold, versions) to ``path``."""
        self._check_fitted()
        if not getattr(self.model_, "savable", True):
            raise ModelFileError(f"A {self.config.model.model!r} detector cannot be saved: its model is a Python "
                                 f"object that only pickle could store, and msda_widgets model files never hold "
                                 f"pickles. Fit it again from the data when you need it.")
        bundle = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": json.dumps(self.config.flat(), default=_json_default),
            "versions": json.dumps(self.versions_),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.model_.state_dict().items()},
            "pipeline": _encode(self.pipeline_.to_state()),
            "scaler": _encode(self.scaler_.to_state()),
            "threshold": float(self.threshold_),
            "train_scores": torch.from_numpy(np.asarray(self.train_scores_, dtype=np.float64)),
            "train_index": _encode_index(self.train_index_),
            "threshold_scores": torch.from_numpy(np.asarray(self.threshold_scores_, dtype=np.float64)),
            "decision_scores": torch.from_numpy(np.asarray(self.decision_scores_, dtype=np.float64)),
            "error_mean": torch.from_numpy(np.asarray(self.error_mean_, dtype=np.float64)),
            "error_precision": torch.from_numpy(np.asarray(self.error_precision_, dtype=np.float64)),
            "error_scale": (torch.from_numpy(np.asarray(self.error_scale_, dtype=np.float32))
                            if self.error_scale_ is not None else None),
            "history": json.dumps(self.history_.to_dict(), default=_json_default),
            "background": torch.from_numpy(self.background_),
            "data_report": _report_state(self.data_report_),
            "fit_seconds": float(self.fit_seconds_),
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
            det = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(bundle["config"]).items()})
            pipeline = DataPipeline.from_state(_decode(bundle["pipeline"]))
            scaler = Scaler.from_state(_decode(bundle["scaler"]))
            model = build_model(det.config.model, len(pipeline.sensors_))
            model.load_state_dict(bundle["state_dict"], strict=True)
            scale = bundle.get("error_scale")
            fitted = _Fitted(
                pipeline=pipeline, scaler=scaler, model=model, device=torch.device("cpu"),
                history=History.from_dict(json.loads(bundle["history"])),
                threshold=float(bundle["threshold"]),
                train_scores=bundle["train_scores"].numpy(),
                train_index=_decode_index(bundle["train_index"]),
                threshold_scores=bundle["threshold_scores"].numpy(),
                decision_scores=bundle["decision_scores"].numpy(),
                error_mean=bundle["error_mean"].numpy(),
                error_precision=bundle["error_precision"].numpy(),
                error_scale=None if scale is None else scale.numpy(),
                background=bundle["background"].numpy(),
                data_report=_report_from(bundle["data_report"]),
                fit_seconds=float(bundle["fit_seconds"]),
                versions=json.loads(bundle.get("versions", "{}")),
            )
            _check_bundle(det, fitted)
        except ModelFileError:
            raise
        except Exception as exc:  # any inconsistency inside the bundle
            detail = f"{type(exc).__name__}: {exc}"[:400]
            raise ModelFileError(f"{name!s} is damaged or inconsistent ({detail}). Fit the detector again "
                                 f"and save it.") from None
        device = resolve_device("cpu" if det.config.train.device == "cuda" and not torch.cuda.is_available()
                                else det.config.train.device)
        det._set_fitted(dataclasses.replace(fitted, model=model.to(device).eval(), device=device))
        return det
