"""The strong simple detectors (PCA, z-score, k-means, isolation forest) as engine modules."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from msda_widgets.engine.baselines import (DEFAULT_CLUSTERS, DEFAULT_PCA_COMPONENTS, IForestModel, KMeansModel,
                                           PCAModel, ZScoreModel, average_path_length)
from msda_widgets.errors import ConfigError, DataError, NotFittedError

L, S = 6, 4  # lookback and sensors of the synthetic windows


def normal_windows(n: int, seed: int = 0, lookback: int = L, sensors: int = S) -> np.ndarray:
    """``(n, lookback, sensors)`` float32 windows of correlated noisy sines (a scaled sensor series)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n + lookback - 1)
    rows = np.stack([(1 + 0.2 * s) * np.sin(2 * np.pi * t / 24 + 0.5 * s) for s in range(sensors)], axis=1)
    rows = rows + 0.1 * rng.standard_normal(rows.shape)
    return np.lib.stride_tricks.sliding_window_view(rows, lookback, axis=0).transpose(0, 2, 1).astype(np.float32)


def window_scores(model: torch.nn.Module, windows: np.ndarray) -> np.ndarray:
    """The anomaly score of each window: the reconstruction error's norm, or the model's own score."""
    x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    with torch.no_grad():
        out = model(x)
    if model.kind == "score":
        return out.double().numpy()
    return (x - out).double().square().sum(dim=(1, 2)).sqrt().numpy()


def build(name: str) -> torch.nn.Module:
    return {"pca": lambda: PCAModel(S, L, n_components=3),
            "zscore": lambda: ZScoreModel(S, L),
            "kmeans": lambda: KMeansModel(S, L, n_clusters=8),
            "iforest": lambda: IForestModel(S, L)}[name]()


ALL = ("pca", "zscore", "kmeans", "iforest")


# -- PCA ------------------------------------------------------------------------------------------
def test_pca_matches_a_numpy_svd_reference():
    train = normal_windows(300)
    model = PCAModel(S, L, n_components=5)
    model.fit_windows(train)
    flat = train.reshape(len(train), -1).astype(np.float64)
    mean = flat.mean(axis=0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    test = normal_windows(50, seed=1) + 0.3
    x = test.reshape(len(test), -1).astype(np.float64)
    expected = ((x - mean) @ vt[:5].T) @ vt[:5] + mean
    got = model(torch.from_numpy(test.astype(np.float64))).numpy().reshape(len(test), -1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.explained_variance_.numpy(), s[:5] ** 2 / (len(train) - 1), rtol=1e-10)
    # float32 input gives float32 output, close to the float64 one
    got32 = model(torch.from_numpy(test))
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy().reshape(len(test), -1), expected, atol=1e-4)


def test_pca_with_every_component_reconstructs_exactly():
    train = normal_windows(200)
    model = PCAModel(S, L, n_components=L * S)
    model.fit_windows(train)
    unseen = torch.from_numpy(np.random.default_rng(3).normal(size=(20, L, S)) * 5)
    np.testing.assert_allclose(model(unseen).numpy(), unseen.numpy(), rtol=0, atol=1e-10)


def test_pca_default_components_and_a_sensor_constant_in_training():
    assert PCAModel(S, L).k == DEFAULT_PCA_COMPONENTS
    assert PCAModel(2, 3).k == 6  # capped by lookback x sensors
    train = normal_windows(200)
    train[:, :, 2] = 0.7  # sensor 2 never moved while training
    model = PCAModel(S, L, n_components=L * S)
    model.fit_windows(train)
    moved = train[:1].copy()
    moved[0, -1, 2] += 4.0
    err = (torch.from_numpy(moved) - model(torch.from_numpy(moved))).numpy()[0]
    # a direction without training variance is not kept, so the move is all error
    assert err[-1, 2] == pytest.approx(4.0, abs=1e-4)
    assert np.abs(np.delete(err.reshape(-1), (L - 1) * S + 2)).max() < 1e-4


def test_pca_default_with_fewer_windows_than_components_uses_what_the_data_spans():
    train = normal_windows(4)
    model = PCAModel(S, L)  # 10 components by default, but 4 windows span at most 3 directions
    model.fit_windows(train)
    assert int((model.components_.abs().sum(dim=1) > 0).sum()) == 3
    x = torch.from_numpy(train)
    np.testing.assert_allclose(model(x).numpy(), train, atol=1e-5)  # the windows lie in their own span


# -- z-score -----------------------------------------------------------------------------------------
def test_zscore_returns_the_training_mean_of_each_sensor():
    train = normal_windows(100)
    model = ZScoreModel(S, L)
    model.fit_windows(train)
    expected = train.reshape(-1, S).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(model.mean_.numpy(), expected, rtol=1e-12)
    x = torch.from_numpy(normal_windows(7, seed=5))
    out = model(x)
    assert out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(expected, x.shape), rtol=1e-6)
    out[0, 0, 0] = 99.0  # the output is not a view of the fitted mean
    assert float(model.mean_[0]) != 99.0


