"""Model registry: the networks a Detector can train.

Each entry is a :class:`ModelSpec` whose ``kind`` says what the network outputs (see
:mod:`msda_widgets.engine.layout`):

* ``"forecast"``: input window ``(B, L, S)`` -> the next step ``(B, S)``;
* ``"reconstruct"``: input window ``(B, L, S)`` -> the same window ``(B, L, S)``;
* ``"score"``: input window ``(B, L, S)`` -> an anomaly score ``(B,)`` (a black box).

A module with a ``fit_windows(inputs, seed=None)`` method learns in closed form from the training
windows instead of by gradient descent. Names and descriptions live in the torch-free
:mod:`~msda_widgets.engine.catalogue`; :func:`register_model` adds to both. The Detector, the
training loop and the explanations only rely on ``kind`` and on ``forward``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from . import catalogue
from .baselines import IForestModel, KMeansModel, PCAModel, ZScoreModel
from .layout import KINDS

__all__ = ["ModelSpec", "MODELS", "register_model", "build_model", "get_spec", "DeepCNN",
           "LSTMAutoencoder"]


class DeepCNN(nn.Module):
    """DeepAnT-style forecaster (Munir et al., 2019).

    Conv1d runs over *time* with the sensors as input channels (the ancestor convolved over the
    sensor axis and hard-coded ``Linear(80, 40)``, which only fitted 26 sensors with lookback 10).
    Each block is Conv1d -> ReLU -> MaxPool1d(2); the flattened size is computed from the
    lookback, so any number of sensors and any lookback >= 4 work.
    """

    kind = "forecast"

    def __init__(self, n_sensors: int, lookback: int, conv_channels=(32, 32), kernel_size: int = 3,
                 dense_units: int = 40, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        channels, length = n_sensors, lookback
        for out in conv_channels:
            layers += [nn.Conv1d(channels, out, kernel_size, padding="same"), nn.ReLU(),
                       nn.MaxPool1d(2, ceil_mode=True)]
            channels, length = out, math.ceil(length / 2)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * length, dense_units),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dense_units, n_sensors),
        )

    @property
    def conv_layers(self) -> list[nn.Conv1d]:
        return [m for m in self.features if isinstance(m, nn.Conv1d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, S) -> (B, S)
        return self.head(self.features(x.transpose(1, 2)))


class LSTMAutoencoder(nn.Module):
    """Stacked LSTM autoencoder (the ancestor's 128-64 | repeat | 64-128, dropout 0.2).

    The LSTMs are ``batch_first=True`` and recur over the window's time steps (the ancestor
    passed batch-first tensors to ``batch_first=False`` layers, recurring over the batch).
    The encoder's last hidden state is repeated ``lookback`` times and decoded; a linear layer
    maps each decoded step back to the sensors.
    """

    kind = "reconstruct"

    def __init__(self, n_sensors: int, lookback: int, hidden_sizes=(128, 64), dropout: float = 0.2):
        super().__init__()
        self.lookback = lookback
        enc_sizes = [n_sensors, *hidden_sizes]
        dec_sizes = [hidden_sizes[-1], *reversed(hidden_sizes)]
        self.encoder = nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in zip(enc_sizes, enc_sizes[1:]))
        self.decoder = nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in zip(dec_sizes, dec_sizes[1:]))
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(dec_sizes[-1], n_sensors)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, S) -> (B, H)
        h = x
        for i, lstm in enumerate(self.encoder):
            h, _ = lstm(h)
            if i < len(self.encoder) - 1:
                h = self.dropout(h)
        return h[:, -1]

    def decode(self, z: torch.Tensor, steps: int) -> torch.Tensor:  # (B, H) -> (B, L, S)
        h = z.unsqueeze(1).expand(-1, steps, -1)
        for lstm in self.decoder:
            h, _ = lstm(h)
            h = self.dropout(h)
        return self.output(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, S) -> (B, L, S)
        return self.decode(self.encode(x), x.shape[1])


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build its module, and its catalogue entry (``info``)."""

    name: str
    kind: str                      # "forecast" | "reconstruct" | "score"
    build: Callable[[int, ModelConfig], nn.Module]
    min_lookback: int
    description: str
    label: str = ""
    differentiable: bool = True
    family: str = "deep"

    @property
    def info(self) -> catalogue.ModelInfo:
        return catalogue.ModelInfo(self.name, self.label or self.name, self.description, self.kind,
                                   self.differentiable, self.family, self.min_lookback)

    @classmethod
    def from_catalogue(cls, name: str, build: Callable[[int, ModelConfig], nn.Module]) -> "ModelSpec":
        info = catalogue.model_info(name)
        return cls(info.name, info.kind, build, info.min_lookback, info.description, info.label,
                   info.differentiable, info.family)


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, *, replace: bool = False) -> None:
    """Add a model to the registry and the catalogue (its name must be new unless ``replace``)."""
    if spec.name in MODELS and not replace:
        raise ConfigError(f"A model named {spec.name!r} is already registered.")
    if spec.kind not in KINDS:
        raise ConfigError(f"Model kind must be one of {', '.join(map(repr, KINDS))}; got {spec.kind!r}.")
    catalogue.add_model(spec.info, replace=True)
    MODELS[spec.name] = spec


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"Unknown model {name!r}; choose one of {', '.join(map(repr, MODELS))}.") from None


def build_model(config: ModelConfig, n_sensors: int) -> nn.Module:
    """Build the network named by ``config.model`` for ``n_sensors`` sensors."""
    spec = get_spec(config.model)
    if config.lookback < spec.min_lookback:
        raise ConfigError(f"{spec.name} needs lookback >= {spec.min_lookback}; got {config.lookback}.")
    if n_sensors < 1:
        raise ConfigError("A model needs at least one sensor.")
    return spec.build(n_sensors, config)


register_model(ModelSpec.from_catalogue(
    "deepcnn", lambda n, c: DeepCNN(n, c.lookback, c.conv_channels, c.kernel_size, c.dense_units, c.dropout)))
register_model(ModelSpec.from_catalogue(
    "lstm_ae", lambda n, c: LSTMAutoencoder(n, c.lookback, c.hidden_sizes, c.dropout)))
register_model(ModelSpec.from_catalogue("pca", lambda n, c: PCAModel(n, c.lookback, c.n_components)))
register_model(ModelSpec.from_catalogue("zscore", lambda n, c: ZScoreModel(n, c.lookback)))
register_model(ModelSpec.from_catalogue("kmeans", lambda n, c: KMeansModel(n, c.lookback, c.n_clusters)))
register_model(ModelSpec.from_catalogue("iforest", lambda n, c: IForestModel(n, c.lookback, c.n_estimators)))
