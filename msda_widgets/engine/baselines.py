"""Strong simple detectors: PCA, z-score, k-means (KMeansAD) and an isolation forest.

They are ``torch.nn.Module`` s that learn in closed form (``fit_windows``) instead of by gradient
descent, and read the same windows ``(B, L, S)`` (``lookback`` steps, ``S`` sensors, already
scaled by the Detector) as the deep models:

* :class:`PCAModel` (``reconstruct``): the window, flattened to ``L * S`` values, projected on its
  first principal components and back;
* :class:`ZScoreModel` (``reconstruct``): each sensor's training mean, so the error is the
  deviation from the mean (a z-score once the Detector divides each sensor's residual by its
  spread on normal held-out data);
* :class:`KMeansModel` (``reconstruct``): the nearest k-means centroid of the flattened window, so
  the error is the distance to it (KMeansAD);
* :class:`IForestModel` (``score``): an isolation forest (Liu, Ting and Zhou, 2008) on the
  flattened windows; its output is the anomaly score itself.

The three ``reconstruct`` modules compute ``forward`` with torch operations only, so the error
``x - forward(x)`` can be differentiated with respect to ``x`` (gradient explanations, SHAP).
The forest's ``forward`` runs without gradients; only perturbation methods explain it.

Every fitted quantity is a registered buffer whose shape follows from the constructor's
arguments, so ``state_dict()`` / ``load_state_dict(strict=True)`` round-trip a fitted model
exactly and ``torch.save(..., weights_only=True)`` holds it (nothing is pickled). A fit that
cannot run on the data raises :class:`~msda_widgets.errors.DataError` (or
:class:`~msda_widgets.errors.ConfigError` for a setting that cannot fit the window shape) before
any buffer changes, so a failed fit leaves the previous fitted state intact.

numpy and torch only (scikit-learn is not needed).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError, NotFittedError

__all__ = ["PCAModel", "ZScoreModel", "KMeansModel", "IForestModel", "average_path_length",
           "DEFAULT_PCA_COMPONENTS", "DEFAULT_CLUSTERS", "DEFAULT_TREES", "DEFAULT_MAX_SAMPLES"]

#: Principal components a :class:`PCAModel` keeps unless told (capped by ``lookback * sensors``).
DEFAULT_PCA_COMPONENTS = 10
#: Clusters a :class:`KMeansModel` finds unless told (capped by the number of training windows).
DEFAULT_CLUSTERS = 20
#: Trees of an :class:`IForestModel` unless told (Liu et al.'s and scikit-learn's default).
DEFAULT_TREES = 100
#: Training windows each isolation tree is grown on, at most (Liu et al.'s ``psi``).
DEFAULT_MAX_SAMPLES = 256
#: Windows an isolation forest scores at a time (bounds the memory of one forward pass).
_FOREST_CHUNK = 2048
#: Training windows a PCA fit converts to float64 at a time.
_PCA_CHUNK = 4096


def _positive_int(value: object, name: str, model: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{model}: {name} must be a positive integer; got {value!r}.")
    return int(value)


def _connect(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out`` as a function of ``x`` with a zero derivative, so autograd can always reach ``x``
    through the model's output (the output of these models is locally constant in ``x``)."""
    return out + x * 0 if x.requires_grad else out


