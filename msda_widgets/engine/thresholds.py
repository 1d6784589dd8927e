"""Label-free anomaly thresholds computed from training anomaly scores.

A threshold turns scores (higher = more anomalous) into a yes/no decision without labels. Every
method is a small :class:`ThresholdMethod` in the :data:`THRESHOLDS` registry, so a dashboard can
build a slider from its parameter range and a notebook user can add a method of their own::

    compute_threshold(train_scores)                      # 99th percentile
    compute_threshold(train_scores, "ksigma", 4.0)        # mean + 4 std
    compute_threshold(train_scores, "pot", 1e-4)          # SPOT extreme-value threshold

Only finite scores count: NaN (a timestamp without a score, e.g. the first ``lookback`` ones)
and +-inf are ignored.
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["ThresholdMethod", "THRESHOLDS", "register_threshold", "compute_threshold"]


@dataclass(frozen=True)
class ThresholdMethod:
    """One way of turning training scores into a threshold.

    ``func(scores, param)`` receives a 1-D float array of finite scores and the (validated)
    parameter and returns the threshold. ``low``/``high`` bound the parameter (inclusive) and
    ``increasing`` says whether the threshold grows with it. ``min_scores`` is the number of
    finite scores the method needs (0 for a method that ignores the scores).
    """

    name: str
    func: Callable[[np.ndarray, float], float]
    default: float
    param_name: str
    description: str
    low: float
    high: float
    increasing: bool
    min_scores: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a threshold method needs a non-empty string name; got {self.name!r}")
        if not callable(self.func):
            raise ConfigError(f"threshold method {self.name!r}: func must be callable; got {self.func!r}")
        for field_name in ("default", "low", "high"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
                raise ConfigError(f"threshold method {self.name!r}: {field_name} must be a number; "
                                  f"got {value!r}")
        if not self.low <= self.default <= self.high:
            raise ConfigError(f"threshold method {self.name!r}: default {self.default!r} is outside "
                              f"its range [{self.low!r}, {self.high!r}]")
        if isinstance(self.min_scores, bool) or not isinstance(self.min_scores, numbers.Integral) \
                or self.min_scores < 0:
            raise ConfigError(f"threshold method {self.name!r}: min_scores must be an integer >= 0; "
                              f"got {self.min_scores!r}")


# ---------------------------------------------------------------------------------------------
# The built-in methods. Each takes finite scores (1-D float array) and a validated parameter.
# ---------------------------------------------------------------------------------------------

def _quantile(scores: np.ndarray, q: float) -> float:
    """``np.quantile(scores, q)`` (linear interpolation)."""
    return float(np.quantile(scores, q))


def _ksigma(scores: np.ndarray, k: float) -> float:
    """``mean + k * std`` of the scores (population std, ``ddof=0``)."""
    return float(np.mean(scores) + k * np.std(scores))


def _fixed(scores: np.ndarray, value: float) -> float:
    """The given value; the scores are not used."""
    return float(value)


#: SPOT's initial threshold: the 98th percentile of the scores (Siffer et al. 2017).
_POT_INITIAL_QUANTILE = 0.98
#: Fewer excesses than this over the initial threshold and no tail is fitted.
_POT_MIN_EXCESSES = 10
#: Grid points per side of zero when looking for Grimshaw's roots.
_GRID_POINTS = 128


def _grimshaw_h(x: float, y: np.ndarray) -> float:
    """Grimshaw's ``u(x) v(x) - 1``; its non-zero roots are the GPD likelihood's stationary points."""
    xy = x * y
    return float(np.mean(1.0 / (1.0 + xy)) * (1.0 + np.mean(np.log1p(xy))) - 1.0)


def _bisect(f: Callable[[float], float], a: float, b: float, fa: float) -> float:
    """A root of ``f`` in ``[a, b]`` where ``f(a)`` and ``f(b)`` have opposite signs."""
    for _ in range(200):
        mid = 0.5 * (a + b)
        if mid in (a, b) or abs(b - a) <= 1e-14 * max(abs(a), abs(b)):
            break
        fm = f(mid)
        if fm == 0.0:
            return mid
        if (fm < 0.0) == (fa < 0.0):
            a, fa = mid, fm
        else:
            b = mid
    return 0.5 * (a + b)


def _gpd_loglik(y: np.ndarray, gamma: float, sigma: float) -> float:
    """Log-likelihood of excesses ``y`` under a GPD(shape ``gamma``, scale ``sigma``)."""
    if not (sigma > 0.0 and math.isfinite(sigma) and math.isfinite(gamma)):
        return -math.inf
    if gamma == 0.0:
        return float(-y.size * math.log(sigma) - np.sum(y) / sigma)
    z = 1.0 + gamma * y / sigma
    if np.any(z <= 0.0):
        return -math.inf
    return float(-y.size * math.log(sigma) - (1.0 + 1.0 / gamma) * np.sum(np.log(z)))


def _fit_gpd(excesses: np.ndarray) -> tuple[float, float] | None:
    """Maximum-likelihood ``(gamma, sigma)`` of a generalised Pareto distribution (Grimshaw 1993).

    With ``x = gamma / sigma`` the likelihood is stationary where ``u(x) v(x) = 1``,
    ``u(x) = mean(1 / (1 + x y))`` and ``v(x) = 1 + mean(log(1 + x y))``; each root gives
    ``gamma = v(x) - 1`` and ``sigma = gamma / x``. Roots are sought on
    ``(-1/max(y), 0)`` and ``(0, 2 (mean(y) - min(y)) / (mean(y) min(y)))`` by locating sign
    changes on a geometric grid and bisecting them; the exponential case (``gamma = 0``,
    ``sigma = mean(y)``) is always a candidate. The candidate with the highest log-likelihood
    wins. Returns ``None`` when the excesses cannot be fitted (empty, non-positive, non-finite).
    """
    y = np.asarray(excesses, dtype=float)
    if y.size == 0 or not np.all(np.isfinite(y)) or np.any(y <= 0.0):
        return None
    scale = float(np.mean(y))
    y = y / scale                       # fit in units of mean(y): the search is then scale-free
    y_min, y_max = float(np.min(y)), float(np.max(y))
    if not (y_min > 0.0 and math.isfinite(y_max)):  # excesses spanning more than float64's range
        return None

    def h(x: float) -> float:
        return _grimshaw_h(x, y)

    grids = []
    # (-1/y_max, 0): x = -f / y_max for f in (0, 1), dense near both ends.
    f = np.concatenate([np.geomspace(1e-7, 0.5, _GRID_POINTS),
                        1.0 - np.geomspace(0.5, 1e-10, _GRID_POINTS)[1:]])
    grids.append(-f / y_max)
    # (0, 2 (mean - min) / (mean min)); mean is 1 here. Capped: beyond it u v - 1 is ~ -1.
    upper = min(2.0 * (1.0 - y_min) / y_min, 1e12)
    if upper > 1e-7:
        grids.append(np.geomspace(1e-7, upper, 2 * _GRID_POINTS)[:-1])

    roots = []
    with np.errstate(all="ignore"):
        for grid in grids:
            values = np.array([h(float(x)) for x in grid])
            for i in range(grid.size - 1):
                a, b, fa, fb = float(grid[i]), float(grid[i + 1]), values[i], values[i + 1]
                if not (math.isfinite(fa) and math.isfinite(fb)):
                    continue
                if fa == 0.0:
                    roots.append(a)
                elif fa * fb < 0.0:
                    roots.append(_bisect(h, a, b, fa))

        candidates = [(0.0, 1.0)]       # exponential: gamma = 0, sigma = mean(y) = 1
        for x in roots:
            gamma = float(np.mean(np.log1p(x * y)))
            if gamma != 0.0 and math.isfinite(gamma):
                candidates.append((gamma, gamma / x))
        scored = [(_gpd_loglik(y, g, s), g, s) for g, s in candidates]
    loglik, gamma, sigma = max(scored, key=lambda c: c[0])
    if not math.isfinite(loglik):
        return None
    return gamma, sigma * scale


def _pot(scores: np.ndarray, risk: float) -> float:
    """Peaks-over-threshold (SPOT, Siffer et al., KDD 2017): the score exceeded with prob. ``risk``.

    The initial threshold ``t`` is the 98th percentile of the scores; a generalised Pareto
    distribution is fitted to the excesses ``y = s[s > t] - t`` by :func:`_fit_gpd` and the
    threshold is ``z = t + sigma/gamma ((risk n / N_t)^-gamma - 1)`` (``t - sigma log(risk n / N_t)``
    when ``gamma`` is 0), where ``n`` is the number of scores and ``N_t`` of excesses.

    Fallback: with fewer than 10 excesses, or when the fit is degenerate (no usable candidate, a
    non-finite ``z``), the empirical ``1 - risk`` quantile is used instead.

    The result is always finite and ``>= t``: the fitted tail only describes scores above ``t``,
    so for ``risk >= N_t / n`` (about 0.02) the threshold is ``t`` itself.
    """
    t = float(np.quantile(scores, _POT_INITIAL_QUANTILE))
    excesses = scores[scores > t] - t
    fallback = max(float(np.quantile(scores, 1.0 - risk)), t)
    if excesses.size < _POT_MIN_EXCESSES:
        return fallback
    fit = _fit_gpd(excesses)
    if fit is None:
        return fallback
    gamma, sigma = fit
    log_r = math.log(risk * scores.size / excesses.size)
    with np.errstate(all="ignore"):
        if abs(gamma) < 1e-12:
            z = t - sigma * log_r
        else:
            z = t + sigma / gamma * float(np.expm1(-gamma * log_r))
    if not math.isfinite(z):
        return fallback
    return max(z, t)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

#: Threshold methods by name. Add one with :func:`register_threshold`.
THRESHOLDS: dict[str, ThresholdMethod] = {}


def register_threshold(method: ThresholdMethod) -> None:
    """Add ``method`` to :data:`THRESHOLDS`; a name already registered is refused (ConfigError)."""
    if not isinstance(method, ThresholdMethod):
        raise ConfigError(f"register_threshold expects a ThresholdMethod; got {type(method).__name__}")
    if method.name in THRESHOLDS:
        raise ConfigError(f"a threshold method named {method.name!r} is already registered; "
                          f"choose another name")
    THRESHOLDS[method.name] = method


for _method in (
    ThresholdMethod(
        name="quantile", func=_quantile, default=0.99, param_name="q",
        description="q-quantile of the training scores: a fraction 1 - q of training points lies above.",
        low=0.5, high=1.0, increasing=True),
    ThresholdMethod(
        name="ksigma", func=_ksigma, default=3.0, param_name="k",
        description="Mean plus k standard deviations of the training scores.",
        low=0.0, high=10.0, increasing=True),
    ThresholdMethod(
        name="pot", func=_pot, default=1e-3, param_name="risk",
        description="Extreme-value (SPOT) threshold: a Pareto tail fitted above the 98th percentile, "
                    "exceeded with probability about risk.",
        low=1e-6, high=0.1, increasing=False),
    ThresholdMethod(
        name="fixed", func=_fixed, default=1.0, param_name="value",
        description="A fixed score value chosen by hand.",
        low=0.0, high=math.inf, increasing=True, min_scores=0),
):
    register_threshold(_method)
del _method


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

def _lookup(method: str | ThresholdMethod) -> ThresholdMethod:
    if isinstance(method, ThresholdMethod):
        return method
    if isinstance(method, str) and method in THRESHOLDS:
        return THRESHOLDS[method]
    known = sorted(THRESHOLDS)
    close = difflib.get_close_matches(method, known, n=1) if isinstance(method, str) else []
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown threshold method {method!r}; known methods: "
                      f"{', '.join(map(repr, known))}.{hint}")


def _check_param(method: ThresholdMethod, param: Any) -> float:
    if isinstance(param, bool) or not isinstance(param, numbers.Real):
        raise ConfigError(f"threshold method {method.name!r}: {method.param_name} must be a number; "
                          f"got {param!r}")
    value = float(param)
    if math.isnan(value) or not method.low <= value <= method.high:
        raise ConfigError(f"threshold method {method.name!r}: {method.param_name}={param!r} is outside "
                          f"[{method.low!r}, {method.high!r}]")
    return value


def _finite_scores(scores: Any) -> np.ndarray:
    try:
        arr = np.asarray(scores, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"scores must be a 1-D array of numbers; could not convert them ({exc})") from exc
    if arr.ndim != 1:
        raise DataError(f"scores must be a 1-D array; got shape {arr.shape}. "
                        f"Pass one score per timestamp (e.g. scores.ravel()).")
    return arr[np.isfinite(arr)]


def compute_threshold(scores: Any, method: str | ThresholdMethod = "quantile",
                      param: float | None = None) -> float:
    """Threshold over training ``scores`` (1-D, higher = more anomalous) by a registered method.

    NaN and +-inf scores are ignored. ``param`` is the method's parameter (``q``, ``k``, ``risk``,
    ``value``); ``None`` uses its default. Raises :class:`ConfigError` for an unknown method
    (the message lists the known ones), a parameter outside the method's ``[low, high]`` range, or
    fewer finite scores than the method needs (2 for all built-ins except ``"fixed"``), and
    :class:`DataError` when ``scores`` is not a 1-D numeric array.
    """
    m = _lookup(method)
    value = m.default if param is None else _check_param(m, param)
    finite = _finite_scores(scores)
    if finite.size < m.min_scores:
        raise ConfigError(f"threshold method {m.name!r} needs at least {m.min_scores} finite scores; "
                          f"got {finite.size}. Score more (non-NaN) training data first.")
    result = float(m.func(finite, float(value)))
    if math.isnan(result):
        raise ConfigError(f"threshold method {m.name!r} returned NaN for {m.param_name}={value!r}")
    return result