# -- k-means ---------------------------------------------------------------------------------------------
def test_kmeans_finds_planted_clusters_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 2 * 3)) * 10
    points = np.concatenate([c + 0.1 * rng.standard_normal((60, 6)) for c in centres])
    windows = points[rng.permutation(len(points))].reshape(-1, 2, 3).astype(np.float32)
    model = KMeansModel(3, 2, n_clusters=3)
    model.fit_windows(windows, seed=4)
    found = model.centroids_.numpy()
    dist = np.linalg.norm(found[:, None, :] - centres[None, :, :], axis=2)
    assert sorted(dist.argmin(axis=1).tolist()) == [0, 1, 2]  # one centroid per planted cluster
    assert dist.min(axis=1).max() < 0.1
    assert float(model.inertia_) == pytest.approx(180 * 6 * 0.01, rel=0.25)
    again = KMeansModel(3, 2, n_clusters=3)
    again.fit_windows(windows, seed=4)
    assert torch.equal(again.centroids_, model.centroids_)
    # the output is each window's nearest centroid
    x = torch.from_numpy(windows)
    nearest = np.linalg.norm(windows.reshape(len(x), 1, -1) - found[None], axis=2).argmin(axis=1)
    np.testing.assert_array_equal(model.nearest(x).numpy(), nearest)
    np.testing.assert_allclose(model(x).numpy().reshape(len(x), -1), found[nearest], rtol=1e-6)


def test_kmeans_default_clusters_capped_by_the_windows():
    assert KMeansModel(S, L).k == DEFAULT_CLUSTERS
    train = normal_windows(5)
    model = KMeansModel(S, L)  # 20 clusters by default, only 5 windows
    model.fit_windows(train, seed=0)
    assert model.centroids_.shape == (DEFAULT_CLUSTERS, L * S)
    x = torch.from_numpy(train)
    np.testing.assert_allclose(model(x).numpy(), train, atol=1e-6)  # each window is its own centroid


# -- gradients ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pca", "zscore", "kmeans"])
def test_error_gradient_matches_finite_differences(name):
    model = build(name)
    model.fit_windows(normal_windows(200), seed=0)
    x = torch.from_numpy(normal_windows(3, seed=9).astype(np.float64) + 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: v - model(v), (x,), eps=1e-6, atol=1e-6)
    # the score (norm of the error) too, and autograd reaches x through the model's own output
    assert torch.autograd.gradcheck(lambda v: (v - model(v)).square().sum(dim=(1, 2)).sqrt(), (x,),
                                    eps=1e-6, atol=1e-6)
    (g,) = torch.autograd.grad(model(x).sum(), x)
    assert g.shape == x.shape


def test_zscore_and_kmeans_error_gradients_are_the_offsets():
    for name in ("zscore", "kmeans"):
        model = build(name)
        model.fit_windows(normal_windows(200), seed=0)
        x = torch.from_numpy(normal_windows(2, seed=2).astype(np.float64)).requires_grad_(True)
        (g,) = torch.autograd.grad((x - model(x)).square().sum(), x)
        np.testing.assert_allclose(g.numpy(), 2 * (x - model(x)).detach().numpy(), rtol=1e-12)


# -- isolation forest --------------------------------------------------------------------------------------
def reference_path_length(model: IForestModel, window: np.ndarray, tree: int) -> float:
    """One window's path length in one stored tree, walked node by node."""
    flat = window.reshape(-1).astype(np.float32).astype(np.float64)
    node, depth = 0, 0
    left, right = model.children_left[tree].numpy(), model.children_right[tree].numpy()
    while left[node] != -1:
        f, thr = int(model.feature[tree, node]), float(model.threshold[tree, node])
        node = left[node] if flat[f] <= thr else right[node]
        depth += 1
    n = int(model.n_node_samples[tree, node])
    c = 0.0 if n <= 1 else 1.0 if n == 2 else 2 * (math.log(n - 1) + np.euler_gamma) - 2 * (n - 1) / n
    return depth + c


def test_iforest_vectorised_paths_match_a_node_by_node_walk():
    train = normal_windows(300)
    model = IForestModel(S, L, n_estimators=10, max_samples=64)
    model.fit_windows(train, seed=1)
    test = np.concatenate([normal_windows(20, seed=3), normal_windows(5, seed=4) * 3])
    got = model.path_lengths(torch.from_numpy(test)).numpy()
    for i in range(len(test)):
        for t in range(10):
            assert got[i, t] == reference_path_length(model, test[i], t)
    h = np.array([[reference_path_length(model, w, t) for t in range(10)] for w in test])
    c = 2 * (math.log(63) + np.euler_gamma) - 2 * 63 / 64
    np.testing.assert_allclose(model(torch.from_numpy(test.astype(np.float64))).numpy(),
                               2.0 ** (-h.sum(axis=1) / (10 * c)), rtol=1e-14)