class _WindowModel(nn.Module):
    """What the baselines share: the window shape and the checks on what they are given."""

    kind = "reconstruct"
    #: Earlier name of ``kind`` (what a model does with a window).
    task = kind

    def __init__(self, n_sensors: int, lookback: int):
        super().__init__()
        name = type(self).__name__
        self.n_sensors = _positive_int(n_sensors, "n_sensors", name)
        self.lookback = _positive_int(lookback, "lookback", name)
        self.n_features = self.n_sensors * self.lookback

    def extra_repr(self) -> str:
        return f"n_sensors={self.n_sensors}, lookback={self.lookback}"

    def _training_rows(self, inputs: np.ndarray, min_windows: int, why: str) -> np.ndarray:
        """The training windows ``(N, L, S)`` as ``(N, L * S)`` (a view where it can be), after
        every check."""
        name = type(self).__name__
        arr = np.asarray(inputs)
        if arr.ndim != 3 or arr.shape[1:] != (self.lookback, self.n_sensors):
            raise DataError(f"{name} fits windows of shape (N, lookback={self.lookback}, "
                            f"sensors={self.n_sensors}); got an array of shape {arr.shape}.")
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{name} fits numeric windows; got values of type {arr.dtype}.")
        if len(arr) < min_windows:
            raise DataError(f"{name} needs at least {min_windows} training windows {why}; got {len(arr)}. "
                            f"Give it more rows (or a shorter lookback).")
        flat = arr.reshape(len(arr), -1)
        if flat.dtype.kind != "f":
            flat = flat.astype(np.float64)
        if not np.isfinite(flat).all():
            raise DataError(f"{name}: the training windows hold NaN or infinite values; impute or drop "
                            f"them before fitting.")
        return flat

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.lookback, self.n_sensors):
            raise DataError(f"{type(self).__name__} reads windows of shape (B, {self.lookback}, "
                            f"{self.n_sensors}); got {tuple(x.shape)}.")
        return x.reshape(x.shape[0], self.n_features)

    @staticmethod
    def _store(buffer: torch.Tensor, value: np.ndarray) -> None:
        with torch.no_grad():
            buffer.copy_(torch.from_numpy(np.array(value, copy=True)).reshape(buffer.shape).to(buffer.dtype))


class PCAModel(_WindowModel):
    """Reconstruction of the flattened window from its first principal components.

    ``forward(x) = ((x_flat - mean_) @ components_.T) @ components_ + mean_``, reshaped to
    ``(B, L, S)``. The components are the leading right singular vectors of the mean-centred
    training windows (float64: the eigenvectors of their scatter matrix when there are more
    windows than values, an SVD otherwise); each component's sign is chosen so that its largest
    entry is positive.

    ``n_components``: principal components kept. ``None`` (the default) keeps
    ``min(DEFAULT_PCA_COMPONENTS, lookback * n_sensors)``, and fewer when the training windows
    span fewer directions; an explicit value must be at most ``lookback * n_sensors`` (else
    ``ConfigError``) and at most the number of training windows (else ``DataError`` at fit).
    A component along which the training windows do not vary (its variance is below
    ``max(N, L*S) * eps`` times the largest) is left out (its row is zero), so a sensor that was
    constant in training is reconstructed as its mean and any movement of it is an error.

    Fitted buffers: ``mean_`` ``(L*S,)``, ``components_`` ``(k, L*S)``, ``explained_variance_``
    ``(k,)`` (float64).
    """

    kind = "reconstruct"

    def __init__(self, n_sensors: int, lookback: int, n_components: Optional[int] = None):
        super().__init__(n_sensors, lookback)
        if n_components is None:
            k = min(DEFAULT_PCA_COMPONENTS, self.n_features)
        else:
            k = _positive_int(n_components, "n_components", "PCAModel")
            if k > self.n_features:
                raise ConfigError(f"PCAModel: n_components={k} is more than the {self.n_features} values of "
                                  f"a window (lookback {self.lookback} x {self.n_sensors} sensors); choose "
                                  f"n_components <= {self.n_features} or a longer lookback.")
        self.n_components = n_components
        self.k = k
        self.register_buffer("mean_", torch.zeros(self.n_features, dtype=torch.float64))
        self.register_buffer("components_", torch.zeros(k, self.n_features, dtype=torch.float64))
        self.register_buffer("explained_variance_", torch.zeros(k, dtype=torch.float64))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_components={self.k}"

    def fit_windows(self, inputs: np.ndarray, seed: Optional[int] = None) -> None:
        """Fit on training windows ``(N, L, S)``; ``seed`` is unused (the fit is deterministic)."""
        flat = self._training_rows(inputs, 2, "to find principal directions")
        if self.n_components is not None and len(flat) < self.k:
            raise DataError(f"PCAModel: n_components={self.k} is more than the {len(flat)} training windows; "
                            f"choose n_components <= {len(flat)} or give it more rows.")
        n, d = flat.shape
        mean = flat.mean(axis=0, dtype=np.float64)
        if n > d:  # eigenvectors of the (d, d) scatter matrix, accumulated in float64 chunks
            scatter = np.zeros((d, d))
            for start in range(0, n, _PCA_CHUNK):
                part = flat[start:start + _PCA_CHUNK].astype(np.float64) - mean
                scatter += part.T @ part
            power, vectors = np.linalg.eigh(scatter)
            power, vt = np.maximum(power[::-1], 0.0), vectors[:, ::-1].T
        else:
            _, s, vt = np.linalg.svd(flat.astype(np.float64) - mean, full_matrices=False)
            power = s ** 2
        biggest = np.abs(vt).argmax(axis=1)
        vt = vt * np.sign(vt[np.arange(len(vt)), biggest])[:, None]
        keep = min(self.k, len(power))
        real = power[:keep] > power[0] * max(n, d) * np.finfo(np.float64).eps
        components = np.zeros((self.k, d))
        variance = np.zeros(self.k)
        components[:keep][real] = vt[:keep][real]
        variance[:keep][real] = power[:keep][real] / (n - 1)
        self._store(self.mean_, mean)
        self._store(self.components_, components)
        self._store(self.explained_variance_, variance)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, S) -> (B, L, S)
        flat = self._flat(x)
        mean = self.mean_.to(x.dtype)
        comp = self.components_.to(x.dtype)
        return (((flat - mean) @ comp.T) @ comp + mean).reshape(x.shape)


