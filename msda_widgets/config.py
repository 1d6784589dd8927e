"""Frozen configuration objects.

A :class:`~msda_widgets.Detector` is described by four small frozen dataclasses. Each field
name is unique across them, so ``Detector(lookback=20, epochs=5)`` can route flat keyword
arguments to the config that owns them. Unknown keys are rejected with a suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "ScoreConfig",
    "DetectorConfig",
    "IMPUTE_MODES",
    "IMPUTE_ALIASES",
]

#: Imputation modes. ``0``, ``1``, ``2`` and ``"backfill"`` are the ancestor msda's names.
IMPUTE_MODES = ("zero", "mean", "median", "ffill", "bfill", "interpolate")
IMPUTE_ALIASES: dict[Any, str] = {0: "zero", 1: "mean", 2: "median", "backfill": "bfill",
                                  "pad": "ffill", "forward": "ffill", "linear": "interpolate"}
DUPLICATE_MODES = ("mean", "first", "last", "error")
SCALINGS = ("minmax", "standard")
SCORES = ("l2", "mahalanobis")
REDUCTIONS = ("last", "window")
DEVICES = ("auto", "cpu", "cuda")
THRESHOLD_SCORES = ("holdout", "fit")
DEFAULT_LABEL_COLUMNS = ("anomaly", "anomalies", "label", "labels", "is_anomaly", "changepoint",
                         "outlier", "target")


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _as_tuple(value: Any, name: str, kind: type | tuple[type, ...]) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = (value,)
    out = tuple(value)
    for v in out:
        if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
            raise ConfigError(f"{name} must contain {getattr(kind, '__name__', kind)} values; got {v!r}")
    return out


def _choice(value: Any, name: str, choices: tuple, aliases: Mapping | None = None) -> str:
    if aliases and not isinstance(value, bool) and value in aliases:
        value = aliases[value]
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}.")
    return value


def _number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
            integer: bool = False, low_open: bool = False, high_open: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'}; got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite; got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(f"{name} must be {'>' if low_open else '>='} {low}; got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(f"{name} must be {'<' if high_open else '<='} {high}; got {value!r}")
    return int(value) if integer else float(value)


class _Config:
    """Shared helpers: construction from a dict that rejects unknown keys, JSON round trip."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        valid = cls.field_names()
        for key in values:
            if key not in valid:
                raise ConfigError(f"Unknown setting {key!r} for {cls.__name__}.{_suggest(key, valid)} "
                                  f"Valid settings: {', '.join(valid)}.")
        return cls(**values)  # type: ignore[call-arg]

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def replace(self, **changes: Any):
        return type(self).from_dict({**self.to_dict(), **changes})


@dataclass(frozen=True)
class DataConfig(_Config):
    """How a table becomes sensor data.

    time_column: ``"auto"`` finds a DatetimeIndex or a date/time column; ``None`` uses row order;
        a name uses that column.
    sensors: the sensor columns to use; ``None`` = every numeric column that is not a label.
    label_columns: columns that are never sensors (ground truth); ``None`` = the usual names
        (``anomaly``, ``label``, ``changepoint``, ...).
    impute: ``zero``, ``mean``, ``median``, ``ffill``, ``bfill`` or ``interpolate`` (the ancestor's
        ``0``, ``1``, ``2`` and ``"backfill"`` are accepted). Mean/median come from the fit data.
    missing_values: sentinel values that mean "missing" (e.g. ``-200`` in the UCI air-quality file).
    duplicates: what to do with repeated timestamps: ``mean``, ``first``, ``last`` or ``error``.
    scaling: ``minmax`` (to [0, 1] on the training part, like the ancestor) or ``standard``.
    drop_constant: drop (and report) constant and all-missing columns instead of refusing.
    """

    time_column: str | None = "auto"
    sensors: tuple[str, ...] | None = None
    label_columns: tuple[str, ...] | None = None
    impute: str = "interpolate"
    missing_values: tuple[float, ...] = ()
    duplicates: str = "mean"
    scaling: str = "minmax"
    drop_constant: bool = True

    def __post_init__(self) -> None:
        s = object.__setattr__
        if self.time_column is not None and not isinstance(self.time_column, str):
            raise ConfigError(f"time_column must be a column name, 'auto' or None; got {self.time_column!r}")
        s(self, "sensors", _as_tuple(self.sensors, "sensors", str))
        if self.sensors is not None and not self.sensors:
            raise ConfigError("sensors is empty; pass None to use every numeric column.")
        s(self, "label_columns", _as_tuple(self.label_columns, "label_columns", str))
        s(self, "impute", _choice(self.impute, "impute", IMPUTE_MODES, IMPUTE_ALIASES))
        mv = _as_tuple(self.missing_values, "missing_values", (int, float)) or ()
        s(self, "missing_values", tuple(float(v) for v in mv))
        s(self, "duplicates", _choice(self.duplicates, "duplicates", DUPLICATE_MODES))
        s(self, "scaling", _choice(self.scaling, "scaling", SCALINGS))
        s(self, "drop_constant", bool(self.drop_constant))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.label_columns if self.label_columns is not None else DEFAULT_LABEL_COLUMNS


