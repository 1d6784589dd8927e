"""Evaluation against labels: honest, point-wise metrics first.

:func:`evaluate` compares a detector's output with ground-truth labels (1 = anomalous row)::

    evaluate(det.detect(df), df["anomaly"])          # scores + the detector's own threshold
    evaluate(det.predict(df), df["anomaly"])         # yes/no flags (a bool Series)
    evaluate(scores, labels, threshold=2.5)          # raw scores and a threshold of your own

It returns an :class:`Evaluation` (frozen; ``.as_dict()`` for tables) holding

* point-wise precision, recall and F1, the confusion counts, and SKAB's false-alarm rate
  ``FAR = FP / (FP + TN)`` and missing-alarm rate ``MAR = FN / (FN + TP)`` (fractions in [0, 1];
  SKAB prints them as percentages). No point adjustment: every row counts once.
* PR-AUC (average precision) and ROC-AUC from the raw scores, when scores are given. They need
  no threshold, so they judge the score separately from the threshold that turns it into flags.
* event-wise recall and detection delay: an *event* is a maximal run of consecutive positive
  labels; it is detected when at least one row inside it is flagged, and its delay is the number
  of rows from its first row to its first flagged row (0 = flagged on its first row).
* the point-adjusted F1 only when asked (``point_adjust=True``). Point adjustment counts a whole
  event as found when any one of its rows is flagged; it inflates F1 (a detector flagging random
  rows scores well on long events), so it is reported apart and labelled optimistic.

Conventions (the same in every function here):

* **Undefined ratios are NaN.** A ratio whose denominator is 0 is NaN, never 0 or 1: with no
  positive labels recall, MAR and event recall are NaN; with no flags precision is NaN; F1 is
  NaN only when there are neither positives nor flags (otherwise it is ``2TP / (2TP+FP+FN)``,
  e.g. 0.0 when flags exist but no positives). AUCs are NaN unless both classes are present.
* **Unscored rows** (NaN scores, e.g. the first ``lookback`` rows a Detector cannot judge) are by
  default *not flagged*, exactly as :meth:`Detector.predict` treats them, and rank below every
  scored row in the AUCs: an anomaly there counts as missed. ``unscored="ignore"`` drops them from
  every metric instead. Their number is reported (``n_unscored``) either way.
* **Unlabelled rows** (NaN labels) are dropped from every metric and counted in ``n_unlabelled``.
* Flags are ``score > threshold`` (strictly greater), as in the Detector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Optional

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError

__all__ = [
    "Evaluation",
    "evaluate",
    "point_metrics",
    "metrics_from_counts",
    "roc_auc",
    "pr_auc",
    "find_events",
    "event_metrics",
    "point_adjust",
]

UNSCORED_MODES = ("negative", "ignore")


# ---------------------------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------------------------

def _values(x: Any, name: str) -> np.ndarray:
    """A 1-D numpy view of ``x`` (list, array, Series, single-column DataFrame)."""
    if isinstance(x, pd.DataFrame):
        if x.shape[1] != 1:
            raise DataError(f"{name} must be one column; got a DataFrame with {x.shape[1]} columns "
                            f"({', '.join(map(str, x.columns[:5]))}). Pass the column you mean.")
        x = x.iloc[:, 0]
    if isinstance(x, pd.Series):
        if isinstance(x.dtype, pd.BooleanDtype):          # nullable boolean: NA -> NaN
            return x.astype("float64").to_numpy(na_value=np.nan)
        if pd.api.types.is_extension_array_dtype(x.dtype):
            return x.astype("float64").to_numpy(na_value=np.nan)
        x = x.to_numpy()
    a = np.asarray(x)
    if a.ndim != 1:
        a = np.squeeze(a)
        if a.ndim != 1:
            raise DataError(f"{name} must be 1-D (one value per row); got shape {np.shape(x)}.")
    if a.dtype == object:
        try:
            a = a.astype(float)
        except (TypeError, ValueError):
            raise DataError(f"{name} must be numbers or booleans; got values such as "
                            f"{a[:3].tolist()!r}.") from None
    if a.dtype.kind not in "biuf":
        raise DataError(f"{name} must be numbers or booleans; got dtype {a.dtype}.")
    return a


def _check_same_rows(a: Any, b: Any, a_name: str, b_name: str, na: int, nb: int) -> None:
    if na != nb:
        raise DataError(f"{a_name} has {na} rows but {b_name} has {nb}; they must describe the same "
                        f"rows in the same order.")
    ia, ib = getattr(a, "index", None), getattr(b, "index", None)
    if isinstance(ia, pd.Index) and isinstance(ib, pd.Index) and not ia.equals(ib):
        raise DataError(f"{a_name} and {b_name} have different indexes; align them first, e.g. "
                        f"labels.reindex(scores.index).")


def _labels(labels: Any) -> np.ndarray:
    """Labels as float 0/1 with NaN for unlabelled rows; anything else is refused."""
    y = _values(labels, "labels").astype(float)
    known = y[~np.isnan(y)]
    bad = known[(known != 0.0) & (known != 1.0)]
    if bad.size:
        raise DataError(f"labels must be 0/1 (or True/False, NaN = unlabelled); found "
                        f"{np.unique(bad)[:5].tolist()}. Binarise them first, e.g. labels > 0.")
    return y


def _flags(flags: Any, name: str = "flags") -> np.ndarray:
    """Flags as bool. Bool input as is; 0/1 numbers accepted; NaN (no decision) = not flagged."""
    f = _values(flags, name)
    if f.dtype.kind == "b":
        return f.astype(bool, copy=False)
    f = f.astype(float)
    known = f[~np.isnan(f)]
    bad = known[(known != 0.0) & (known != 1.0)]
    if bad.size:
        raise DataError(f"{name} must be True/False or 0/1; found {np.unique(bad)[:5].tolist()}. "
                        f"For anomaly scores use evaluate(scores, labels, threshold=...).")
    return f == 1.0


# ---------------------------------------------------------------------------------------------
# Point-wise metrics
# ---------------------------------------------------------------------------------------------

def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def metrics_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, Any]:
    """Precision, recall, F1, FAR and MAR from confusion counts (NaN where a ratio is 0/0).

    Use it to pool several series the way SKAB does: add the counts, then call this once.
    """
    tp, fp, fn, tn = (int(v) for v in (tp, fp, fn, tn))
    if min(tp, fp, fn, tn) < 0:
        raise DataError(f"confusion counts must be >= 0; got tp={tp}, fp={fp}, fn={fn}, tn={tn}.")
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "far": _ratio(fp, fp + tn),
        "mar": _ratio(fn, fn + tp),
    }


def point_metrics(flags: Any, labels: Any) -> dict[str, Any]:
    """Point-wise precision, recall, F1, counts, FAR and MAR of yes/no ``flags`` against ``labels``.

    ``flags``: bool (or 0/1) per row, NaN = no decision = not flagged. ``labels``: 0/1 per row,
    NaN = unlabelled (the row is dropped). Returns a dict with keys ``precision``, ``recall``,
    ``f1``, ``tp``, ``fp``, ``fn``, ``tn``, ``far``, ``mar``; ratios with a zero denominator are
    NaN (see the module docstring). No point adjustment.
    """
    f = _flags(flags)
    y = _labels(labels)
    _check_same_rows(flags, labels, "flags", "labels", f.size, y.size)
    keep = ~np.isnan(y)
    pos = (y == 1.0)
    neg = keep & ~pos
    tp = int(np.count_nonzero(f & pos))
    fp = int(np.count_nonzero(f & neg))
    return metrics_from_counts(tp, fp, int(np.count_nonzero(pos)) - tp, int(np.count_nonzero(neg)) - fp)


# ---------------------------------------------------------------------------------------------
# Threshold-free metrics from scores
# ---------------------------------------------------------------------------------------------

def _score_array(scores: np.ndarray) -> np.ndarray:
    """NaN -> -inf, so unscored rows rank below every scored row (and tie with each other)."""
    s = np.asarray(scores, dtype=float)
    return np.where(np.isnan(s), -np.inf, s)


def _ranked(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(scores ready to rank, positive mask) of the labelled rows: NaN labels dropped, NaN scores
    ranked lowest."""
    s, y = _values(scores, "scores").astype(float), _labels(labels)
    _check_same_rows(scores, labels, "scores", "labels", s.size, y.size)
    keep = ~np.isnan(y)
    return _score_array(s[keep]), y[keep] == 1.0


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve: the probability that a random positive row outscores a random
    negative one (ties count one half). NaN scores rank lowest; NaN labels are dropped.
    NaN when only one class is present."""
    return _roc_auc(*_ranked(scores, labels))


def _roc_auc(s: np.ndarray, pos: np.ndarray) -> float:
    n_pos = int(np.count_nonzero(pos))
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # Mann-Whitney U with average ranks for ties
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    boundaries = np.flatnonzero(sorted_s[1:] != sorted_s[:-1]) + 1    # starts of tie groups (-inf safe)
    starts = np.concatenate(([0], boundaries))
    stops = np.concatenate((boundaries, [s.size]))
    avg_rank = (starts + stops + 1) / 2.0                       # 1-based mean rank per group
    ranks = np.empty(s.size)
    ranks[order] = np.repeat(avg_rank, stops - starts)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def pr_auc(scores: Any, labels: Any) -> float:
    """Area under the precision-recall curve as *average precision*:
    ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds, highest first (the step-wise
    definition, as in scikit-learn; no optimistic interpolation). A random score gets about the
    share of positives. NaN scores rank lowest; NaN labels are dropped; NaN without positives."""
    return _pr_auc(*_ranked(scores, labels))


def _pr_auc(s: np.ndarray, pos: np.ndarray) -> float:
    n_pos = int(np.count_nonzero(pos))
    if n_pos == 0:
        return math.nan
    order = np.argsort(-s, kind="mergesort")
    sorted_s, sorted_pos = s[order], pos[order]
    tp_cum = np.cumsum(sorted_pos)
    # last position of each group of tied scores: one threshold per distinct score
    last = np.concatenate((np.flatnonzero(sorted_s[1:] != sorted_s[:-1]), [s.size - 1]))
    tp = tp_cum[last].astype(float)
    flagged = last + 1.0
    precision = tp / flagged
    recall = tp / n_pos
    recall_prev = np.concatenate(([0.0], recall[:-1]))
    return float(np.sum((recall - recall_prev) * precision))


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------

def find_events(labels: Any) -> np.ndarray:
    """The events in ``labels``: an ``(n, 2)`` int array of ``[start, stop)`` row positions of
    the maximal runs of 1. NaN labels end a run (they are not positive)."""
    y = _labels(labels)
    return _events(y == 1.0)


def _events(pos: np.ndarray) -> np.ndarray:
    d = np.diff(np.concatenate(([0], pos.astype(np.int8), [0])))
    return np.column_stack((np.flatnonzero(d == 1), np.flatnonzero(d == -1))).astype(np.int64)


def event_metrics(flags: Any, labels: Any) -> dict[str, Any]:
    """Event-wise recall and detection delay (in rows) of ``flags`` against ``labels``.

    Returns ``n_events``, ``n_detected``, ``event_recall`` (NaN without events), ``mean_delay``
    and ``median_delay`` (rows, over detected events; NaN when none is detected) and ``delays``
    (a tuple, one per event: rows to the first flag inside it, or ``None`` when missed).
    """
    f = _flags(flags)
    y = _labels(labels)
    _check_same_rows(flags, labels, "flags", "labels", f.size, y.size)
    return _event_metrics(f, y == 1.0)


def _event_metrics(f: np.ndarray, pos: np.ndarray) -> dict[str, Any]:
    ev = _events(pos)
    hits = np.flatnonzero(f & pos)
    delays: list[Optional[int]] = []
    if ev.size:
        # the first flagged positive row at or after each event's start; inside the event iff < stop
        if hits.size:
            i = np.searchsorted(hits, ev[:, 0])
            first = hits[np.minimum(i, hits.size - 1)]
            inside = (i < hits.size) & (first < ev[:, 1])
        else:
            first, inside = ev[:, 0], np.zeros(len(ev), dtype=bool)
        delays = [int(first[k] - ev[k, 0]) if inside[k] else None for k in range(len(ev))]
    found = np.array([d for d in delays if d is not None], dtype=float)
    return {
        "n_events": int(len(ev)),
        "n_detected": int(found.size),
        "event_recall": _ratio(found.size, len(ev)),
        "mean_delay": float(found.mean()) if found.size else math.nan,
        "median_delay": float(np.median(found)) if found.size else math.nan,
        "delays": tuple(delays),
    }


def point_adjust(flags: Any, labels: Any) -> np.ndarray:
    """Point-adjusted flags: every row of an event counts as flagged when any row of it is.

    This is the adjustment many papers apply before F1; it rewards a single lucky flag inside a
    long event with the whole event, so scores computed on it are optimistic.
    """
    f = _flags(flags)
    y = _labels(labels)
    _check_same_rows(flags, labels, "flags", "labels", f.size, y.size)
    return _point_adjust(f, y == 1.0)


def _point_adjust(f: np.ndarray, pos: np.ndarray) -> np.ndarray:
    out = f.copy()
    for start, stop in _events(pos):
        if f[start:stop].any():
            out[start:stop] = True
    return out


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------

def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{100 * v:.1f} %" if pct else f"{v:.3f}"
    return str(v)


@dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate`. Ratios are fractions in [0, 1]; NaN = undefined (0/0).

    Flag-based fields (precision ... mar, event fields) are ``None`` when scores were given
    without a threshold; ``pr_auc``/``roc_auc`` are ``None`` when only flags were given;
    ``f1_point_adjusted`` is ``None`` unless ``point_adjust=True`` was asked (it is optimistic).
    """

    n_rows: int                 # rows evaluated (after dropping unlabelled / ignored rows)
    n_positive: int             # rows labelled 1
    n_unscored: int             # rows with a NaN score (treated per ``unscored``)
    n_unlabelled: int           # rows with a NaN label (always dropped)
    unscored: str
    threshold: Optional[float]
    precision: Optional[float]
    recall: Optional[float]
    f1: Optional[float]
    tp: Optional[int]
    fp: Optional[int]
    fn: Optional[int]
    tn: Optional[int]
    far: Optional[float]
    mar: Optional[float]
    pr_auc: Optional[float]
    roc_auc: Optional[float]
    n_events: int
    n_detected: Optional[int]
    event_recall: Optional[float]
    mean_delay: Optional[float]
    median_delay: Optional[float]
    delays: Optional[tuple]
    f1_point_adjusted: Optional[float] = None

    @property
    def n_flagged(self) -> Optional[int]:
        """Rows flagged (tp + fp); None without a threshold."""
        return None if self.tp is None or self.fp is None else int(self.tp) + int(self.fp)

    def as_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (``delays`` as a list)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["delays"] is not None:
            out["delays"] = list(out["delays"])
        return out

    def __repr__(self) -> str:
        lines = [f"Evaluation({self.n_rows} rows, {self.n_positive} anomalous, "
                 f"{self.n_events} events"
                 + (f", {self.n_unscored} unscored ({'not flagged' if self.unscored == 'negative' else 'ignored'})"
                    if self.n_unscored else "")
                 + (f", {self.n_unlabelled} unlabelled dropped" if self.n_unlabelled else "") + ")"]
        if self.f1 is not None:
            thr = "" if self.threshold is None else f" at threshold {self.threshold:.4g}"
            lines.append(f"  point-wise{thr}: precision {_fmt(self.precision)}  recall {_fmt(self.recall)}  "
                         f"F1 {_fmt(self.f1)}  (tp {self.tp}, fp {self.fp}, fn {self.fn}, tn {self.tn})")
            lines.append(f"  SKAB: FAR {_fmt(self.far, True)}  MAR {_fmt(self.mar, True)}")
            lines.append(f"  events: recall {_fmt(self.event_recall)} ({self.n_detected}/{self.n_events} found), "
                         f"mean delay {_fmt(self.mean_delay)} rows")
        else:
            lines.append("  no threshold given: pass threshold=... for precision / recall / F1")
        if self.pr_auc is not None:
            lines.append(f"  from scores: PR-AUC {_fmt(self.pr_auc)}  ROC-AUC {_fmt(self.roc_auc)}")
        if self.f1_point_adjusted is not None:
            lines.append(f"  point-adjusted F1 {_fmt(self.f1_point_adjusted)} (optimistic: one flag counts "
                         f"for its whole event)")
        return "\n".join(lines)