class ZScoreModel(_WindowModel):
    """Each sensor's training mean, at every step of the window.

    The error ``x - forward(x)`` is each value's deviation from its sensor's mean; the Detector
    divides each sensor's residual by its spread on normal held-out data, which makes the score
    a z-score. The output does not depend on ``x`` (its derivative is zero), the error does.

    Fitted buffer: ``mean_`` ``(S,)`` float64 (the mean over every step of every training window).
    """

    kind = "reconstruct"

    def __init__(self, n_sensors: int, lookback: int):
        super().__init__(n_sensors, lookback)
        self.register_buffer("mean_", torch.zeros(self.n_sensors, dtype=torch.float64))

    def fit_windows(self, inputs: np.ndarray, seed: Optional[int] = None) -> None:
        """Fit on training windows ``(N, L, S)``; ``seed`` is unused."""
        flat = self._training_rows(inputs, 1, "to take a mean")
        self._store(self.mean_, flat.reshape(-1, self.n_sensors).mean(axis=0, dtype=np.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, S) -> (B, L, S)
        self._flat(x)
        return _connect(self.mean_.to(x.dtype).expand(x.shape).clone(), x)


def _squared_distances(x: np.ndarray, c: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    """``(N, K)`` squared Euclidean distances (float64, never negative); ``x_sq``: ``(x * x).sum(1)``."""
    return np.maximum(x_sq[:, None] - 2.0 * (x @ c.T) + (c * c).sum(axis=1)[None, :], 0.0)


def _kmeans_plus_plus(x: np.ndarray, x_sq: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur and Vassilvitskii, 2007): each new centre is the best of
    ``2 + log(k)`` candidates drawn in proportion to the squared distance to the centres so far."""
    n = len(x)
    trials = 2 + int(math.log(k))
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    closest = _squared_distances(x, centres[:1], x_sq)[:, 0]
    for j in range(1, k):
        total = closest.sum()
        if total <= 0:  # every window already sits on a centre: any window will do
            candidates = rng.integers(n, size=trials)
        else:
            candidates = np.searchsorted(np.cumsum(closest), rng.random(trials) * total, side="right")
            candidates = np.minimum(candidates, n - 1)
        d2 = np.minimum(closest[:, None], _squared_distances(x, x[candidates], x_sq))
        best = int(d2.sum(axis=0).argmin())
        centres[j] = x[candidates[best]]
        closest = d2[:, best]
    return centres


def _lloyd(x: np.ndarray, x_sq: np.ndarray, centres: np.ndarray, max_iter: int,
           tol: float) -> tuple[np.ndarray, float]:
    """Lloyd iterations until the assignment stops changing, the centres move by at most ``tol``
    in total squared distance, or ``max_iter``; an emptied cluster moves to the window farthest
    from its centre. Returns (centres, inertia)."""
    k, n = len(centres), len(x)
    labels = None
    members = np.zeros((k, n))
    for _ in range(max_iter):
        d2 = _squared_distances(x, centres, x_sq)
        new = d2.argmin(axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        members.fill(0.0)
        members[labels, np.arange(n)] = 1.0
        moved = (members @ x) / np.maximum(counts, 1)[:, None]
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            far = np.argsort(-d2[np.arange(n), labels], kind="stable")[:len(empty)]
            moved[empty] = x[far]
        shift = float(((moved - centres) ** 2).sum())
        centres = moved
        if shift <= tol:
            break
    return centres, float(_squared_distances(x, centres, x_sq).min(axis=1).sum())


class KMeansModel(_WindowModel):
    """The nearest k-means centroid of the flattened window (KMeansAD).

    The error ``x - forward(x)`` is the window's offset from its nearest centroid. k-means++
    seeding and Lloyd iterations (numpy, float64), ``n_init`` seeded restarts, the lowest inertia
    kept. The output is piecewise constant in ``x`` (its derivative is zero), the error is not.

    ``n_clusters``: ``None`` (the default) finds ``DEFAULT_CLUSTERS`` clusters, or one per training
    window when there are fewer (the spare rows of ``centroids_`` repeat the first centroid, so
    they never change which centroid is nearest); an explicit value must be at most the number of
    training windows (else ``DataError``). ``max_iter``: Lloyd iterations per restart, at most;
    ``tol``: a restart stops once its centres move less than ``tol`` times the windows' mean
    per-value variance (in total squared distance), as scikit-learn's ``KMeans`` does.

    Fitted buffers: ``centroids_`` ``(n_clusters, L*S)`` and ``inertia_`` ``()`` (float64).
    """

    kind = "reconstruct"

    def __init__(self, n_sensors: int, lookback: int, n_clusters: Optional[int] = None, max_iter: int = 100,
                 n_init: int = 1, tol: float = 1e-4):
        super().__init__(n_sensors, lookback)
        self.n_clusters = None if n_clusters is None else _positive_int(n_clusters, "n_clusters", "KMeansModel")
        self.k = DEFAULT_CLUSTERS if n_clusters is None else self.n_clusters
        self.max_iter = _positive_int(max_iter, "max_iter", "KMeansModel")
        self.n_init = _positive_int(n_init, "n_init", "KMeansModel")
        if isinstance(tol, bool) or not isinstance(tol, (int, float, np.number)) or not 0 <= tol < math.inf:
            raise ConfigError(f"KMeansModel: tol must be a number >= 0; got {tol!r}.")
        self.tol = float(tol)
        self.register_buffer("centroids_", torch.zeros(self.k, self.n_features, dtype=torch.float64))
        self.register_buffer("inertia_", torch.zeros((), dtype=torch.float64))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_clusters={self.k}"

    def fit_windows(self, inputs: np.ndarray, seed: Optional[int] = None) -> None:
        """Fit on training windows ``(N, L, S)``; ``seed`` seeds the k-means++ draws (``None``:
        fresh randomness)."""
        flat = self._training_rows(inputs, 1, "to form a cluster").astype(np.float64)
        if self.n_clusters is not None and len(flat) < self.n_clusters:
            raise DataError(f"KMeansModel: n_clusters={self.n_clusters} is more than the {len(flat)} training "
                            f"windows; choose n_clusters <= {len(flat)} or give it more rows.")
        k = min(self.k, len(flat))
        rng = np.random.default_rng(seed)
        tol = self.tol * float(flat.var(axis=0).mean())
        flat_sq = (flat * flat).sum(axis=1)
        best: Optional[tuple[np.ndarray, float]] = None
        for _ in range(self.n_init):
            run = _lloyd(flat, flat_sq, _kmeans_plus_plus(flat, flat_sq, k, rng), self.max_iter, tol)
            if best is None or run[1] < best[1]:
                best = run
        centres = np.empty((self.k, self.n_features))
        centres[:k] = best[0]
        centres[k:] = best[0][0]
        self._store(self.centroids_, centres)
        self._store(self.inertia_, np.asarray(best[1]))

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """``(B,)`` index of each window's nearest centroid."""
        flat = self._flat(x).detach()
        c = self.centroids_.to(flat.dtype)
        d2 = (flat * flat).sum(1, keepdim=True) - 2.0 * (flat @ c.T) + (c * c).sum(1)[None, :]
        return d2.argmin(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, S) -> (B, L, S)
        with torch.no_grad():
            out = self.centroids_.to(x.dtype)[self.nearest(x)].reshape(x.shape)
        return _connect(out, x)


def average_path_length(n: torch.Tensor) -> torch.Tensor:
    """``c(n)``: the mean path length of an unsuccessful search in a binary search tree of ``n``
    points (Liu et al., 2008), float64; ``c(n) = 0`` for ``n <= 1`` and ``1`` for ``n = 2``."""
    n = n.to(torch.float64)
    big = 2.0 * (torch.log((n - 1.0).clamp_min(1.0)) + np.euler_gamma) - 2.0 * (n - 1.0) / n.clamp_min(1.0)
    return torch.where(n <= 1, torch.zeros_like(n), torch.where(n == 2, torch.ones_like(n), big))


class IForestModel(_WindowModel):
    """Isolation forest (Liu, Ting and Zhou, 2008) on the flattened windows; ``forward`` is the score.

    Each of ``n_estimators`` trees is grown on ``psi = min(max_samples, N)`` training windows
    drawn without replacement: a node splits on a feature drawn at random among those that vary
    in the node, at a threshold drawn uniformly between their smallest and largest value (values
    ``<=`` the threshold go left), until it holds one window or reaches depth
    ``ceil(log2(psi))``. A window's path length in a tree is the depth of its leaf plus
    ``c(n_leaf)`` (:func:`average_path_length` of the training windows that reached the leaf);
    the score is ``2 ** (-mean path length / c(psi))``, in ``(0, 1]``, higher = more anomalous
    (scikit-learn's ``score_samples`` is its negative). Values are compared in float32, as
    scikit-learn does.

    Storage: the trees in scikit-learn's ``tree_`` layout, one row per tree, nodes numbered
    depth first (left child first), padded to the most nodes a tree of ``max_samples`` windows
    can have (``2 * max_samples - 1``), so every buffer's shape follows from the constructor:
    ``children_left`` / ``children_right`` ``(n_estimators, nodes)`` int32 (``-1`` at a leaf and
    in padding), ``feature`` int32 (``-2`` at a leaf), ``threshold`` float64, ``n_node_samples``
    int32, and ``sample_size`` ``()`` int64 (``psi``; ``0`` before a fit).

    Not differentiable: ``forward`` runs without gradients.
    """

    kind = "score"
    task = kind

    def __init__(self, n_sensors: int, lookback: int, n_estimators: int = DEFAULT_TREES,
                 max_samples: int = DEFAULT_MAX_SAMPLES):
        super().__init__(n_sensors, lookback)
        self.n_estimators = _positive_int(n_estimators, "n_estimators", "IForestModel")
        self.max_samples = _positive_int(max_samples, "max_samples", "IForestModel")
        shape = (self.n_estimators, 2 * self.max_samples - 1)
        self.register_buffer("children_left", torch.full(shape, -1, dtype=torch.int32))
        self.register_buffer("children_right", torch.full(shape, -1, dtype=torch.int32))
        self.register_buffer("feature", torch.full(shape, -2, dtype=torch.int32))
        self.register_buffer("threshold", torch.full(shape, -2.0, dtype=torch.float64))
        self.register_buffer("n_node_samples", torch.zeros(shape, dtype=torch.int32))
        self.register_buffer("sample_size", torch.zeros((), dtype=torch.int64))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_estimators={self.n_estimators}, max_samples={self.max_samples}"

    # -- fit --------------------------------------------------------------------------------------
    def fit_windows(self, inputs: np.ndarray, seed: Optional[int] = None) -> None:
        """Grow the forest on training windows ``(N, L, S)``; ``seed`` seeds every random draw
        (``None``: fresh randomness)."""
        flat = self._training_rows(inputs, 2, "to isolate one from another")
        n = len(flat)
        psi = min(self.max_samples, n)
        max_depth = math.ceil(math.log2(max(psi, 2)))
        rng = np.random.default_rng(seed)
        shape = tuple(self.children_left.shape)
        arrays = {"children_left": np.full(shape, -1, np.int32), "children_right": np.full(shape, -1, np.int32),
                  "feature": np.full(shape, -2, np.int32), "threshold": np.full(shape, -2.0),
                  "n_node_samples": np.zeros(shape, np.int32)}
        for t in range(self.n_estimators):
            rows = flat[rng.choice(n, size=psi, replace=False)].astype(np.float32).astype(np.float64)
            self._grow(rows, rng, max_depth, {name: a[t] for name, a in arrays.items()})
        for name, value in arrays.items():
            self._store(getattr(self, name), value)
        self._store(self.sample_size, np.asarray(psi))

    @staticmethod
    def _grow(x: np.ndarray, rng: np.random.Generator, max_depth: int, tree: dict) -> None:
        """Grow one isolation tree on ``x`` into the (padded) rows ``tree``, depth first."""
        left, right, feature, threshold, count = (tree["children_left"], tree["children_right"], tree["feature"],
                                                  tree["threshold"], tree["n_node_samples"])
        stack = [(np.arange(len(x)), 0, -1, False)]  # (rows, depth, parent, is_left)
        next_id = 0
        while stack:
            rows, depth, parent, is_left = stack.pop()
            node, next_id = next_id, next_id + 1
            if parent >= 0:
                (left if is_left else right)[parent] = node
            count[node] = len(rows)
            if depth >= max_depth or len(rows) <= 1:
                continue
            f = int(rng.integers(x.shape[1]))
            col = x[rows, f]
            lo, hi = col.min(), col.max()
            if lo == hi:  # draw again among the features that vary in this node
                block = x[rows]
                varying = np.flatnonzero(block.max(axis=0) > block.min(axis=0))
                if len(varying) == 0:
                    continue
                f = int(varying[rng.integers(len(varying))])
                col = x[rows, f]
                lo, hi = col.min(), col.max()
            cut = float(rng.uniform(lo, hi))
            if cut >= hi:  # rounding reached the top: the split must keep both sides non-empty
                cut = float(lo)
            feature[node], threshold[node] = f, cut
            goes_left = col <= cut
            stack.append((rows[~goes_left], depth + 1, node, False))
            stack.append((rows[goes_left], depth + 1, node, True))

    # -- score ------------------------------------------------------------------------------------
    def path_lengths(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_estimators)`` float64 path length of each window in each tree (leaf depth +
        ``c(n_leaf)``)."""
        flat = self._flat(x).detach().to(torch.float32).to(torch.float64)
        psi = int(self.sample_size)
        if psi == 0:
            raise NotFittedError("IForestModel has not been fitted; call fit_windows on training windows first.")
        max_depth = math.ceil(math.log2(max(psi, 2)))
        left, right = self.children_left.long(), self.children_right.long()
        feature, threshold = self.feature.long().clamp_min(0), self.threshold
        trees = torch.arange(self.n_estimators, device=flat.device)[None, :]
        out = []
        with torch.no_grad():
            for chunk in flat.split(_FOREST_CHUNK):
                node = torch.zeros(len(chunk), self.n_estimators, dtype=torch.long, device=flat.device)
                depth = torch.zeros(node.shape, dtype=torch.float64, device=flat.device)
                for _ in range(max_depth):
                    child = left[trees, node]
                    inner = child >= 0
                    if not bool(inner.any()):
                        break
                    value = chunk.gather(1, feature[trees, node])
                    step = torch.where(value <= threshold[trees, node], child, right[trees, node])
                    node = torch.where(inner, step, node)
                    depth += inner.to(torch.float64)
                out.append(depth + average_path_length(self.n_node_samples[trees, node]))
        return torch.cat(out) if out else torch.zeros(0, self.n_estimators, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, S) -> (B,)
        with torch.no_grad():
            h = self.path_lengths(x)
            c = average_path_length(self.sample_size)
            score = torch.pow(2.0, -h.sum(dim=1) / (self.n_estimators * c))
        return score.to(x.dtype if x.is_floating_point() else torch.float64)
