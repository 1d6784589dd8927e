"""Explanations: faithful to the detector's own score, additive where promised, and side-effect free."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from msda_widgets.engine import catalogue
from msda_widgets import ConfigError, DataError, Detector, NotFittedError, datasets
from msda_widgets.engine.explain import (EXPLAINERS, SHAP_TOLERANCE, ExplainMethod, Explanation, ExplanationSet,
                                         register_explainer, score_module)

LOOKBACK = 10
CNN = dict(model="deepcnn", lookback=LOOKBACK, epochs=15, batch_size=64, seed=0, num_threads=1)
LSTM = dict(model="lstm_ae", lookback=LOOKBACK, hidden_sizes=(32, 16), epochs=15, batch_size=64, seed=0,
            num_threads=1)
N_STEPS, N_SENSORS, SEED, N_FIT = 4000, 6, 5, 1200
SPIKE_ROW, SPIKE_SENSOR = 3000, "flow"


@pytest.fixture(scope="module")
def plant():
    return datasets.make_sensors(n_steps=N_STEPS, n_sensors=N_SENSORS, anomalies=12, seed=SEED)


@pytest.fixture(scope="module")
def spiked(plant):
    """The clean reference of the same plant with one sensor spiked (8 std) at one timestamp."""
    clean = datasets.make_sensors(n_steps=N_STEPS, n_sensors=N_SENSORS, anomalies=0, seed=SEED).data
    out = clean.copy()
    out.iloc[SPIKE_ROW, out.columns.get_loc(SPIKE_SENSOR)] += 8 * clean[SPIKE_SENSOR].std()
    return out


@pytest.fixture(scope="module")
def fitted(plant):
    """Each model fitted once per module, on the clean-ish first part of the plant data."""
    cache = {}

    def get(model: str) -> Detector:
        if model not in cache:
            cache[model] = Detector(**(CNN if model == "deepcnn" else LSTM)).fit(plant.data.iloc[:N_FIT])
        return cache[model]
    return get


@pytest.fixture(scope="module", params=["deepcnn", "lstm_ae"])
def det(request, fitted):
    return fitted(request.param)


@pytest.fixture(scope="module")
def cnn(fitted):
    return fitted("deepcnn")


@pytest.fixture(scope="module")
def lstm(fitted):
    return fitted("lstm_ae")


@pytest.fixture(scope="module")
def found(det, plant):
    return det.detect(plant.data)


def flagged_rows(found, start: int = N_FIT, limit: int = 12) -> list[int]:
    rows = np.flatnonzero(found.anomalies.to_numpy()[start:]) + start
    return [int(i) for i in rows[np.linspace(0, len(rows) - 1, min(limit, len(rows))).round().astype(int)]]


def methods(det) -> list[str]:
    return [m for m, spec in EXPLAINERS.items() if spec.info.serves(catalogue.model_info(det.config.model.model))]


# ------------------------------------------------------------------------- the score itself

@pytest.mark.parametrize("score", ["l2", "mahalanobis"])
@pytest.mark.parametrize("reduction", ["last", "window"])
def test_score_module_is_the_detectors_score(det, plant, score, reduction):
    d = copy.copy(det).set_params(score=score, reduction=reduction)
    sd, scaled = d.prepare(plant.data)
    windows, judged = d.layout.windows(scaled), d.layout.judged(len(scaled))
    idx = np.linspace(0, len(judged) - 1, 40).round().astype(int)
    x = torch.from_numpy(np.ascontiguousarray(windows[idx]))  # the detector's own layout
    with torch.no_grad():
        ours = score_module(d)(x).double().numpy()
    theirs = d.score(plant.data).to_numpy()[judged[idx]]  # the index is in time order
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    row = int(judged[idx[-1]])
    assert d.explain(plant.data, row, method="error").score == pytest.approx(theirs[-1], rel=1e-5)


# ------------------------------------------------------------------------- additivity

def test_shap_values_add_up_within_the_stated_tolerance(det, found):
    rel, absolute = SHAP_TOLERANCE[det.kind]
    result = det.explain_many(found, flagged_rows(found), method="shap")
    assert len(result) >= 5
    for e in result:
        gap = e.score - e.base_value
        assert e.delta == pytest.approx(e.values.sum() - gap, abs=1e-9)
        assert abs(e.delta) <= rel * abs(gap) + absolute, (e.when, e.delta, gap)
    assert result[0].base_value == pytest.approx(float(np.mean(
        score_module(det)(torch.from_numpy(np.asarray(det.background_))).detach().numpy())), rel=1e-5)


def test_shap_gap_is_monte_carlo_error_that_shrinks_with_more_samples(det, found):
    rows = flagged_rows(found, limit=10)

    def median_gap(nsamples: int) -> float:
        result = det.explain_many(found, rows, method="shap", nsamples=nsamples)
        return float(np.median([abs(e.delta) / abs(e.score - e.base_value) for e in result]))

    few, many = median_gap(50), median_gap(3200)
    assert many <= 0.05 and many < 0.5 * few, (few, many)


def test_integrated_gradients_add_up_within_their_convergence_delta(det, found):
    for e in det.explain_many(found, flagged_rows(found), method="integrated_gradients"):
        gap = e.score - e.base_value
        assert abs(e.values.sum() - gap) <= abs(e.delta) + 1e-4 * abs(gap) + 1e-5
        assert abs(e.delta) <= 0.02 * abs(gap) + 1e-3
        baseline = np.asarray(det.background_).mean(axis=0, keepdims=True).astype(np.float32)
        with torch.no_grad():
            at_baseline = float(score_module(det)(torch.from_numpy(baseline)))
        assert e.base_value == pytest.approx(at_baseline, rel=1e-5)


def test_kernel_shap_is_exactly_efficient(det, found):
    for e in det.explain_many(found, flagged_rows(found, limit=4), method="kernel_shap"):
        assert e.values.sum() == pytest.approx(e.score - e.base_value, abs=1e-5)
        # each sensor's value is spread uniformly over the window's steps
        assert np.allclose(e.values, e.values[:1])


def test_error_values_are_the_squared_errors(det, found):
    row = flagged_rows(found)[0]
    e = det.explain(found, row, method="error")
    assert e.values.sum() == pytest.approx(e.score ** 2, rel=1e-5)  # share of the squared score
    contributions = found.contributions.iloc[row]
    np.testing.assert_allclose(e.by_sensor[contributions.index].to_numpy(), contributions.to_numpy(), rtol=1e-5,
                               atol=1e-6 * contributions.sum())
    assert e.base_value == 0 and e.delta is None
    if det.kind == "forecast" or det.config.score.reduction == "last":
        assert np.all(e.values[:-1] == 0)


# ------------------------------------------------------------------------- faithfulness

def test_top_sensor_is_a_true_culprit_for_most_events(det, plant, found):
    """The event's highest-scored flagged timestamp; the top sensor of shap and IG is a culprit."""
    index, scores, flags = plant.data.index, found.scores.to_numpy(), found.anomalies.to_numpy()
    chosen = []
    for event in plant.events:
        lo, hi = index.get_loc(event.start), index.get_loc(event.end)
        if lo < N_FIT:
            continue
        best = lo + int(np.argmax(scores[lo:hi + 1]))
        if flags[best]:
            chosen.append(best)
    assert len(chosen) >= 5
    floor = np.mean([plant.culprits.iloc[r].mean() for r in chosen])
    for method in ("shap", "integrated_gradients"):
        result = det.explain_many(found, chosen, method=method)
        hits = [bool(plant.culprits.iloc[r][e.top_sensors[0]]) for e, r in zip(result, chosen)]
        assert np.mean(hits) >= 0.75 > floor + 0.3, (method, hits)