@dataclass(frozen=True)
class ModelConfig(_Config):
    """The network. ``model`` names an entry of :data:`msda_widgets.engine.models.MODELS`.

    lookback: time steps in a window (>= 4 for deepcnn, >= 2 for lstm_ae).
    kernel_size, conv_channels, dense_units: the DeepAnT-style CNN's conv blocks and dense layer.
    hidden_sizes: the LSTM autoencoder's encoder sizes; the decoder mirrors them
        (default (128, 64) gives the ancestor's 128-64-64-128).
    dropout: dropout probability in both models.
    n_components: principal components of the ``pca`` model (``None``: 10, or fewer when a window
        holds fewer values).
    n_clusters: clusters of the ``kmeans`` model (``None``: 20).
    n_estimators: trees of the ``iforest`` model.
    """

    model: str = "deepcnn"
    lookback: int = 10
    kernel_size: int = 3
    conv_channels: tuple[int, ...] = (32, 32)
    dense_units: int = 40
    hidden_sizes: tuple[int, ...] = (128, 64)
    dropout: float = 0.2
    n_components: int | None = None
    n_clusters: int | None = None
    n_estimators: int = 100

    def __post_init__(self) -> None:
        s = object.__setattr__
        if not isinstance(self.model, str):
            raise ConfigError(f"model must be a model name; got {self.model!r}")
        s(self, "lookback", _number(self.lookback, "lookback", low=2, integer=True))
        s(self, "kernel_size", _number(self.kernel_size, "kernel_size", low=1, integer=True))
        s(self, "conv_channels", _as_tuple(self.conv_channels, "conv_channels", int))
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise ConfigError(f"conv_channels must be positive integers; got {self.conv_channels!r}")
        s(self, "dense_units", _number(self.dense_units, "dense_units", low=1, integer=True))
        s(self, "hidden_sizes", _as_tuple(self.hidden_sizes, "hidden_sizes", int))
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError(f"hidden_sizes must be positive integers; got {self.hidden_sizes!r}")
        s(self, "dropout", _number(self.dropout, "dropout", low=0, high=1, high_open=True))
        for name in ("n_components", "n_clusters"):
            if getattr(self, name) is not None:
                s(self, name, _number(getattr(self, name), name, low=1, integer=True))
        s(self, "n_estimators", _number(self.n_estimators, "n_estimators", low=1, integer=True))