def test_iforest_trees_are_well_formed():
    model = IForestModel(S, L, n_estimators=20, max_samples=32)
    model.fit_windows(normal_windows(100), seed=0)
    left, right = model.children_left.numpy(), model.children_right.numpy()
    count, feature = model.n_node_samples.numpy(), model.feature.numpy()
    assert int(model.sample_size) == 32
    for t in range(20):
        assert count[t, 0] == 32
        depth = {0: 0}
        for node in range(left.shape[1]):
            if node not in depth:
                continue
            if left[t, node] == -1:
                assert feature[t, node] == -2 and right[t, node] == -1
                continue
            a, b = left[t, node], right[t, node]
            assert count[t, a] >= 1 and count[t, b] >= 1 and count[t, a] + count[t, b] == count[t, node]
            assert 0 <= feature[t, node] < L * S
            depth[a] = depth[b] = depth[node] + 1
        assert max(depth.values()) <= 5  # ceil(log2(32))
        assert sum(count[t, n] for n in depth if left[t, n] == -1) == 32


def test_iforest_hand_built_tree_gives_the_formula():
    model = IForestModel(1, 2, n_estimators=1, max_samples=8)
    state = model.state_dict()
    # root (8 windows) splits value 0 at 0.5: left a leaf of 5; right (3) splits value 1 at 0.0
    # into a leaf of 1 and a leaf of 2 (nodes numbered depth first, left first)
    state["children_left"][0, :5] = torch.tensor([1, -1, 3, -1, -1], dtype=torch.int32)
    state["children_right"][0, :5] = torch.tensor([2, -1, 4, -1, -1], dtype=torch.int32)
    state["feature"][0, :5] = torch.tensor([0, -2, 1, -2, -2], dtype=torch.int32)
    state["threshold"][0, :5] = torch.tensor([0.5, -2.0, 0.0, -2.0, -2.0], dtype=torch.float64)
    state["n_node_samples"][0, :5] = torch.tensor([8, 5, 3, 1, 2], dtype=torch.int32)
    state["sample_size"] = torch.tensor(8)
    model.load_state_dict(state, strict=True)
    x = torch.tensor([[0.2, 9.0], [0.9, -1.0], [0.5, 0.0], [0.6, 0.0], [0.6, 0.1]], dtype=torch.float64)[:, :, None]
    c = lambda n: 2 * (math.log(n - 1) + np.euler_gamma) - 2 * (n - 1) / n  # noqa: E731
    h = [1 + c(5), 2, 1 + c(5), 2, 2 + 1]  # a value equal to the threshold goes left
    np.testing.assert_allclose(model(x).numpy(), [2 ** (-v / c(8)) for v in h], rtol=1e-15)


def test_average_path_length():
    n = torch.tensor([0, 1, 2, 3, 256])
    got = average_path_length(n).numpy()
    assert got[:3].tolist() == [0.0, 0.0, 1.0]
    assert got[3] == pytest.approx(2 * (math.log(2) + np.euler_gamma) - 4 / 3)
    assert got[4] == pytest.approx(2 * (math.log(255) + np.euler_gamma) - 2 * 255 / 256)


def test_iforest_isolated_points_score_higher_and_scores_are_in_0_1():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(400, L, S)).astype(np.float32)
    model = IForestModel(S, L)
    model.fit_windows(dense, seed=0)
    normal = window_scores(model, rng.normal(size=(200, L, S)))
    isolated = window_scores(model, rng.normal(size=(20, L, S)) + 6.0)
    assert ((normal > 0) & (normal < 1)).all() and ((isolated > 0) & (isolated < 1)).all()
    assert isolated.min() > normal.max()
    assert 0.3 < np.median(normal) < 0.55


def test_iforest_is_deterministic_with_a_seed_and_varies_without():
    train = normal_windows(200)
    a, b, c = (IForestModel(S, L, n_estimators=30, max_samples=64) for _ in range(3))
    a.fit_windows(train, seed=7)
    b.fit_windows(train, seed=7)
    c.fit_windows(train, seed=8)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.threshold, c.threshold)


def test_iforest_on_identical_windows_scores_one_half():
    model = IForestModel(S, L, n_estimators=5, max_samples=16)
    model.fit_windows(np.ones((30, L, S), dtype=np.float32), seed=0)
    assert (model.children_left[:, 0] == -1).all()  # nothing to split on
    np.testing.assert_array_equal(window_scores(model, np.zeros((3, L, S))), 0.5)