@pytest.mark.parametrize("model", ["cnn", "lstm"])
def test_a_single_spike_is_blamed_on_its_sensor(model, request, spiked):
    d = request.getfixturevalue(model)
    when = spiked.index[SPIKE_ROW]
    found = d.detect(spiked)
    assert found.anomalies.loc[when]
    for method in methods(d):
        e = d.explain(found, when, method=method)
        if method == "grad_cam":
            assert e.by_time_only
            continue
        assert e.top_sensors[0] == SPIKE_SENSOR, (method, e.by_sensor)
        if d.kind == "forecast" and method in ("error", "shap", "saliency", "input_x_gradient",
                                               "integrated_gradients"):
            cell = np.unravel_index(np.argmax(np.abs(e.values)), e.values.shape)
            assert e.offsets[cell[0]] == 0 and e.sensors[cell[1]] == SPIKE_SENSOR, method


def test_deleting_the_top_sensors_lowers_the_score_more_than_random_ones(det, found):
    rows = flagged_rows(found, limit=20)
    module = score_module(det)
    baseline = np.asarray(det.background_, dtype=np.float32).mean(axis=0)
    rng = np.random.default_rng(0)
    for method in ("shap", "integrated_gradients"):
        for k in (1, 2):
            top_drops, random_drops = [], []
            for e in det.explain_many(found, rows, method=method):
                order = [e.sensors.index(s) for s in e.top_sensors]
                sets = [order[:k]] + [list(rng.choice(len(e.sensors), size=k, replace=False)) for _ in range(10)]
                batch = np.repeat(e.inputs[None], len(sets), axis=0).copy()
                for b, cols in enumerate(sets):
                    batch[b][:, cols] = baseline[:, cols]
                with torch.no_grad():
                    masked = module(torch.from_numpy(batch)).double().numpy()
                top_drops.append(e.score - masked[0])
                random_drops.append(np.mean(e.score - masked[1:]))
            assert np.mean(top_drops) > 1.5 * np.mean(random_drops) > 0, (method, k)


