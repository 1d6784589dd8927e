"""Shared fixtures: small synthetic data (no files needed) and the optional shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (developers and CI only), or $MSDA_SHARED_DATA."""
    env = os.environ.get("MSDA_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is not present (it only exists for developers and CI)")
    return d


def make_series(n: int = 800, n_sensors: int = 4, seed: int = 0, spike_at: int | None = None,
                spike_sensor: int = 1, spike_size: float = 8.0) -> pd.DataFrame:
    """Correlated noisy sines on an hourly DatetimeIndex; optionally one injected spike."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = np.sin(2 * np.pi * t / 24)
    cols = {}
    for s in range(n_sensors):
        cols[f"s{s}"] = (1 + 0.3 * s) * np.sin(2 * np.pi * t / 24 + 0.4 * s) + 0.5 * base \
            + 0.05 * rng.standard_normal(n) + s
    df = pd.DataFrame(cols, index=pd.date_range("2024-01-01", periods=n, freq="h", name="time"))
    if spike_at is not None:
        col = df.columns[spike_sensor]
        df.iloc[spike_at, spike_sensor] += spike_size * df[col].std()
    return df


@pytest.fixture
def series() -> pd.DataFrame:
    return make_series()
