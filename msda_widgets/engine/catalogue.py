"""What the engine offers, without importing torch: models and explanation methods.

This is the one place where a model or an explanation method is *described*: its name, one
description, what kind of model it is and which explanations serve it. The model registry
(:mod:`msda_widgets.engine.models`, torch) and the explainer registry
(:mod:`msda_widgets.engine.explain`, shap / captum) take their descriptions from here, and the
dashboard builds its menus from here, so a page can list what exists before any heavy import.

Kinds (see :mod:`msda_widgets.engine.layout`): ``forecast``, ``reconstruct`` and ``score``.
A ``differentiable`` model is explained by every gradient method; a model that is not (a forest,
a PyOD detector) only by the perturbation methods (``kernel_shap``, ``lime``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

from ..errors import ConfigError
from .layout import KINDS

__all__ = ["ModelInfo", "MethodInfo", "add_model", "add_method", "model_info", "method_info", "models",
           "methods", "methods_for", "MODEL_INFO", "METHOD_INFO"]


@dataclass(frozen=True)
class ModelInfo:
    """A model's entry: ``kind`` (forecast / reconstruct / score), ``differentiable`` (gradient
    explanations apply), ``family`` (``deep``: a trained network; ``baseline``: a closed-form or
    classical detector; ``adapter``: a third-party detector), the smallest lookback."""

    name: str
    label: str
    description: str
    kind: str
    differentiable: bool = True
    family: str = "deep"
    min_lookback: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"Model kind must be one of {', '.join(map(repr, KINDS))}; got {self.kind!r}.")


@dataclass(frozen=True)
class MethodInfo:
    """An explanation method's entry. ``kinds``: the model kinds it explains; ``gradients``: it
    needs a differentiable model; ``models``: only these model names (``None``: any); ``needs``: in
    words, what it requires beyond that; ``additive``: its values sum to ``score - base_value``;
    ``per_sensor_errors``: it reads the model's per-sensor errors (not a ``score`` model)."""

    name: str
    description: str
    kinds: tuple[str, ...] = KINDS
    gradients: bool = True
    additive: bool = False
    models: Optional[tuple[str, ...]] = None
    needs: str = ""
    per_sensor_errors: bool = False

    def serves(self, model: ModelInfo) -> bool:
        """Whether this method can explain ``model``."""
        if model.kind not in self.kinds:
            return False
        if self.gradients and not model.differentiable:
            return False
        if self.per_sensor_errors and model.kind == "score":
            return False
        return self.models is None or model.name in self.models


MODEL_INFO: dict[str, ModelInfo] = {}
METHOD_INFO: dict[str, MethodInfo] = {}
_LOCK = threading.Lock()


def add_model(info: ModelInfo, *, replace: bool = False) -> None:
    with _LOCK:
        if info.name in MODEL_INFO and not replace and MODEL_INFO[info.name] != info:
            raise ConfigError(f"A model named {info.name!r} is already registered.")
        MODEL_INFO[info.name] = info


def add_method(info: MethodInfo, *, replace: bool = False) -> None:
    with _LOCK:
        if info.name in METHOD_INFO and not replace and METHOD_INFO[info.name] != info:
            raise ConfigError(f"An explanation method named {info.name!r} is already registered.")
        METHOD_INFO[info.name] = info


def model_info(name: str) -> ModelInfo:
    try:
        return MODEL_INFO[name]
    except KeyError:
        raise ConfigError(f"Unknown model {name!r}; choose one of {', '.join(map(repr, MODEL_INFO))}.") from None


def method_info(name: str) -> MethodInfo:
    try:
        return METHOD_INFO[name]
    except (KeyError, TypeError):
        raise ConfigError(f"Unknown explanation method {name!r}; choose one of "
                          f"{', '.join(map(repr, METHOD_INFO))}.") from None


def models() -> tuple[ModelInfo, ...]:
    return tuple(MODEL_INFO.values())


def methods() -> tuple[MethodInfo, ...]:
    return tuple(METHOD_INFO.values())


def methods_for(model: str) -> tuple[MethodInfo, ...]:
    """The explanation methods that serve the model named ``model``, in catalogue order."""
    info = model_info(model)
    return tuple(m for m in METHOD_INFO.values() if m.serves(info))


# -- the built-in models ------------------------------------------------------------------------
for _info in (
    ModelInfo("deepcnn", "DeepCNN forecaster",
              "DeepAnT-style 1-D CNN that forecasts the next time step; score = forecast error.",
              "forecast", min_lookback=4),
    ModelInfo("lstm_ae", "LSTM autoencoder",
              "Stacked LSTM autoencoder that reconstructs the window; score = reconstruction error.",
              "reconstruct", min_lookback=2),
    ModelInfo("pca", "PCA reconstruction",
              "Principal components of the flattened windows; score = the error of the window's projection "
              "on them (fitted in closed form, no training).", "reconstruct", family="baseline", min_lookback=2),
    ModelInfo("zscore", "z-score",
              "Each sensor's deviation from its training mean; with standardized errors, the z-score "
              "(fitted in closed form, no training).", "reconstruct", family="baseline", min_lookback=2),
    ModelInfo("kmeans", "k-means distance (KMeansAD)",
              "k-means clusters of the flattened windows; score = the distance of a window to its nearest "
              "centroid (fitted in closed form, no training).", "reconstruct", family="baseline", min_lookback=2),
    ModelInfo("iforest", "Isolation forest",
              "An isolation forest on the flattened windows; score = how quickly random splits isolate the "
              "window (not differentiable: explained by kernel SHAP and LIME).", "score", differentiable=False,
              family="baseline", min_lookback=2),
):
    add_model(_info)

# -- the built-in explanation methods -------------------------------------------------------------
_CNN = "a CNN (a network with convolution layers over time, such as 'deepcnn')"
for _method in (
    MethodInfo("error", "Each sensor's squared prediction / reconstruction error at this timestamp (its "
               "share of the squared score); exact and instant.", gradients=False, per_sensor_errors=True),
    MethodInfo("shap", "SHAP expected gradients: how much each sensor and time step moved the score away "
               "from its average over normal windows.", additive=True),
    MethodInfo("kernel_shap", "Kernel SHAP over sensors: each sensor's exact share of the score gap to a "
               "typical normal window (model-agnostic, slower).", gradients=False, additive=True),
    MethodInfo("saliency", "Gradient magnitude: where a small change of the input moves the score most "
               "(sensitivity, not contribution)."),
    MethodInfo("input_x_gradient", "Input times gradient: a first-order contribution of each cell relative "
               "to an all-zero input."),
    MethodInfo("integrated_gradients", "Integrated gradients from a typical normal window to this one: "
               "contributions that add up to the score gap.", additive=True),
    MethodInfo("grad_cam", "Grad-CAM on the CNN's last convolution: which time steps of the window the "
               "network looked at (time only, not sensors).", kinds=("forecast",), needs=_CNN),
    MethodInfo("lime", "LIME over sensors: a local linear fit of the score to which sensors are kept or "
               "replaced by normal values.", gradients=False),
):
    add_method(_method)