# ------------------------------------------------------------------------- no side effects

def _state(model):
    return ([m.training for m in model.modules()],
            [(p.requires_grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()],
            [(dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks)) for m in model.modules()])


def _assert_same_state(model, before):
    modes, params, hooks = _state(model)
    assert modes == before[0]
    for (rg, g), (rg0, g0) in zip(params, before[1]):
        assert rg == rg0
        assert (g is None and g0 is None) or torch.equal(g, g0)
    assert [tuple(map(list, h)) for h in hooks] == [tuple(map(list, h)) for h in before[2]]


@pytest.fixture
def dirty(det):
    """The detector's network in a deliberately unusual state: mixed modes, a frozen parameter,
    stale gradients and a user hook; restored after the test."""
    model = det.model_
    model.train()
    first = next(model.parameters())
    first.requires_grad_(False)
    for p in list(model.parameters())[1:]:
        p.grad = torch.full_like(p, 0.5)
    handle = model.register_forward_hook(lambda *a: None)
    yield det
    handle.remove()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None


def test_methods_leave_no_trace(dirty, found):
    det = dirty
    row = flagged_rows(found)[0]
    torch_threads = torch.get_num_threads()
    np.random.seed(123)
    torch.manual_seed(123)
    np_before, torch_before = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    before = _state(det.model_)
    for method in methods(det):
        det.explain(found, row, method=method)
        _assert_same_state(det.model_, before)
    det.activations(found, row)
    det.explain_many(found, [row, row + 1], method="shap")
    _assert_same_state(det.model_, before)
    assert np.array_equal(np.random.get_state()[1], np_before)
    assert torch.equal(torch.get_rng_state(), torch_before)
    assert torch.get_num_threads() == torch_threads


