"""Tests for msda_widgets.engine.metrics: hand-computed cases, edge cases and clear refusals."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

import msda_widgets
from msda_widgets.engine.metrics import (
    Evaluation,
    evaluate,
    event_metrics,
    find_events,
    metrics_from_counts,
    point_adjust,
    point_metrics,
    pr_auc,
    roc_auc,
)
from msda_widgets.errors import ConfigError, DataError

#            0  1  2  3  4  5  6  7  8  9
LABELS = [0, 0, 1, 1, 1, 0, 0, 1, 1, 0]
FLAGS = [0, 1, 0, 1, 1, 0, 0, 0, 0, 1]
# tp: rows 3, 4 -> 2; fp: rows 1, 9 -> 2; fn: rows 2, 7, 8 -> 3; tn: rows 0, 5, 6 -> 3


def test_point_metrics_hand_computed():
    m = point_metrics(np.array(FLAGS, dtype=bool), LABELS)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 2, 3, 3)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 5)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 3))
    assert m["far"] == pytest.approx(2 / 5)        # FP / (FP + TN)
    assert m["mar"] == pytest.approx(3 / 5)        # FN / (FN + TP)
    assert set(m) == {"precision", "recall", "f1", "tp", "fp", "fn", "tn", "far", "mar"}


def test_f1_equals_skab_formula():
    # SKAB's tsad: f1 = TP / (TP + (FN + FP) / 2)
    m = metrics_from_counts(tp=7, fp=3, fn=5, tn=100)
    assert m["f1"] == pytest.approx(7 / (7 + (5 + 3) / 2))


def test_no_positive_labels_gives_nan_recall_not_zero():
    m = point_metrics([True, False, False], [0, 0, 0])
    assert math.isnan(m["recall"]) and math.isnan(m["mar"])
    assert m["precision"] == 0.0 and m["f1"] == 0.0 and m["far"] == pytest.approx(1 / 3)


def test_no_flags_and_no_positives_everything_undefined_but_far():
    m = point_metrics([False] * 4, [0] * 4)
    assert math.isnan(m["precision"]) and math.isnan(m["recall"]) and math.isnan(m["f1"])
    assert m["far"] == 0.0 and m["tn"] == 4


def test_no_flags_with_positives():
    m = point_metrics([False] * 4, [0, 1, 1, 0])
    assert math.isnan(m["precision"]) and m["recall"] == 0.0 and m["f1"] == 0.0 and m["mar"] == 1.0


def test_nan_flags_are_not_flagged_and_nan_labels_dropped():
    m = point_metrics([np.nan, 1.0, 1.0, 0.0], [1, np.nan, 1, 0])
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 0, 1, 1)


def test_nullable_boolean_series():
    flags = pd.Series([True, pd.NA, False], dtype="boolean")
    m = point_metrics(flags, pd.Series([1, 1, 0]))
    assert (m["tp"], m["fn"], m["tn"]) == (1, 1, 1)


def test_point_metrics_is_fast_on_30k_rows():
    rng = np.random.default_rng(0)
    f, y = rng.random(30_000) > 0.9, rng.random(30_000) > 0.95
    point_metrics(f, y)
    t0 = time.perf_counter()
    for _ in range(10):
        point_metrics(f, y)
    assert (time.perf_counter() - t0) / 10 < 0.02


# --- refusals --------------------------------------------------------------------------------

def test_mismatched_lengths_are_refused():
    with pytest.raises(DataError, match="3 rows but labels has 2"):
        point_metrics([True, False, True], [0, 1])
    with pytest.raises(DataError, match="same rows"):
        evaluate(np.arange(5.0), [0, 1])


def test_different_indexes_are_refused():
    s = pd.Series([0.1, 0.2], index=[0, 1])
    y = pd.Series([0, 1], index=[5, 6])
    with pytest.raises(DataError, match="different indexes.*reindex"):
        evaluate(s, y)


def test_non_binary_labels_and_flags_are_refused():
    with pytest.raises(DataError, match="labels must be 0/1.*2.0"):
        point_metrics([True, False], [0, 2])
    with pytest.raises(DataError, match="flags must be True/False or 0/1.*threshold"):
        point_metrics([0.3, 0.9], [0, 1])
    with pytest.raises(DataError, match="numbers or booleans"):
        evaluate(["a", "b"], [0, 1])
    with pytest.raises(DataError, match="one column"):
        evaluate(pd.DataFrame({"a": [1.0], "b": [2.0]}), [1])


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="unscored='drop'"):
        evaluate([0.1, 0.2], [0, 1], threshold=0.1, unscored="drop")
    with pytest.raises(ConfigError, match="threshold must be a number"):
        evaluate([0.1, 0.2], [0, 1], threshold="quantile")
    with pytest.raises(ConfigError, match="flags"):
        evaluate([True, False], [0, 1], threshold=0.5)
    with pytest.raises(ConfigError, match="point_adjust=True needs flags"):
        evaluate([0.1, 0.2], [0, 1], point_adjust=True)


# --- AUCs ------------------------------------------------------------------------------------

def test_roc_auc_hand_computed_with_ties():
    # positives 0.8, 0.4; negatives 0.4, 0.1 -> pairs: 1, 1, 0.5 (tie), 1 -> 3.5 / 4
    assert roc_auc([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    assert roc_auc([1.0, 2.0], [1, 0]) == 0.0
    assert roc_auc([1.0, 2.0, 3.0], [0, 1, 1]) == 1.0


def test_pr_auc_hand_computed():
    # ranked: 0.9 (1), 0.8 (0), 0.7 (1), 0.1 (0): AP = 1/2 * 1 + 1/2 * 2/3
    assert pr_auc([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx(0.5 + 1 / 3)
    # a tie groups the rows into one threshold: 0.5 (1), 0.5 (0) -> P = 1/2 at R = 1
    assert pr_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)


def test_aucs_undefined_with_one_class():
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))
    assert math.isnan(roc_auc([0.1, 0.2], [0, 0]))
    assert math.isnan(pr_auc([0.1, 0.2], [0, 0]))
    assert pr_auc([0.1, 0.2], [1, 1]) == 1.0


def test_nan_scores_rank_lowest_in_aucs():
    # the unscored positive ranks below the scored negative
    assert roc_auc([np.nan, 0.1], [1, 0]) == 0.0
    assert roc_auc([np.nan, np.nan, 0.5], [1, 0, 1]) == pytest.approx(0.75)


def test_aucs_match_scikit_learn_on_random_data():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(5):
        y = (rng.random(500) > 0.85).astype(int)
        s = np.round(rng.normal(size=500) + 1.5 * y, 1)        # rounded: many ties
        assert roc_auc(s, y) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
        assert pr_auc(s, y) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)


def test_random_scores_have_pr_auc_near_the_positive_share():
    rng = np.random.default_rng(2)
    y = rng.random(20_000) < 0.1
    assert pr_auc(rng.random(20_000), y) == pytest.approx(0.1, abs=0.02)
    assert roc_auc(rng.random(20_000), y) == pytest.approx(0.5, abs=0.03)


# --- events ----------------------------------------------------------------------------------

def test_find_events():
    assert find_events(LABELS).tolist() == [[2, 5], [7, 9]]
    assert find_events([1, 1, 0, 1]).tolist() == [[0, 2], [3, 4]]
    assert find_events([0, 0]).shape == (0, 2)
    assert find_events([1, np.nan, 1]).tolist() == [[0, 1], [2, 3]]


def test_event_metrics_hand_computed():
    e = event_metrics(np.array(FLAGS, dtype=bool), LABELS)
    # event [2, 5) first flagged at row 3 -> delay 1; event [7, 9) missed
    assert e["n_events"] == 2 and e["n_detected"] == 1
    assert e["event_recall"] == 0.5
    assert e["delays"] == (1, None)
    assert e["mean_delay"] == 1.0 and e["median_delay"] == 1.0


def test_a_flag_just_before_or_after_an_event_does_not_detect_it():
    e = event_metrics([1, 0, 0, 1], [0, 1, 1, 0])
    assert e["n_detected"] == 0 and e["delays"] == (None,) and math.isnan(e["mean_delay"])


def test_event_metrics_without_events():
    e = event_metrics([True, False], [0, 0])
    assert e["n_events"] == 0 and math.isnan(e["event_recall"]) and e["delays"] == ()


def test_point_adjust_fills_detected_events_only():
    adjusted = point_adjust(np.array(FLAGS, dtype=bool), LABELS)
    assert adjusted.astype(int).tolist() == [0, 1, 1, 1, 1, 0, 0, 0, 0, 1]


# --- evaluate --------------------------------------------------------------------------------

def test_evaluate_scores_with_threshold():
    scores = np.array([0.0, 0.9, 0.1, 0.8, 0.7, 0.2, 0.3, 0.4, 0.4, 0.95])
    r = evaluate(scores, LABELS, threshold=0.5)
    assert isinstance(r, Evaluation)
    # flags = scores > 0.5 = FLAGS
    assert (r.tp, r.fp, r.fn, r.tn) == (2, 2, 3, 3)
    assert r.f1 == pytest.approx(4 / 9)
    assert r.pr_auc == pytest.approx(pr_auc(scores, LABELS))
    assert r.roc_auc == pytest.approx(roc_auc(scores, LABELS))
    assert r.event_recall == 0.5 and r.delays == (1, None)
    assert r.f1_point_adjusted is None
    assert r.threshold == 0.5 and r.n_rows == 10 and r.n_positive == 5 and r.n_events == 2


def test_evaluate_threshold_is_strict():
    r = evaluate([1.0, 2.0], [1, 1], threshold=1.0)
    assert (r.tp, r.fn) == (1, 1)


def test_evaluate_point_adjust_is_optimistic_and_only_on_request():
    flags = np.array(FLAGS, dtype=bool)
    r = evaluate(flags, LABELS, point_adjust=True)
    # adjusted: tp 3 (rows 2-4), fp 2, fn 2 -> F1 = 6 / 10
    assert r.f1_point_adjusted == pytest.approx(0.6)
    assert r.f1_point_adjusted > r.f1
    assert "optimistic" in repr(r)
    assert "point-adjusted" not in repr(evaluate(flags, LABELS))


def test_evaluate_flags_have_no_aucs():
    r = evaluate(np.array(FLAGS, dtype=bool), LABELS)
    assert r.pr_auc is None and r.roc_auc is None and r.f1 == pytest.approx(4 / 9)


def test_evaluate_scores_without_threshold_gives_only_aucs():
    r = evaluate([0.1, 0.9, 0.2], [0, 1, 0])
    assert r.f1 is None and r.tp is None and r.delays is None
    assert r.roc_auc == 1.0
    assert "pass threshold=" in repr(r)


def test_unscored_rows_negative_by_default_or_ignored():
    scores = [np.nan, np.nan, 0.9, 0.1]
    labels = [1, 0, 1, 0]
    r = evaluate(scores, labels, threshold=0.5)
    assert r.n_unscored == 2 and r.n_rows == 4
    assert (r.tp, r.fp, r.fn, r.tn) == (1, 0, 1, 2)      # the unscored anomaly is missed
    assert r.roc_auc == pytest.approx(2.5 / 4)          # pairs: tie 0.5, 0, 1, 1
    r2 = evaluate(scores, labels, threshold=0.5, unscored="ignore")
    assert r2.n_rows == 2 and (r2.tp, r2.fp, r2.fn, r2.tn) == (1, 0, 0, 1) and r2.roc_auc == 1.0
    assert "2 unscored (ignored)" in repr(r2)


def test_unlabelled_rows_are_dropped():
    r = evaluate([0.9, 0.9, 0.1], [np.nan, 1, 0], threshold=0.5)
    assert r.n_unlabelled == 1 and r.n_rows == 2 and r.fp == 0


def test_as_dict_and_frozen():
    r = evaluate(np.array([0.9, 0.1]), [1, 0], threshold=0.5)
    d = r.as_dict()
    assert d["f1"] == 1.0 and d["delays"] == [0] and d["unscored"] == "negative"
    with pytest.raises(Exception):
        r.f1 = 0.0  # type: ignore[misc]
    text = repr(r)
    assert "F1 1.000" in text and "FAR 0.0 %" in text and "ROC-AUC 1.000" in text


def test_evaluate_accepts_pandas_with_the_same_index():
    idx = pd.date_range("2024-01-01", periods=4, freq="h")
    r = evaluate(pd.Series([0.1, 0.9, 0.8, 0.2], index=idx), pd.Series([0, 1, 1, 0], index=idx),
                 threshold=0.5)
    assert r.f1 == 1.0 and r.mean_delay == 0.0


def test_evaluate_a_detection_uses_its_threshold(series):
    from msda_widgets import Detector
    labels = pd.Series(0, index=series.index)
    labels.iloc[600] = 1
    det = Detector(lookback=8, epochs=2, seed=0, num_threads=1, conv_channels=(8,), dense_units=8)
    det.fit(series.iloc[:400])
    detection = det.detect(series)
    r = evaluate(detection, labels)
    assert r.threshold == pytest.approx(det.threshold_)
    assert r.n_unscored == det.lookback
    flags = evaluate(detection.anomalies, labels)
    assert (flags.tp, flags.fp, flags.fn, flags.tn) == (r.tp, r.fp, r.fn, r.tn)
    assert evaluate(detection, labels, threshold=1e9).fp == 0


def test_lazy_export():
    assert msda_widgets.evaluate is evaluate
    assert msda_widgets.Evaluation is Evaluation
    assert "evaluate" in dir(msda_widgets)


def test_n_flagged_counts_the_flagged_rows():
    from msda_widgets.engine.metrics import evaluate
    flags = np.array([True, False, True, True, False])
    labels = np.array([1, 0, 0, 1, 1])
    r = evaluate(flags, labels)
    assert r.n_flagged == 3 == r.tp + r.fp
    assert evaluate(np.array([0.1, 0.9, 0.3]), np.array([0, 1, 0])).n_flagged is None  # scores, no threshold


def test_events_do_not_join_across_unlabelled_rows():
    from msda_widgets.engine.metrics import evaluate, find_events
    labels = np.array([1, 1, np.nan, 1, 1, 0, 0, 0])
    flags = np.array([False, False, False, True, False, False, False, False])
    assert find_events(labels).tolist() == [[0, 2], [3, 5]]
    r = evaluate(flags, labels)
    assert r.n_events == 2 and r.n_detected == 1 and r.event_recall == 0.5
    assert r.delays == (None, 0)
    assert r.n_unlabelled == 1 and r.tp == 1 and r.fn == 3


def test_ignored_unscored_rows_keep_their_place_in_events():
    from msda_widgets.engine.metrics import evaluate
    scores = np.array([0.1, np.nan, 0.9, 0.1, 0.1])
    labels = np.array([1, 1, 1, 0, 0])
    r = evaluate(scores, labels, threshold=0.5, unscored="ignore")
    assert r.n_events == 1 and r.delays == (2,)      # delay in real rows, the NaN row included
    assert r.n_rows == 4 and r.tp == 1 and r.fn == 1
    adjusted = evaluate(scores, labels, threshold=0.5, unscored="ignore", point_adjust=True)
    assert adjusted.f1_point_adjusted == 1.0          # both scored event rows count as found


def test_nullable_boolean_flags_are_flags():
    from msda_widgets.engine.metrics import evaluate
    flags = pd.Series([True, False, True, pd.NA], dtype="boolean")
    r = evaluate(flags, [1, 0, 0, 1])
    assert r.precision == 0.5 and r.recall == 0.5 and r.pr_auc is None   # NA = not flagged
    plain = evaluate(np.array([True, False, True, False]), [1, 0, 0, 1])
    assert (r.tp, r.fp, r.fn, r.tn) == (plain.tp, plain.fp, plain.fn, plain.tn)