def test_iforest_before_fit_refuses():
    with pytest.raises(NotFittedError, match="fit_windows"):
        IForestModel(S, L)(torch.zeros(2, L, S))


# -- every detector -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_injected_anomaly_scores_above_the_99th_percentile(name):
    model = build(name)
    model.fit_windows(normal_windows(500, seed=0), seed=0)
    held_out = normal_windows(400, seed=1)
    anomaly = held_out[200:201].copy()
    anomaly[0, :, 1] += 4.0  # sensor 1 shifts by 4 over the whole window
    normal = window_scores(model, held_out)
    assert window_scores(model, anomaly)[0] > np.quantile(normal, 0.99)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_is_bit_identical(name):
    model = build(name)
    model.fit_windows(normal_windows(150), seed=0)
    x = torch.from_numpy(normal_windows(40, seed=2) * 1.5)
    expected = model(x)
    fresh = build(name)
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(fresh(x), expected)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    loaded = build(name)
    loaded.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    assert torch.equal(loaded(x), expected)


@pytest.mark.parametrize("name", ALL)
def test_buffer_shapes_do_not_depend_on_the_data(name):
    small, large = build(name), build(name)
    small.fit_windows(normal_windows(12), seed=0)
    large.fit_windows(normal_windows(300), seed=0)
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in large.state_dict().items()}
    large.load_state_dict(small.state_dict(), strict=True)
    x = torch.from_numpy(normal_windows(5, seed=3))
    assert torch.equal(large(x), small(x))


@pytest.mark.parametrize("name", ALL)
def test_kind_and_shapes(name):
    model = build(name)
    model.fit_windows(normal_windows(100), seed=0)
    out = model(torch.from_numpy(normal_windows(9)))
    expected = {"pca": "reconstruct", "zscore": "reconstruct", "kmeans": "reconstruct", "iforest": "score"}[name]
    assert model.kind == model.task == expected
    assert out.shape == ((9,) if expected == "score" else (9, L, S))
    assert out.dtype == torch.float32
    with pytest.raises(DataError, match=rf"\(B, {L}, {S}\)"):
        model(torch.zeros(2, L + 1, S))


# -- refusals --------------------------------------------------------------------------------------------
def test_pca_with_more_components_than_window_values_is_refused():
    with pytest.raises(ConfigError, match=r"n_components=25 is more than the 24 values of a window.*"
                                          r"n_components <= 24"):
        PCAModel(S, L, n_components=25)


@pytest.mark.parametrize("make", [
    lambda: PCAModel(S, L, n_components=0), lambda: PCAModel(S, L, n_components=True),
    lambda: KMeansModel(S, L, n_clusters=-1), lambda: KMeansModel(S, L, max_iter=0),
    lambda: IForestModel(S, L, n_estimators=0), lambda: IForestModel(S, L, max_samples=1.5),
    lambda: ZScoreModel(0, L)])
def test_bad_hyperparameters_are_refused(make):
    with pytest.raises(ConfigError, match="must be a positive integer"):
        make()


def test_kmeans_tolerance_must_be_a_number():
    with pytest.raises(ConfigError, match="tol must be a number >= 0"):
        KMeansModel(S, L, tol=-1.0)


def fitted_state(model: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


BAD_FITS = [
    ("pca", lambda: PCAModel(S, L, n_components=5), normal_windows(4),
     r"n_components=5 is more than the 4 training windows; choose n_components <= 4"),
    ("pca", lambda: PCAModel(S, L), normal_windows(1), r"at least 2 training windows"),
    ("kmeans", lambda: KMeansModel(S, L, n_clusters=5), normal_windows(3),
     r"n_clusters=5 is more than the 3 training windows; choose n_clusters <= 3"),
    ("iforest", lambda: IForestModel(S, L, n_estimators=5), normal_windows(1),
     r"at least 2 training windows.*more rows"),
    ("zscore", lambda: ZScoreModel(S, L), normal_windows(5)[:, :, :3], r"shape \(N, lookback=6, sensors=4\)"),
    ("kmeans", lambda: KMeansModel(S, L, n_clusters=2), np.full((5, L, S), np.nan, np.float32), r"NaN or infinite"),
    ("pca", lambda: PCAModel(S, L), normal_windows(5).reshape(5, -1), r"shape \(N, lookback"),
]


@pytest.mark.parametrize("name, make, data, message", BAD_FITS)
def test_a_fit_that_cannot_run_is_refused_and_keeps_the_previous_fit(name, make, data, message):
    model = make()
    model.fit_windows(normal_windows(50, seed=1), seed=0)
    before = fitted_state(model)
    with pytest.raises(DataError, match=message):
        model.fit_windows(data, seed=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