def test_state_is_restored_when_a_method_raises(dirty, found):
    det = dirty

    def broken(ctx, x, *, seed: int = 0):
        ctx.model.train()
        for p in ctx.model.parameters():
            p.requires_grad_(True)
            p.grad = None
        ctx.model.register_forward_hook(lambda *a: None)
        np.random.seed(seed)
        torch.manual_seed(seed)
        raise RuntimeError("boom")

    register_explainer(ExplainMethod.create("broken_for_test", broken, "raises", additive=False))
    try:
        before = _state(det.model_)
        np_before, torch_before = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
        with pytest.raises(RuntimeError, match="boom"):
            det.explain(found, flagged_rows(found)[0], method="broken_for_test")
        _assert_same_state(det.model_, before)
        assert np.array_equal(np.random.get_state()[1], np_before)
        assert torch.equal(torch.get_rng_state(), torch_before)
    finally:
        EXPLAINERS.pop("broken_for_test")
        catalogue.METHOD_INFO.pop("broken_for_test")


def test_same_seed_same_values_other_seed_other_values(det, found):
    row = flagged_rows(found)[1]
    for method in ("lime", "kernel_shap", "shap"):
        a = det.explain(found, row, method=method)
        b = det.explain(found, row, method=method)
        assert np.array_equal(a.values, b.values), method
    other = det.explain(found, row, method="shap", seed=1)
    assert not np.allclose(a.values, other.values)


# ------------------------------------------------------------------------- errors

def test_errors_name_the_problem(cnn, lstm, plant):
    data = plant.data
    with pytest.raises(DataError, match="1999-01-01"):
        cnn.explain(data, "1999-01-01")
    with pytest.raises(DataError, match="outside the data"):
        cnn.explain(data, len(data) + 5)
    with pytest.raises(DataError, match=f"first {LOOKBACK} rows"):
        cnn.explain(data, 3)
    with pytest.raises(DataError, match=f"first {LOOKBACK - 1} rows"):
        lstm.explain(data, data.index[LOOKBACK - 2])
    lstm.explain(data, LOOKBACK - 1, method="error")  # the autoencoder judges a window's last row
    with pytest.raises(ConfigError, match="'shap'.*'integrated_gradients'"):
        cnn.explain(data, 500, method="deeplift")
    with pytest.raises(ConfigError, match="CNN"):
        lstm.explain(data, 500, method="grad_cam")
    with pytest.raises(ConfigError, match="nsamples"):
        cnn.explain(data, 500, method="shap", n_samples=10)
    with pytest.raises(ConfigError, match="positive"):
        cnn.explain(data, 500, method="shap", nsamples=0)


# ------------------------------------------------------------------------- results

def test_explanation_layout_and_labels(det, plant, found):
    row = flagged_rows(found)[0]
    e = det.explain(found, row, method="shap")
    assert isinstance(e, Explanation) and e.method == "shap" and e.when == plant.data.index[row]
    n_steps = LOOKBACK + 1 if det.kind == "forecast" else LOOKBACK
    assert e.values.shape == e.inputs.shape == e.raw.shape == (n_steps, N_SENSORS)
    assert list(e.offsets) == list(range(-(n_steps - 1), 1))
    assert e.sensors == tuple(plant.data.columns)
    np.testing.assert_allclose(e.raw, plant.data.iloc[row - n_steps + 1:row + 1].to_numpy())
    np.testing.assert_allclose(e.inputs, det.scaler_.transform(e.raw), rtol=1e-6)
    assert e.score == found.scores.iloc[row] and e.threshold == det.threshold_
    by_sensor = e.by_sensor
    assert by_sensor.name == "attribution" and list(by_sensor.index) == e.top_sensors
    assert np.all(np.diff(np.abs(by_sensor.to_numpy())) <= 0)
    np.testing.assert_allclose(by_sensor[list(e.sensors)].to_numpy(), e.values.sum(axis=0))
    m = e.matrix
    assert m.index.name == "offset" and list(m.index) == list(e.offsets) and list(m.columns) == list(e.sensors)
    d = json.loads(json.dumps(e.to_dict()))
    assert d["method"] == "shap" and d["top_sensors"] == e.top_sensors and len(d["values"]) == n_steps
    with pytest.raises(ValueError):
        e.values[0, 0] = 1.0  # results are read-only