@dataclass(frozen=True)
class TrainConfig(_Config):
    """Training: Adam + MSE on shuffled windows, chronological validation split, early stopping.

    validation_split: fraction of the (time-ordered) windows held out at the end for validation
        (0 disables validation; early stopping then watches the training loss).
    patience: epochs without a validation improvement of more than ``min_delta`` before stopping
        (0 disables early stopping). The best weights are restored.
    seed: makes weights, shuffling and dropout reproducible (bit-identical on CPU).
    device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    num_threads: torch CPU threads while fitting/scoring; ``None`` = number of cores (max 8).
        The process-wide setting is restored afterwards.
    """

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    validation_split: float = 0.1
    patience: int = 5
    min_delta: float = 1e-5
    seed: int | None = 0
    device: str = "auto"
    num_threads: int | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "epochs", _number(self.epochs, "epochs", low=1, integer=True))
        s(self, "batch_size", _number(self.batch_size, "batch_size", low=1, integer=True))
        s(self, "learning_rate", _number(self.learning_rate, "learning_rate", low=0, low_open=True))
        s(self, "validation_split", _number(self.validation_split, "validation_split", low=0, high=0.9))
        s(self, "patience", _number(self.patience, "patience", low=0, integer=True))
        s(self, "min_delta", _number(self.min_delta, "min_delta", low=0))
        if self.seed is not None:
            s(self, "seed", _number(self.seed, "seed", low=0, integer=True))
        s(self, "device", _choice(self.device, "device", DEVICES))
        if self.num_threads is not None:
            s(self, "num_threads", _number(self.num_threads, "num_threads", low=1, integer=True))


@dataclass(frozen=True)
class ScoreConfig(_Config):
    """Scores and threshold.

    score: ``l2`` (norm of the prediction/reconstruction error, the ancestor's score) or
        ``mahalanobis`` (distance of the error vector under the training errors' covariance).
    reduction: for the autoencoder, ``last`` judges a timestamp by the error of the last step of
        the window ending there; ``window`` by the mean error over that whole window.
    threshold: a name in :data:`msda_widgets.engine.thresholds.THRESHOLDS` (``quantile``,
        ``ksigma``, ``pot``, ``fixed``); ``threshold_param`` its parameter (``None`` = its default).
    standardize_errors: divide each sensor's error by its spread (root mean square) on normal
        held-out data (the validation tail; the training windows without one), so that a sensor
        with a large normal error dominates neither the score nor its explanation.
    threshold_on: which scores a threshold is computed from: ``holdout`` (the held-out validation
        tail, which the model was not fitted on, when it has at least 50 scored windows; otherwise
        every fit window) or ``fit`` (every window of the fit data).
    min_duration: a row is flagged only when it and the ``min_duration - 1`` rows before it all
        score above the threshold (a causal persistence rule: it never looks ahead); 1 = no rule.
    """

    score: str = "l2"
    reduction: str = "last"
    threshold: str = "quantile"
    threshold_param: float | None = None
    standardize_errors: bool = False
    threshold_on: str = "holdout"
    min_duration: int = 1

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "score", _choice(self.score, "score", SCORES))
        s(self, "reduction", _choice(self.reduction, "reduction", REDUCTIONS))
        if not isinstance(self.threshold, str):
            raise ConfigError(f"threshold must be a method name; got {self.threshold!r}")
        if self.threshold_param is not None:
            s(self, "threshold_param", _number(self.threshold_param, "threshold_param"))
        if not isinstance(self.standardize_errors, bool) and type(self.standardize_errors).__name__ != "bool_":
            raise ConfigError(f"standardize_errors must be True or False; got {self.standardize_errors!r}")
        s(self, "standardize_errors", bool(self.standardize_errors))
        s(self, "threshold_on", _choice(self.threshold_on, "threshold_on", THRESHOLD_SCORES))
        s(self, "min_duration", _number(self.min_duration, "min_duration", low=1, integer=True))


_PARTS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "score": ScoreConfig}


@dataclass(frozen=True)
class DetectorConfig:
    """All settings of a Detector: one frozen value, built from flat keyword arguments."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    @classmethod
    def from_flat(cls, **settings: Any) -> "DetectorConfig":
        owners = {name: part for part, klass in _PARTS.items() for name in klass.field_names()}
        grouped: dict[str, dict[str, Any]] = {part: {} for part in _PARTS}
        for key, value in settings.items():
            if key not in owners:
                raise ConfigError(f"Unknown setting {key!r}.{_suggest(key, list(owners))} "
                                  f"Valid settings: {', '.join(owners)}.")
            grouped[owners[key]][key] = value
        return cls(**{part: klass.from_dict(grouped[part]) for part, klass in _PARTS.items()})

    def flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in _PARTS:
            out.update(getattr(self, part).to_dict())
        return out

    def replace(self, **settings: Any) -> "DetectorConfig":
        return DetectorConfig.from_flat(**{**self.flat(), **settings})