def evaluate(scores_or_flags: Any, labels: Any, *, threshold: Optional[float] = None,
             point_adjust: bool = False, unscored: str = "negative") -> Evaluation:
    """Compare a detector's output with ground-truth ``labels`` (1 = anomalous row).

    ``scores_or_flags`` is one of

    * a :class:`~msda_widgets.engine.detector.Detection` (from ``Detector.detect``): its scores
      and, unless ``threshold`` is given, its threshold;
    * **bool** values (list, array, Series): yes/no flags, e.g. ``Detector.predict(df)``;
    * **numbers**: anomaly scores (higher = more anomalous; NaN = unscored). PR-AUC and ROC-AUC
      come from them; precision / recall / F1 / FAR / MAR / events need ``threshold``
      (flags = ``score > threshold``) and are ``None`` without it. Integer 0/1 predictions are
      numbers too: pass ``flags.astype(bool)`` to evaluate them as flags.

    ``labels``: 0/1 or bool per row (NaN = unlabelled, dropped). Both must have the same length
    and, if both are pandas objects, the same index. ``point_adjust=True`` adds the optimistic
    point-adjusted F1 (``f1_point_adjusted``). ``unscored``: ``"negative"`` (default: NaN-score rows
    are not flagged and rank lowest) or ``"ignore"`` (dropped). Returns an :class:`Evaluation`.
    """
    if unscored not in UNSCORED_MODES:
        raise ConfigError(f"unscored={unscored!r} is not one of {', '.join(map(repr, UNSCORED_MODES))}.")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) \
                or math.isnan(float(threshold)):
            raise ConfigError(f"threshold must be a number; got {threshold!r}")
        threshold = float(threshold)
    source = scores_or_flags
    detection_threshold = getattr(source, "threshold", None)
    if hasattr(source, "scores") and hasattr(source, "anomalies"):   # a Detection
        source = source.scores
        if threshold is None and detection_threshold is not None:
            threshold = float(detection_threshold)
    if isinstance(source, pd.Series) and isinstance(source.dtype, pd.BooleanDtype):
        source = source.fillna(False).astype(bool)   # nullable flags: NA (no decision) = not flagged
    values = _values(source, "scores_or_flags")
    y = _labels(labels)
    _check_same_rows(source, labels, "scores_or_flags", "labels", values.size, y.size)

    is_flags = values.dtype.kind == "b"
    if is_flags:
        if threshold is not None:
            raise ConfigError("threshold was given but scores_or_flags holds True/False flags; pass "
                              "the scores to apply a threshold, or leave threshold out.")
        s = None
        flags = values
        nan_scores = np.zeros(values.size, dtype=bool)
    else:
        s = values.astype(float)
        nan_scores = np.isnan(s)
        flags = (s > threshold) if threshold is not None else None   # NaN > t is False

    labelled = ~np.isnan(y)
    n_unlabelled = int(np.count_nonzero(~labelled))
    n_unscored = int(np.count_nonzero(nan_scores & labelled))
    keep = labelled & ~nan_scores if unscored == "ignore" else labelled
    pos = y[keep] == 1.0
    # Events are runs of label 1 in the rows as given: an unlabelled row ends a run (as in
    # find_events), and dropped rows never join two runs; delays count real rows.
    pos_all = y == 1.0

    out: dict[str, Any] = dict(n_rows=int(np.count_nonzero(keep)), n_positive=int(np.count_nonzero(pos)),
                               n_unscored=n_unscored, n_unlabelled=n_unlabelled, unscored=unscored,
                               threshold=threshold, n_events=int(len(_events(pos_all))))
    if flags is not None:
        f_all = flags & keep          # an ignored row is never a hit
        f = f_all[keep]
        tp = int(np.count_nonzero(f & pos))
        fp = int(np.count_nonzero(f & ~pos))
        out.update(metrics_from_counts(tp, fp, int(np.count_nonzero(pos)) - tp,
                                       int(np.count_nonzero(~pos)) - fp))
        ev = _event_metrics(f_all, pos_all)
        out.update({k: ev[k] for k in ("n_detected", "event_recall", "mean_delay", "median_delay", "delays")})
        if point_adjust:
            adjusted = _point_adjust(f_all, pos_all)[keep]
            tp_a = int(np.count_nonzero(adjusted & pos))
            fp_a = int(np.count_nonzero(adjusted & ~pos))
            out["f1_point_adjusted"] = _ratio(2 * tp_a, tp_a + fp_a + np.count_nonzero(pos))
    else:
        if point_adjust:
            raise ConfigError("point_adjust=True needs flags: pass a threshold with the scores.")
        out.update(dict(precision=None, recall=None, f1=None, tp=None, fp=None, fn=None, tn=None,
                        far=None, mar=None, n_detected=None, event_recall=None, mean_delay=None,
                        median_delay=None, delays=None))
    if s is not None:
        ss = _score_array(s[keep])
        out["pr_auc"] = _pr_auc(ss, pos)
        out["roc_auc"] = _roc_auc(ss, pos)
    else:
        out["pr_auc"] = out["roc_auc"] = None
    return Evaluation(**out)