def test_when_may_be_a_label_a_string_a_position_or_a_frame_row(cnn, plant):
    data = plant.data
    found = cnn.detect(data)
    row = flagged_rows(found)[0]
    ts = data.index[row]
    ref = cnn.explain(found, row, method="integrated_gradients")
    for when, src in [(ts, found), (str(ts), found), (ts.to_pydatetime(), data), (row, data), (row - len(data), found)]:
        e = cnn.explain(src, when, method="integrated_gradients")
        assert e.when == ts and e.position == row
        np.testing.assert_allclose(e.values, ref.values, rtol=1e-5, atol=1e-7)
        assert e.score == pytest.approx(ref.score, rel=1e-5)


def test_explain_many_equals_explain_row_by_row(det, found):
    rows = flagged_rows(found, limit=70)[::-1]  # more than one shap call's worth, out of order
    many = det.explain_many(found, rows, method="shap", nsamples=50, seed=3)
    assert isinstance(many, ExplanationSet) and len(many) == len(rows)
    for k in (0, len(rows) // 2, len(rows) - 1):
        one = det.explain(found, rows[k], method="shap", nsamples=50, seed=3)
        assert many[k].when == one.when
        np.testing.assert_allclose(many[k].values, one.values, rtol=1e-4, atol=1e-6)
    imp = many.global_importance
    expected = np.abs(np.stack([e.values.sum(axis=0) for e in many])).mean(axis=0)
    np.testing.assert_allclose(imp[list(many[0].sensors)].to_numpy(), expected)
    assert np.all(np.diff(imp.to_numpy()) <= 0)
    frame = many.to_frame()
    assert len(frame) == len(rows) and list(frame["top_sensor"]) == [e.top_sensors[0] for e in many]


def test_explain_many_defaults_to_every_flagged_row(cnn, plant):
    head = plant.data.iloc[:2200]
    many = cnn.explain_many(head, method="error")
    expected = cnn.predict(head)
    assert [e.when for e in many] == list(expected.index[expected])


def _grad_cam_by_hand(det, inputs: np.ndarray) -> np.ndarray:
    """Grad-CAM of the last conv block (after its ReLU), computed without captum."""
    model = det.model_
    relu = model.features[[i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv1d)][-1] + 1]
    seen = {}
    handle = relu.register_forward_hook(lambda m, i, out: seen.__setitem__("a", out))
    try:
        x = torch.from_numpy(inputs[None].astype(np.float32))
        score = score_module(det)(x)
        (grad,) = torch.autograd.grad(score.sum(), seen["a"])
    finally:
        handle.remove()
    weights = grad.mean(dim=2, keepdim=True)  # (1, channels, 1)
    cam = torch.relu((weights * seen["a"]).sum(dim=1, keepdim=True)).detach()  # (1, 1, L')
    return torch.nn.functional.interpolate(cam.double(), size=LOOKBACK, mode="linear")[0, 0].numpy()


def test_grad_cam_is_the_gradient_weighted_last_conv_map(cnn, plant):
    found = cnn.detect(plant.data)
    nonzero = 0  # Grad-CAM's ReLU zeroes a window where no time step pushes the score up (common)
    for row in flagged_rows(found, limit=30):
        e = cnn.explain(found, row, method="grad_cam")
        assert e.by_time_only and np.all(e.values >= 0) and np.all(e.values[-1] == 0)  # offset 0 gets 0
        assert np.allclose(e.values, e.values[:, :1])  # each step split equally over the sensors
        np.testing.assert_allclose(e.values.sum(axis=1)[:-1], _grad_cam_by_hand(cnn, e.inputs), rtol=1e-4, atol=1e-7)
        nonzero += e.values.sum() > 0
    assert nonzero >= 3


def test_background_is_rebuilt_when_the_model_changes(plant):
    d = Detector(**{**CNN, "epochs": 2}).fit(plant.data.iloc[:800])
    a = d.explain(plant.data, 700, method="integrated_gradients")
    d.model_ = copy.deepcopy(d.model_)
    with torch.no_grad():
        for p in d.model_.parameters():
            p.mul_(1.1)
    b = d.explain(plant.data, 700, method="integrated_gradients")
    assert b.base_value != a.base_value and b.score != a.score


