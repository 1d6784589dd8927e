"""Explanations of the detector's own anomaly score: which sensors, at which time steps, made a
timestamp anomalous.

Everything here explains the *detector itself*, never a surrogate: :func:`score_module` turns a
fitted :class:`~msda_widgets.engine.detector.Detector` into a differentiable ``torch.nn.Module``
that maps a window to exactly the score ``Detector.score`` gives (L2 or Mahalanobis, ``last`` or
``window`` reduction), and every attribution method works on that module.

The input layout (the :class:`~msda_widgets.engine.layout.WindowLayout`, shared with ``Detector.background_``) is a
``(T, S)`` window of scaled values:

* forecaster (``deepcnn``): ``T = lookback + 1``, the ``lookback`` input steps at offsets
  ``-lookback .. -1`` and then the *observed* step at offset ``0`` (the one the score judges);
* autoencoder (``lstm_ae``): ``T = lookback``, offsets ``-(lookback - 1) .. 0``; offset ``0`` is
  the judged row.

Methods (the :data:`EXPLAINERS` registry; add one with :func:`register_explainer`):

``error``
    Each sensor's squared error at the judged step (``reduction="window"``: its mean over the
    window, spread over the window's steps). Base value 0. For the L2 score the values sum to
    ``score**2``: read them as *shares of the squared score*. Free (one forward pass).
``shap``
    Expected gradients (``shap.GradientExplainer``) against the detector's background of normal
    training windows. Base value ``E[score]`` over the background. A Monte-Carlo estimate (one
    random reference and one random point on the straight path to it per sample): the values sum
    to ``score - base_value`` up to ``delta``, almost all of it from the random path points. The
    default ``nsamples`` (:data:`SHAP_NSAMPLES`: 500 for a forecaster, 300 for an autoencoder)
    keeps a click under 50 ms for 26 sensors x lookback 10 on 2 cores; we state
    ``|delta| <= 0.2 * |score - base_value| + 0.01`` for the CNN forecaster and
    ``|delta| <= 0.5 * |score - base_value| + 0.01`` for the LSTM autoencoder
    (:data:`SHAP_TOLERANCE`). Measured over many rows and seeds the median gap is about 1-5 %
    (CNN) and 2-14 % (LSTM) of ``score - base_value``, the worst 17 % and 41 %. The error falls
    like ``1 / sqrt(nsamples)``: pass a larger ``nsamples`` for a tighter sum. ``explain_many``
    stacks up to 64 rows into one shap call; every row gets the same random draws as a call on
    that row alone, so a batch gives the same values as ``explain`` row by row.
``kernel_shap``
    ``shap.KernelExplainer`` with the *sensors* as players: a coalition keeps the present sensors'
    columns and replaces the absent ones, over the whole window, by the mean background window.
    Exactly efficient (the values sum to ``score - score(baseline)``); exact Shapley values when
    all ``2**S - 2`` coalitions fit in ``nsamples`` (``S <= 11`` at the default 2048), else a
    seeded sample. A sensor's value is spread uniformly over the window's ``T`` steps (so the
    per-step cells are ``value / T``).
``saliency``, ``input_x_gradient``
    captum's gradient magnitude ``|d score / d x|`` and ``x * d score / d x``; not additive,
    base value 0.
``integrated_gradients``
    captum's integrated gradients from the baseline *mean background window* (a typical normal
    window) to the input. Base value = the score at that baseline; ``delta`` is captum's
    convergence delta (``sum(values) - (score - base_value)``).
``grad_cam``
    CNN only: the last convolution block's feature maps (after its ReLU, before pooling)
    weighted by their time-averaged gradients, ReLU, linearly upsampled to the ``lookback``
    input steps; the observed step (offset 0) gets 0. It attributes *time steps* only: each
    step's value is split equally over the sensors (``by_time_only=True``; ``by_sensor`` is
    then uniform and carries no information). For an anomaly score the weighted map is often
    negative at every step, and the ReLU then leaves all zeros (about 70 % of flagged rows in our
    tests): read that as "no step of the window raises the score through the CNN's features" -
    typically the anomaly is in the observed step itself, which the CNN does not see.
``lime``
    captum's LIME with the sensors as features (each sensor's column over the whole window is
    one feature, masked by the mean background window), a ridge surrogate (``alpha=1``, as in
    the original LIME) and an exponential kernel of width 0.25 on the cosine distance in the
    binary sensor space. Not additive; a sensor's coefficient is spread uniformly over ``T``.

No explanation has side effects: the model's train/eval modes, every parameter's
``requires_grad`` and ``.grad``, the model's hooks, torch's thread count and the global torch and
numpy random states are restored afterwards, also when a method raises. The same input and seed
give identical values.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import math
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import ConfigError, DataError
from . import catalogue
from .layout import KINDS, WindowLayout
from .models import DeepCNN, LSTMAutoencoder
from .results import Detection
from .scoring import TINY as _TINY
from .scoring import ScoreModule, Scoring
from .training import torch_runtime

__all__ = [
    "Explanation",
    "ExplanationSet",
    "ExplainMethod",
    "ExplainContext",
    "Attribution",
    "ScoreModule",
    "EXPLAINERS",
    "register_explainer",
    "score_module",
    "explain",
    "explain_many",
    "activations",
    "offsets_for",
    "ACTIVATION_TAPS",
    "SHAP_NSAMPLES",
    "SHAP_TOLERANCE",
]

#: Default number of expected-gradient samples per explained row ("shap"), per model kind: about the
#: most that keeps a click under 50 ms for 26 sensors x lookback 10 on 2 CPU cores (the CNN's cost
#: is mostly shap's per-sample Python loop, the LSTM autoencoder's its forward/backward passes).
SHAP_NSAMPLES = {"forecast": 500, "reconstruct": 300}
#: Stated additivity tolerance of "shap" at the default nsamples, per model kind: (relative, absolute),
#: i.e. ``|delta| <= relative * |score - base_value| + absolute``.
SHAP_TOLERANCE = {"forecast": (0.2, 0.01), "reconstruct": (0.5, 0.01)}
#: Default coalitions evaluated by "kernel_shap" (all 2**S - 2 when fewer: then it is exact).
KERNEL_SHAP_NSAMPLES = 2048
#: Default straight-line steps of "integrated_gradients".
IG_STEPS = 32
#: Default perturbed samples of "lime".
LIME_SAMPLES = 256
#: Windows per forward/backward pass in batched methods, per model kind (bounds memory; the CNN gets
#: faster per window up to large batches, the LSTM's per-window cost grows past about 1000).
WINDOWS_PER_PASS = {"forecast": 8192, "reconstruct": 1024, "score": 1024}
#: Rows explained per shap call in explain_many.
SHAP_ROWS_PER_CALL = 64
#: Width of LIME's exponential kernel on the cosine distance between coalitions.
LIME_KERNEL_WIDTH = 0.25


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------

def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _json_label(v: Any) -> Any:
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


@dataclass(frozen=True, eq=False)
class Explanation:
    """Attributions of the detector's anomaly score at one row.

    ``values``, ``inputs`` and ``raw`` are ``(T, S)`` arrays in the window layout (see the module
    docstring): ``offsets`` labels their rows, ``sensors`` their columns. ``base_value`` is the
    reference the values are relative to; for an additive method ``delta`` is
    ``values.sum() - (score - base_value)``, else ``None``. ``seconds`` is the wall time of the
    attribution (for a batch: the batch's time divided by its rows).
    """

    when: Any
    position: int
    method: str
    values: np.ndarray
    offsets: np.ndarray
    sensors: tuple[str, ...]
    inputs: np.ndarray
    raw: np.ndarray
    base_value: float
    score: float
    threshold: float
    seconds: float
    delta: Optional[float] = None
    by_time_only: bool = False

    @property
    def by_sensor(self) -> pd.Series:
        """Each sensor's total over time, sorted by absolute value (largest first). For
        ``by_time_only`` methods (grad_cam) it is uniform and says nothing about sensors."""
        totals = self.values.sum(axis=0)
        order = np.argsort(-np.abs(totals), kind="stable")
        return pd.Series(totals[order], index=pd.Index([self.sensors[i] for i in order], name="sensor"),
                         name="attribution")

    @property
    def by_time(self) -> pd.Series:
        """Each time step's total over the sensors, indexed by offset."""
        return pd.Series(self.values.sum(axis=1), index=pd.Index(self.offsets, name="offset"), name="attribution")

    @property
    def matrix(self) -> pd.DataFrame:
        """``values`` as a frame: index = offsets (``"offset"``), columns = sensors."""
        return pd.DataFrame(self.values, index=pd.Index(self.offsets, name="offset"),
                            columns=pd.Index(self.sensors, name="sensor"))

    @property
    def top_sensors(self) -> list[str]:
        return list(self.by_sensor.index)

    @property
    def is_anomaly(self) -> bool:
        return self.score > self.threshold

    def to_dict(self) -> dict:
        """A JSON-safe summary (plain lists, floats and strings)."""
        by_sensor = self.by_sensor
        return {
            "when": _json_label(self.when),
            "position": int(self.position),
            "method": self.method,
            "score": float(self.score),
            "threshold": float(self.threshold),
            "base_value": float(self.base_value),
            "delta": None if self.delta is None else float(self.delta),
            "seconds": float(self.seconds),
            "by_time_only": bool(self.by_time_only),
            "sensors": list(self.sensors),
            "offsets": [int(o) for o in self.offsets],
            "by_sensor": {str(k): float(v) for k, v in by_sensor.items()},
            "top_sensors": [str(s) for s in by_sensor.index],
            "values": self.values.tolist(),
            "inputs": self.inputs.astype(np.float64).tolist(),
            "raw": self.raw.tolist(),
        }

    def _shap_parts(self, by: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if by == "sensor":
            return self.values.sum(axis=0), np.asarray(self.raw[-1], dtype=np.float64), list(self.sensors)
        if by == "cell":
            names = [f"{s}@{int(o)}" for o in self.offsets for s in self.sensors]
            return self.values.reshape(-1), np.asarray(self.raw, dtype=np.float64).reshape(-1), names
        raise ConfigError(f"by={by!r} is not 'sensor' or 'cell'.")

    def to_shap(self, by: str = "sensor") -> Any:
        """This explanation as a ``shap.Explanation`` that ``shap.plots`` accept (waterfall, bar,
        force): ``by="sensor"`` gives one value per sensor (its total over the window; ``data`` is
        the observed raw value at the judged step), ``by="cell"`` one per (sensor, offset) cell
        named ``"sensor@offset"``. ``base_values`` is :attr:`base_value`, so for an additive method
        ``values.sum() + base_values`` is the score up to :attr:`delta`."""
        import shap
        values, data, names = self._shap_parts(by)
        return shap.Explanation(values=values, base_values=float(self.base_value), data=data,
                                feature_names=names)

    def __repr__(self) -> str:
        top = ", ".join(self.top_sensors[:3])
        return (f"Explanation(method={self.method!r}, when={self.when!r}, score={self.score:.4g}, "
                f"threshold={self.threshold:.4g}, base_value={self.base_value:.4g}, top=[{top}])")


@dataclass(frozen=True, eq=False)
class ExplanationSet:
    """The explanations of many rows by one method, with the total wall time."""

    explanations: tuple[Explanation, ...]
    method: str
    seconds: float

    def __len__(self) -> int:
        return len(self.explanations)

    def __iter__(self) -> Iterator[Explanation]:
        return iter(self.explanations)

    def __getitem__(self, i: int) -> Explanation:
        return self.explanations[i]

    @property
    def global_importance(self) -> pd.Series:
        """Mean absolute per-sensor total over the explanations, largest first."""
        if not self.explanations:
            return pd.Series([], index=pd.Index([], name="sensor"), name="importance", dtype=np.float64)
        sensors = self.explanations[0].sensors
        totals = np.abs(np.stack([e.values.sum(axis=0) for e in self.explanations])).mean(axis=0)
        order = np.argsort(-totals, kind="stable")
        return pd.Series(totals[order], index=pd.Index([sensors[i] for i in order], name="sensor"),
                         name="importance")

    def to_frame(self) -> pd.DataFrame:
        """One row per explanation: ``when``, ``position``, ``score``, ``base_value``, ``delta``,
        ``top_sensor``, ``top_sensors`` (the three largest, comma-joined), then one column per
        sensor with its total over time."""
        head = ["when", "position", "score", "base_value", "delta", "top_sensor", "top_sensors"]
        if not self.explanations:
            return pd.DataFrame(columns=head)
        sensors = list(self.explanations[0].sensors)
        rows = []
        for e in self.explanations:
            top = e.top_sensors
            rows.append([e.when, e.position, e.score, e.base_value,
                         np.nan if e.delta is None else e.delta, top[0], ", ".join(top[:3])])
        frame = pd.DataFrame(rows, columns=head)
        totals = pd.DataFrame(np.stack([e.values.sum(axis=0) for e in self.explanations]), columns=sensors)
        return pd.concat([frame, totals], axis=1)

    def to_shap(self, by: str = "sensor") -> Any:
        """All explanations as one ``shap.Explanation`` of shape ``(n, features)`` (see
        :meth:`Explanation.to_shap`), e.g. for ``shap.plots.bar`` or ``shap.plots.beeswarm``."""
        import shap
        if not self.explanations:
            raise ConfigError("This ExplanationSet is empty: there is nothing to convert.")
        parts = [e._shap_parts(by) for e in self.explanations]
        return shap.Explanation(values=np.stack([p[0] for p in parts]),
                                base_values=np.array([e.base_value for e in self.explanations]),
                                data=np.stack([p[1] for p in parts]), feature_names=parts[0][2])

    def __repr__(self) -> str:
        return f"ExplanationSet(method={self.method!r}, {len(self.explanations)} explanations, {self.seconds:.3g} s)"


# --------------------------------------------------------------------------------------------
# the score as a module
# --------------------------------------------------------------------------------------------

def score_module(det: Any) -> ScoreModule:
    """The fitted detector's anomaly score as a differentiable module ``(B, T, S) -> (B,)``: the
    very module ``det.detect`` scores through (``det.scoring().module``), sharing its network."""
    return det.scoring().module


# --------------------------------------------------------------------------------------------
# isolation: explanations leave no trace
# --------------------------------------------------------------------------------------------

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks_with_kwargs")


@contextlib.contextmanager
def _isolated(scoring: Scoring) -> Iterator[None]:
    """Eval mode, no parameter gradients, the detector's thread setting and private RNG states;
    everything (modes, requires_grad, .grad, hooks, threads, torch and numpy RNG) is put back on
    exit, also after an exception."""
    model = scoring.model
    with _model_lock(model):
        modules = list(model.modules())
        modes = [m.training for m in modules]
        hooks = [{name: dict(getattr(m, name)) for name in _HOOK_DICTS if hasattr(m, name)} for m in modules]
        params = list(model.parameters())
        saved = [(p.requires_grad, p.grad) for p in params]
        np_state = np.random.get_state()
        device = scoring.device
        cuda = device.type == "cuda"
        rng_devices = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(torch_runtime(scoring.num_threads))
                stack.enter_context(torch.random.fork_rng(devices=rng_devices))
                stack.enter_context(torch.enable_grad())
                if cuda:  # cuDNN's RNN backward refuses eval mode; the native kernels do not
                    stack.enter_context(torch.backends.cudnn.flags(enabled=False))
                for m in modules:
                    m.training = False
                for p in params:
                    p.requires_grad_(False)
                yield
        finally:
            for m, mode in zip(modules, modes):
                m.training = mode
            for p, (requires_grad, grad) in zip(params, saved):
                p.requires_grad_(requires_grad)
                p.grad = grad
            for m, dicts in zip(modules, hooks):
                for name, before in dicts.items():
                    live = getattr(m, name)
                    if list(live.keys()) != list(before.keys()):
                        live.clear()
                        live.update(before)
            np.random.set_state(np_state)


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG (used inside shap) and restore its state afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# --------------------------------------------------------------------------------------------
# the per-detector context (cached)
# --------------------------------------------------------------------------------------------

@dataclass(eq=False)
class ExplainContext:
    """What every method gets, built once per fitted state (``Detector.scoring()``) and cached.

    ``kind`` is the model's kind (``forecast``, ``reconstruct`` or ``score``); ``module`` the
    score; ``background`` the detector's normal training windows ``(K, T, S)`` as a tensor on the
    model's device; ``baseline`` their mean window ``(1, T, S)``; ``background_scores`` their
    scores and ``baseline_score`` the baseline's. ``store`` is a scratch dict for methods to keep
    per-detector objects (e.g. a shap explainer).
    """

    kind: str
    module: ScoreModule
    background: torch.Tensor
    baseline: torch.Tensor
    background_scores: torch.Tensor
    baseline_score: float
    sensors: tuple[str, ...]
    offsets: np.ndarray
    store: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.background.device

    @property
    def model(self) -> nn.Module:
        return self.module.model

    @property
    def pass_size(self) -> int:
        """Windows per forward/backward pass (:data:`WINDOWS_PER_PASS` of the kind)."""
        return WINDOWS_PER_PASS[self.kind]

    def rows_per_pass(self, windows_per_row: int = 1) -> int:
        return max(1, self.pass_size // max(1, windows_per_row))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of many windows without gradients, in passes of ``pass_size``."""
        if len(x) == 0:
            return torch.zeros(0, dtype=x.dtype, device=x.device)
        step = self.pass_size
        with torch.no_grad():
            return torch.cat([self.module(x[i:i + step]) for i in range(0, len(x), step)])


_CACHE: "weakref.WeakKeyDictionary[Scoring, ExplainContext]" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()
_MODEL_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()


def _model_lock(model: nn.Module) -> threading.RLock:
    """One lock per network: explanations of one network run one at a time (they switch its
    modes and flags), explanations of different networks in parallel."""
    with _CACHE_LOCK:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


def offsets_for(kind: str, lookback: int) -> np.ndarray:
    """The offsets of the window layout (see :class:`~msda_widgets.engine.layout.WindowLayout`)."""
    return WindowLayout(lookback, kind).offsets


def _context(scoring: Scoring) -> ExplainContext:
    """The cached context of a fitted state (a new fit, load or score setting gives a new
    ``Scoring`` and so a new context). Call inside :func:`_isolated`."""
    with _CACHE_LOCK:
        cached = _CACHE.get(scoring)
    if cached is not None:
        return cached
    module = scoring.module
    background = torch.as_tensor(np.asarray(scoring.background, dtype=np.float32)).to(scoring.device)
    baseline = background.mean(dim=0, keepdim=True)
    with torch.no_grad():
        bg_scores = module(background)
        base_score = float(module(baseline)[0])
    ctx = ExplainContext(scoring.kind, module, background, baseline, bg_scores, base_score, scoring.sensors,
                         scoring.layout.offsets)
    with _CACHE_LOCK:
        _CACHE[scoring] = ctx
    return ctx


# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Attribution:
    """What a method's function returns for ``n`` rows: ``values`` ``(n, T, S)``, ``base_values``
    ``(n,)``, ``deltas`` ``(n,)`` when the method computes its own (else ``None``: for an additive
    method the gap is then computed from the score)."""

    values: np.ndarray
    base_values: np.ndarray
    deltas: Optional[np.ndarray] = None
    by_time_only: bool = False


@dataclass(frozen=True)
class ExplainMethod:
    """An attribution method: its catalogue entry (:class:`~msda_widgets.engine.catalogue.MethodInfo`:
    name, description, the model kinds it serves, whether it needs gradients, ...) and ``func``.

    ``func(context, x, **options) -> Attribution`` explains a batch ``x`` of windows ``(n, T, S)``
    (on the model's device); its keyword-only parameters are the options a caller may pass, with
    their defaults. Build one with :meth:`create` (a new method) or from the catalogue.
    """

    info: catalogue.MethodInfo
    func: Callable[..., Attribution]

    @classmethod
    def create(cls, name: str, func: Callable[..., Attribution], description: str, *,
               kinds: tuple[str, ...] = KINDS, gradients: bool = True, additive: bool = False,
               needs: str = "", models: Optional[tuple[str, ...]] = None) -> "ExplainMethod":
        return cls(catalogue.MethodInfo(name, description, tuple(kinds), gradients, additive, models, needs), func)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def description(self) -> str:
        return self.info.description

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.info.kinds

    @property
    def additive(self) -> bool:
        return self.info.additive

    @property
    def needs(self) -> str:
        return self.info.needs

    @property
    def options(self) -> dict[str, Any]:
        """The options the method accepts, with their defaults."""
        return {n: p.default for n, p in inspect.signature(self.func).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}


EXPLAINERS: dict[str, ExplainMethod] = {}


def register_explainer(method: ExplainMethod, *, replace: bool = False) -> None:
    """Add an attribution method to :data:`EXPLAINERS` and the catalogue (its name must be new
    unless ``replace``)."""
    if not isinstance(method, ExplainMethod):
        raise ConfigError(f"register_explainer needs an ExplainMethod; got {type(method).__name__}.")
    if method.name in EXPLAINERS and not replace:
        raise ConfigError(f"An explanation method named {method.name!r} is already registered.")
    bad = [k for k in method.kinds if k not in KINDS]
    if bad or not method.kinds:
        raise ConfigError(f"An explanation method must serve some of {', '.join(map(repr, KINDS))}; got "
                          f"{method.kinds!r}.")
    catalogue.add_method(method.info, replace=True)
    EXPLAINERS[method.name] = method


def _get_method(scoring: Scoring, name: Any) -> ExplainMethod:
    spec = EXPLAINERS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(f"Unknown explanation method {name!r}; choose one of "
                          f"{', '.join(map(repr, EXPLAINERS))}.")
    model = catalogue.model_info(scoring.model_name)
    if not spec.info.serves(model):
        usable = ", ".join(repr(n) for n, m in EXPLAINERS.items() if m.info.serves(model))
        if spec.needs:
            raise ConfigError(f"Method {name!r} needs {spec.needs}; this detector's model {model.name!r} is not "
                              f"one. Methods for it: {usable}.")
        if spec.info.gradients and not model.differentiable:
            raise ConfigError(f"Method {name!r} differentiates the score, and this detector's model "
                              f"{model.name!r} is not differentiable. Methods for it: {usable}.")
        if model.kind not in spec.kinds:
            raise ConfigError(f"Method {name!r} explains {' and '.join(spec.kinds)} models; this detector's "
                              f"{model.name!r} is a {model.kind!r} model. Methods for it: {usable}.")
        raise ConfigError(f"Method {name!r} does not explain {model.name!r}. Methods for it: {usable}.")
    return spec


def _check_options(spec: ExplainMethod, options: Mapping[str, Any]) -> dict[str, Any]:
    accepted = spec.options
    unknown = [k for k in options if k not in accepted]
    if unknown:
        known = ", ".join(f"{k}={v!r}" for k, v in accepted.items()) or "none"
        raise ConfigError(f"Method {spec.name!r} does not take {', '.join(map(repr, unknown))}; "
                          f"its options are: {known}.")
    return dict(options)


def _positive_int(value: Any, name: str, method: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{method}: {name} must be a positive integer; got {value!r}.")
    return int(value)


def _seed_arg(value: Any, method: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**32:
        raise ConfigError(f"{method}: seed must be an integer in [0, 2**32); got {value!r}.")
    return int(value)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


# --------------------------------------------------------------------------------------------
# the methods
# --------------------------------------------------------------------------------------------

def _error(ctx: ExplainContext, x: torch.Tensor) -> Attribution:
    with torch.no_grad():
        step = ctx.pass_size
        values = torch.cat([ctx.module.squared_errors(x[i:i + step]) for i in range(0, len(x), step)])
    return Attribution(_numpy(values), np.zeros(len(x)))


class _Summed(nn.Module):
    """``(B, m, T, S) -> (B, 1)``: the sum of the scores of ``m`` windows. Its gradient with
    respect to window ``i`` is window ``i``'s own score gradient, so one shap call over a stack of
    ``m`` rows gives each row exactly the expected gradients of a call on that row alone."""

    def __init__(self, module: ScoreModule):
        super().__init__()
        self.module = module

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, m = z.shape[:2]
        return self.module(z.reshape(b * m, *z.shape[2:])).reshape(b, m).sum(dim=1, keepdim=True)


def _gradient_explainer(ctx: ExplainContext, m: int) -> Any:
    """A shap GradientExplainer over stacks of ``m`` rows; the single-row one and the full-chunk
    one are kept in the context (building one runs the network over the background once)."""
    explainers = ctx.store.setdefault("gradient_explainers", {})
    if m in explainers:
        return explainers[m]
    import shap
    k = len(ctx.background)
    background = ctx.background.unsqueeze(1).expand(k, m, *ctx.background.shape[1:])
    explainer = shap.GradientExplainer(_Summed(ctx.module), background, batch_size=ctx.rows_per_pass(m))
    if m in (1, SHAP_ROWS_PER_CALL):
        explainers[m] = explainer
    return explainer


def _shap(ctx: ExplainContext, x: torch.Tensor, *, nsamples: Optional[int] = None, seed: int = 0) -> Attribution:
    if nsamples is None:
        nsamples = SHAP_NSAMPLES[ctx.kind]
    nsamples, seed = _positive_int(nsamples, "nsamples", "shap"), _seed_arg(seed, "shap")
    n = len(x)
    values = np.empty(tuple(x.shape), dtype=np.float64)
    step = min(SHAP_ROWS_PER_CALL, n)
    for start in range(0, n, step):
        chunk = x[start:start + step]
        explainer = _gradient_explainer(ctx, len(chunk))
        with _numpy_seed(seed):
            phi = explainer.shap_values(chunk.unsqueeze(0), nsamples=nsamples, rseed=seed)
        values[start:start + len(chunk)] = np.asarray(phi, dtype=np.float64).reshape(tuple(chunk.shape))
    base = float(ctx.background_scores.double().mean())
    return Attribution(values, np.full(n, base))


def _masked(ctx: ExplainContext, row: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Windows ``(k, T, S)`` keeping the present sensors of ``row`` and the baseline elsewhere."""
    return ctx.baseline + present[:, None, :] * (row - ctx.baseline)


def _kernel_shap(ctx: ExplainContext, x: torch.Tensor, *, nsamples: int = KERNEL_SHAP_NSAMPLES,
                 seed: int = 0) -> Attribution:
    import shap
    nsamples, seed = _positive_int(nsamples, "nsamples", "kernel_shap"), _seed_arg(seed, "kernel_shap")
    n, t, s = x.shape
    values = np.empty((n, t, s))
    base = np.empty(n)
    for i in range(n):
        row = x[i:i + 1]

        def f(z: np.ndarray, row: torch.Tensor = row) -> np.ndarray:
            present = torch.as_tensor(np.asarray(z), dtype=x.dtype, device=x.device)
            return _numpy(ctx.scores(_masked(ctx, row, present)))

        explainer = shap.KernelExplainer(f, np.zeros((1, s)))
        with _numpy_seed(seed):
            phi = explainer.shap_values(np.ones((1, s)), nsamples=nsamples, l1_reg=False, silent=True)
        phi = np.asarray(phi, dtype=np.float64).reshape(s)
        values[i] = np.broadcast_to(phi / t, (t, s))
        base[i] = float(np.asarray(explainer.expected_value).reshape(-1)[0])
    return Attribution(values, base)


def _saliency(ctx: ExplainContext, x: torch.Tensor) -> Attribution:
    from captum.attr import Saliency
    sal = Saliency(ctx.module)
    step = ctx.rows_per_pass()
    values = torch.cat([sal.attribute(x[i:i + step].clone().requires_grad_(), abs=True)
                        for i in range(0, len(x), step)])
    return Attribution(_numpy(values), np.zeros(len(x)))


def _input_x_gradient(ctx: ExplainContext, x: torch.Tensor) -> Attribution:
    from captum.attr import InputXGradient
    ixg = InputXGradient(ctx.module)
    step = ctx.rows_per_pass()
    values = torch.cat([ixg.attribute(x[i:i + step].clone().requires_grad_()) for i in range(0, len(x), step)])
    return Attribution(_numpy(values), np.zeros(len(x)))


def _integrated_gradients(ctx: ExplainContext, x: torch.Tensor, *, n_steps: int = IG_STEPS) -> Attribution:
    from captum.attr import IntegratedGradients
    n_steps = _positive_int(n_steps, "n_steps", "integrated_gradients")
    ig = IntegratedGradients(ctx.module)
    step = ctx.rows_per_pass(n_steps)
    parts, deltas = [], []
    for i in range(0, len(x), step):
        chunk = x[i:i + step]
        attr, delta = ig.attribute(chunk, baselines=ctx.baseline.expand_as(chunk), n_steps=n_steps,
                                   return_convergence_delta=True)
        parts.append(attr)
        deltas.append(delta)
    return Attribution(_numpy(torch.cat(parts)), np.full(len(x), ctx.baseline_score),
                       _numpy(torch.cat(deltas)).reshape(-1))


_CNN = catalogue.method_info("grad_cam").needs


def _cam_layer(model: nn.Module) -> nn.Module:
    """The module whose output is the last convolution block's feature maps (the ReLU after the
    last Conv1d when there is one, else that Conv1d)."""
    features = getattr(model, "features", None)
    layers = list(features) if isinstance(features, nn.Sequential) else []
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv1d)]
    if not convs:
        raise ConfigError(f"Method 'grad_cam' needs {_CNN}; this detector's network "
                          f"({type(model).__name__}) has none.")
    i = convs[-1]
    return layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU) else layers[i]


def _grad_cam(ctx: ExplainContext, x: torch.Tensor) -> Attribution:
    from captum.attr import LayerGradCam
    layer = _cam_layer(ctx.model)
    cam = LayerGradCam(ctx.module, layer)
    n, t, s = x.shape
    lookback = t - 1
    step = ctx.rows_per_pass()
    maps = torch.cat([cam.attribute(x[i:i + step], relu_attributions=True) for i in range(0, n, step)])
    profile = torch.nn.functional.interpolate(maps.detach().reshape(n, 1, -1).double(), size=lookback,
                                              mode="linear", align_corners=False)[:, 0]  # (n, lookback)
    values = np.zeros((n, t, s))
    values[:, :lookback, :] = (profile.cpu().numpy() / s)[:, :, None]
    return Attribution(values, np.zeros(n), by_time_only=True)


def _cosine_kernel(original: Any, perturbed: Any, interpretable: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """LIME's weight of a coalition: exp(-d**2 / width**2), d its cosine distance to all-present."""
    z = interpretable.double().reshape(-1)
    cos = z.sum() / (math.sqrt(z.numel()) * z.square().sum().sqrt().clamp_min(1e-12))
    return torch.exp(-(1.0 - cos) ** 2 / LIME_KERNEL_WIDTH ** 2)


def _lime(ctx: ExplainContext, x: torch.Tensor, *, n_samples: int = LIME_SAMPLES, seed: int = 0) -> Attribution:
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime
    n_samples, seed = _positive_int(n_samples, "n_samples", "lime"), _seed_arg(seed, "lime")
    n, t, s = x.shape
    mask = torch.arange(s, device=x.device).expand(1, t, s)
    lime = Lime(ctx.module, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=_cosine_kernel)
    values = np.empty((n, t, s))
    for i in range(n):
        torch.manual_seed(seed)  # captum samples coalitions with torch's RNG (restored by _isolated)
        coefs = lime.attribute(x[i:i + 1], baselines=ctx.baseline, feature_mask=mask, n_samples=n_samples,
                               perturbations_per_eval=min(n_samples, ctx.pass_size),
                               return_input_shape=False)
        values[i] = np.broadcast_to(_numpy(coefs).reshape(1, s) / t, (t, s))
    return Attribution(values, np.full(n, ctx.baseline_score))


_FUNCS = {"error": _error, "shap": _shap, "kernel_shap": _kernel_shap, "saliency": _saliency,
          "input_x_gradient": _input_x_gradient, "integrated_gradients": _integrated_gradients,
          "grad_cam": _grad_cam, "lime": _lime}
for _method in (ExplainMethod(catalogue.method_info(name), func) for name, func in _FUNCS.items()):
    register_explainer(_method)


# --------------------------------------------------------------------------------------------
# data, rows and windows
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Source:
    data: Any                 # SensorData (unscaled, imputed, time-ordered)
    index: pd.Index           # the caller's row labels
    detection: Any            # the Detection when one was given (its scores are exact), else None


def _source(det: Any, scoring: Scoring, data: Any) -> _Source:
    if isinstance(data, Detection):
        sd = data.data
        if tuple(sd.sensors) != scoring.sensors:
            raise DataError("This Detection was made with other sensors than the detector's "
                            f"({', '.join(map(str, scoring.sensors))}); run det.detect(data) again.")
        return _Source(sd, data.caller_index, data)
    frame = det.as_frame(data)
    sd, _ = det.prepare(frame)
    return _Source(sd, frame.index, None)


def _describe_index(index: pd.Index) -> str:
    if len(index) == 0:
        return "the data has no rows"
    return f"the data's index has {len(index)} rows, from {index[0]!r} to {index[-1]!r}"


def _locate(src: _Source, when: Any) -> tuple[Any, int]:
    """(the caller's label, the prepared row) of ``when``: a label of the caller's index or an
    integer row position. A label absent there is also looked up in the prepared time index."""
    index, positions = src.index, src.data.positions
    if isinstance(when, (bool, np.bool_)):
        raise DataError(f"when={when!r} is neither a row label nor a row position.")
    if isinstance(when, (int, np.integer)):
        n = len(index)
        if not -n <= int(when) < n:
            raise DataError(f"Row position {int(when)} is outside the data ({n} rows: 0..{n - 1}).")
        i = int(when) % n
        return index[i], int(positions[i])
    try:
        loc = index.get_loc(when)
    except (KeyError, TypeError, ValueError, pd.errors.InvalidIndexError):
        loc = None
    if loc is None:
        try:  # e.g. the caller's frame had a time column rather than a time index
            pos = src.data.index.get_loc(when)
        except (KeyError, TypeError, ValueError, pd.errors.InvalidIndexError):
            raise DataError(f"{when!r} is not in the data: {_describe_index(index)}. Pass a label of the "
                            f"index or an integer row position.") from None
        if isinstance(pos, (int, np.integer)):
            return src.data.index[int(pos)], int(pos)
        raise DataError(f"{when!r} matches several timestamps of the data; give one exact timestamp or an "
                        f"integer row position.")
    if isinstance(loc, (int, np.integer)):
        return index[int(loc)], int(positions[int(loc)])
    rows = np.arange(len(index))[loc] if isinstance(loc, slice) else np.flatnonzero(np.asarray(loc))
    if len(rows) and len(np.unique(positions[rows])) == 1:  # duplicate labels merged into one row
        return index[int(rows[0])], int(positions[rows[0]])
    raise DataError(f"{when!r} matches {len(rows)} rows of the data; give one exact label or an integer "
                    f"row position.")


def _check_scored(layout: WindowLayout, label: Any, position: int) -> None:
    first = layout.first_scored
    if position < first:
        raise DataError(f"Row {label!r} has no anomaly score: the first {first} rows (in time order) have "
                        f"none, because a window of lookback={layout.lookback} rows "
                        f"{'precedes' if layout.kind == 'forecast' else 'ends at'} each scored row. "
                        f"Choose a later row.")


def _iter_whens(src: _Source, whens: Any) -> Iterable[Any]:
    """``whens``: one label / position, a list of them, or a boolean mask over the caller's rows."""
    if isinstance(whens, pd.Series) and whens.dtype == bool:
        if not whens.index.equals(src.index):
            raise DataError("A boolean whens Series must have the data's index.")
        return [int(i) for i in np.flatnonzero(whens.to_numpy())]
    if isinstance(whens, np.ndarray) and whens.dtype == bool:
        if whens.shape != (len(src.index),):
            raise DataError(f"A boolean whens mask must have one value per row ({len(src.index)}); "
                            f"got shape {whens.shape}.")
        return [int(i) for i in np.flatnonzero(whens)]
    if isinstance(whens, (str, bytes, datetime.date, np.datetime64)) or np.isscalar(whens) \
            or not isinstance(whens, Iterable):
        return [whens]
    return list(whens)


@dataclass(frozen=True, eq=False)
class _Rows:
    labels: list
    positions: np.ndarray      # prepared rows, one per requested row
    scores: Optional[np.ndarray]  # the Detection's scores for them (exact), else None


def _rows(layout: WindowLayout, src: _Source, whens: Any) -> _Rows:
    labels, positions = [], []
    for when in _iter_whens(src, whens):
        label, pos = _locate(src, when)
        _check_scored(layout, label, pos)
        labels.append(label)
        positions.append(pos)
    positions_arr = np.asarray(positions, dtype=np.int64)
    scores = None
    if src.detection is not None and len(positions_arr):
        scores = src.detection.row_scores[positions_arr]  # exact: the Detection's own scores
    return _Rows(labels, positions_arr, scores)


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------

def _explain_rows(det: Any, scoring: Scoring, src: _Source, rows: _Rows, method: str,
                  options: Mapping[str, Any]) -> ExplanationSet:
    spec = _get_method(scoring, method)
    opts = _check_options(spec, options)
    layout = scoring.layout
    t_start = time.perf_counter()
    unique, inverse = np.unique(rows.positions, return_inverse=True)
    raw = np.asarray(src.data.values, dtype=np.float64)[layout.window_rows(unique)] if len(unique) else \
        np.zeros((0, layout.steps, len(scoring.sensors)))
    inputs = scoring.scaler.transform(raw) if len(unique) else raw.astype(np.float32)
    with _isolated(scoring):
        ctx = _context(scoring)
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(ctx.device)
        t0 = time.perf_counter()
        result = spec.func(ctx, x, **opts) if len(unique) else Attribution(raw.copy(), np.zeros(0))
        attribution_seconds = time.perf_counter() - t0
        own = _numpy(ctx.scores(x)) if rows.scores is None else None
    scores = own[inverse] if own is not None else rows.scores
    per_row = attribution_seconds / max(1, len(unique))
    threshold = float(det.threshold_)
    out = []
    for k, (label, pos) in enumerate(zip(rows.labels, rows.positions)):
        u = int(inverse[k])
        values = result.values[u]
        base = float(result.base_values[u])
        score = float(scores[k])
        if result.deltas is not None:
            delta: Optional[float] = float(result.deltas[u])
        elif spec.additive:
            delta = float(values.sum() - (score - base))
        else:
            delta = None
        out.append(Explanation(
            when=label, position=int(pos), method=spec.name, values=_readonly(values),
            offsets=_readonly(layout.offsets), sensors=scoring.sensors,
            inputs=_readonly(inputs[u]), raw=_readonly(raw[u]), base_value=base, score=score,
            threshold=threshold, seconds=per_row, delta=delta, by_time_only=bool(result.by_time_only)))
    return ExplanationSet(tuple(out), spec.name, time.perf_counter() - t_start)


def explain(det: Any, data: Any, when: Any, method: str = "shap", **options: Any) -> Explanation:
    """Attributions of ``det``'s own anomaly score at the row ``when`` of ``data``.

    ``det`` is a fitted detector: anything with ``scoring()`` (the :class:`Scoring` protocol),
    ``threshold_``, ``as_frame(data)`` and ``prepare(data)``, as
    :class:`~msda_widgets.engine.detector.Detector` has. ``data`` is anything the detector
    accepts (DataFrame, array, CSV path) or the ``Detection`` from ``det.detect(df)``: then nothing
    is prepared again and only the window's rows are scaled. ``when`` is a label of the data's
    index (a ``Timestamp`` or a string such as ``"1998-01-07"`` for a DatetimeIndex) or an integer
    row position (``iloc``; also for an integer index). ``method`` is a name in
    :data:`EXPLAINERS`; ``options`` its options (e.g. ``nsamples``, ``seed`` for "shap"). Raises
    ``DataError`` for an unknown row or one with no score, ``ConfigError`` for an unknown method,
    option, or a method the model does not support.
    """
    scoring = det.scoring()
    _get_method(scoring, method)  # fail on the method before preparing any data
    src = _source(det, scoring, data)
    rows = _rows(scoring.layout, src, [when])
    return _explain_rows(det, scoring, src, rows, method, options).explanations[0]


def explain_many(det: Any, data: Any, whens: Any = None, method: str = "shap", **options: Any) -> ExplanationSet:
    """Explain many rows at once: ``whens`` is a list of labels / row positions, a boolean mask
    over the rows, or ``None`` for every flagged row (``score > threshold``; a DataFrame is then
    scored once with ``det.detect``). The rows are explained in batches (one shap call per up to
    SHAP_ROWS_PER_CALL rows, one captum call per pass); each explanation equals ``explain`` of its
    row with the same options (up to float rounding)."""
    scoring = det.scoring()
    _get_method(scoring, method)
    if whens is None and not isinstance(data, Detection):
        data = det.detect(data)
    src = _source(det, scoring, data)
    if whens is None:
        whens = src.detection.anomalies.to_numpy(dtype=bool)
    return _explain_rows(det, scoring, src, _rows(scoring.layout, src, whens), method, options)


# --------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Tap:
    name: str
    module: nn.Module
    to_frame: Callable[[torch.Tensor], pd.DataFrame]


def _cnn_taps(model: DeepCNN, lookback: int, sensors: Sequence[str]) -> list[_Tap]:
    taps = []
    blocks = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv1d)]
    for b, i in enumerate(blocks):
        relu = model.features[i + 1] if isinstance(model.features[i + 1], nn.ReLU) else model.features[i]
        stride = 2 ** b  # each earlier block halves the time axis

        def frame(out: torch.Tensor, stride: int = stride) -> pd.DataFrame:
            a = out[0].detach().double().cpu().numpy().T  # (time, channels)
            index = pd.Index(-lookback + stride * np.arange(len(a)), name="offset")
            return pd.DataFrame(a, index=index, columns=[f"channel_{c}" for c in range(a.shape[1])])

        taps.append(_Tap(f"conv{b + 1}", relu, frame))
    dense = [m for m in model.head if isinstance(m, nn.ReLU)]

    def point(columns: Optional[Sequence[str]] = None) -> Callable[[torch.Tensor], pd.DataFrame]:
        def frame(out: torch.Tensor) -> pd.DataFrame:
            a = out.detach().double().cpu().numpy().reshape(1, -1)
            cols = list(columns) if columns is not None else [f"unit_{u}" for u in range(a.shape[1])]
            return pd.DataFrame(a, index=pd.Index([0], name="offset"), columns=cols)
        return frame

    if dense:
        taps.append(_Tap("dense", dense[-1], point()))
    taps.append(_Tap("output", model, point(sensors)))
    return taps


def _lstm_taps(model: LSTMAutoencoder, lookback: int, sensors: Sequence[str]) -> list[_Tap]:
    index = pd.Index(np.arange(-(lookback - 1), 1), name="offset")

    def sequence(columns: Optional[Sequence[str]] = None) -> Callable[[Any], pd.DataFrame]:
        def frame(out: Any) -> pd.DataFrame:
            h = out[0] if isinstance(out, tuple) else out  # an LSTM returns (h_seq, (h_n, c_n))
            a = h[0].detach().double().cpu().numpy()  # (time, units)
            cols = list(columns) if columns is not None else [f"unit_{u}" for u in range(a.shape[1])]
            return pd.DataFrame(a, index=index[-len(a):], columns=cols)
        return frame

    taps = [_Tap(f"encoder{i + 1}", m, sequence()) for i, m in enumerate(model.encoder)]
    taps += [_Tap(f"decoder{i + 1}", m, sequence()) for i, m in enumerate(model.decoder)]
    taps.append(_Tap("output", model.output, sequence(sensors)))
    return taps


#: Which layers ``activations`` records, per network class.
ACTIVATION_TAPS: dict[type, Callable[..., list[_Tap]]] = {DeepCNN: _cnn_taps, LSTMAutoencoder: _lstm_taps}


def activations(det: Any, data: Any, when: Any) -> dict[str, pd.DataFrame]:
    """Each layer's activations (time x units) for the window judging ``when``.

    DeepCNN: ``conv1``, ``conv2``, ... (each block's feature maps after its ReLU, before pooling,
    time x channels; the index is the offset of the first input step a cell covers), ``dense``
    (1 x units) and ``output`` (the forecast of the observed step, 1 x sensors). LSTM autoencoder:
    ``encoder1``, ``encoder2``, ``decoder1``, ... (hidden states, time x hidden) and ``output``
    (the reconstruction, time x sensors).
    """
    scoring = det.scoring()
    layout = scoring.layout
    src = _source(det, scoring, data)
    label, pos = _locate(src, when)
    _check_scored(layout, label, pos)
    model = scoring.model
    builder = next((f for cls, f in ACTIVATION_TAPS.items() if isinstance(model, cls)), None)
    if builder is None:
        raise ConfigError(f"activations() does not know the layers of {type(model).__name__}; it supports "
                          f"{', '.join(c.__name__ for c in ACTIVATION_TAPS)}.")
    taps = builder(model, layout.lookback, scoring.sensors)
    raw = np.asarray(src.data.values, dtype=np.float64)[layout.window_rows(np.array([pos]))]
    x = torch.from_numpy(scoring.scaler.transform(raw))
    if layout.kind == "forecast":
        x = x[:, :-1]  # the network sees the lookback steps only
    seen: dict[str, Any] = {}
    with _isolated(scoring):
        handles = []
        try:
            for tap in taps:
                handles.append(tap.module.register_forward_hook(
                    lambda _m, _i, out, name=tap.name: seen.__setitem__(name, out)))
            with torch.no_grad():
                model(x.to(scoring.device))
        finally:
            for h in handles:
                h.remove()
    return {tap.name: tap.to_frame(seen[tap.name]) for tap in taps}