def test_activations_of_both_models(cnn, lstm, plant):
    row = 2500
    acts = cnn.activations(plant.data, row)
    assert list(acts) == ["conv1", "conv2", "dense", "output"]
    assert acts["conv1"].shape == (LOOKBACK, 32) and acts["conv2"].shape == (LOOKBACK // 2, 32)
    assert list(acts["conv1"].index) == list(range(-LOOKBACK, 0)) and acts["conv1"].index.name == "offset"
    assert acts["dense"].shape == (1, 40) and list(acts["output"].columns) == list(plant.data.columns)
    assert (acts["conv1"].to_numpy() >= 0).all()  # after the ReLU
    acts = lstm.activations(plant.data, row)
    assert list(acts) == ["encoder1", "encoder2", "decoder1", "decoder2", "output"]
    assert [a.shape for a in acts.values()] == [(LOOKBACK, 32), (LOOKBACK, 16), (LOOKBACK, 16), (LOOKBACK, 32),
                                               (LOOKBACK, N_SENSORS)]
    assert list(acts["output"].index) == list(range(-(LOOKBACK - 1), 1))


def test_registry_refuses_duplicates_and_documents_each_method():
    assert {"error", "shap", "kernel_shap", "saliency", "input_x_gradient", "integrated_gradients", "grad_cam",
            "lime"} <= set(EXPLAINERS)
    with pytest.raises(ConfigError, match="already registered"):
        register_explainer(EXPLAINERS["shap"])
    for spec in EXPLAINERS.values():
        assert spec.description and "\n" not in spec.description
    assert EXPLAINERS["grad_cam"].kinds == ("forecast",)
    assert {m.name for m in catalogue.methods()} >= set(EXPLAINERS)
    assert all(EXPLAINERS[n].description == catalogue.method_info(n).description for n in EXPLAINERS)
    assert EXPLAINERS["shap"].additive and EXPLAINERS["kernel_shap"].additive
    assert set(EXPLAINERS["shap"].options) == {"nsamples", "seed"}
    assert set(EXPLAINERS["integrated_gradients"].options) == {"n_steps"}


@pytest.mark.parametrize("score", ["l2", "mahalanobis"])
@pytest.mark.parametrize("reduction", ["last", "window"])
def test_every_score_setting_is_explained_additively(lstm, plant, score, reduction):
    d = copy.copy(lstm).set_params(score=score, reduction=reduction)
    found = d.detect(plant.data)
    rows = flagged_rows(found, limit=3)
    for e in d.explain_many(found, rows, method="integrated_gradients"):
        assert abs(e.delta) <= 0.02 * abs(e.score - e.base_value) + 1e-3
    e = d.explain(found, rows[0], method="kernel_shap")
    assert e.values.sum() == pytest.approx(e.score - e.base_value, abs=1e-5)
    e = d.explain(found, rows[0], method="error")
    if score == "l2":
        assert e.values.sum() == pytest.approx(e.score ** 2, rel=1e-5)
    if reduction == "window":  # the window's mean squared error, spread over its steps
        assert np.count_nonzero(e.values.sum(axis=1)) == LOOKBACK


def test_whens_as_a_mask_an_empty_list_and_a_foreign_detection(cnn, lstm, plant):
    found = cnn.detect(plant.data)
    mask = found.anomalies & (np.arange(len(found.anomalies)) > 3000)
    many = cnn.explain_many(found, mask, method="error")
    assert [e.when for e in many] == list(mask.index[mask])
    empty = cnn.explain_many(found, [], method="shap")
    assert len(empty) == 0 and empty.global_importance.empty
    assert list(empty.to_frame().columns)[:2] == ["when", "position"]
    other = Detector(**{**CNN, "epochs": 1}).fit(plant.data.iloc[:600, :4])
    with pytest.raises(DataError, match="other sensors"):
        other.explain(found, 700)
    with pytest.raises(NotFittedError):
        Detector().explain(plant.data, 700)
