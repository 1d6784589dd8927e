"""Built-in generated data: correlated plant sensors and damped sine waves, with known anomalies.

Every data set comes with its ground truth: which timestamps are anomalous (``labels``), which
sensors were altered (``culprits``) and a list of :class:`AnomalyEvent` saying what was done
where. It is the default data of the dashboard (:func:`demo`) and of the teaching notebooks.

Everything is generated with numpy and pandas only, nothing is printed or written, and a seed
fixes the result bit for bit. The clean signal and the injected anomalies come from separate
random streams (``SeedSequence(seed).spawn``), so the clean series does not depend on how many
anomalies are injected: ``make_sensors(anomalies=0, seed=s).data`` is the reference against
which ``make_sensors(seed=s)`` differs only on its culprit cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import ConfigError

__all__ = [
    "ANOMALY_KINDS",
    "AnomalyEvent",
    "LabelledData",
    "make_sensors",
    "damped_sines",
    "demo",
]

#: The kinds of anomaly :func:`make_sensors` can inject, in the order they are cycled through.
ANOMALY_KINDS = ("spike", "level_shift", "drift", "stuck", "noise_burst", "broken_correlation")

#: The kinds :func:`damped_sines` injects, cycled in this order.
DAMPED_KINDS = ("spike", "stuck", "noise_burst", "level_shift")

#: Physical offset and scale (value = offset + scale * unit-variance signal) of the named sensors,
#: so that about +-3 standard deviations span the range in the comment.
SENSOR_UNITS: dict[str, tuple[float, float]] = {
    "temperature": (50.0, 10.0),  # degC, ~20-80
    "pressure": (3.0, 0.6),  # bar, ~1-5
    "flow": (300.0, 60.0),  # m3/h, ~120-480
    "vibration": (2.5, 0.6),  # mm/s, ~0.7-4.3
    "current": (30.0, 6.0),  # A, ~12-48
    "voltage": (230.0, 3.0),  # V, ~221-239
    "humidity": (50.0, 6.0),  # %, ~32-68
    "rpm": (2000.0, 300.0),  # 1/min, ~1100-2900
}

DAILY_PERIOD = 24  # steps in the daily cycle
WEEKLY_PERIOD = 168  # steps in the weekly cycle
MIN_GAP = 50  # clean steps between two events
WARMUP_FRACTION = 10  # no event in the first 1/10 of the series (a model trains on the start)
TWO_SENSOR_PROBABILITY = 0.25  # chance that an event alters two sensors instead of one
DETECTABLE_STD = 2.5  # a stuck / broken-correlation event is placed where it moves its sensor this much
DAMPED_NOISE = 0.02  # absolute noise of the damped sine waves (amplitudes are 0.5 to 2)


@dataclass(frozen=True)
class _KindSpec:
    """Length range (steps, inclusive) and magnitude range (in sensor standard deviations)."""

    min_len: int
    max_len: int
    low: float = 0.0
    high: float = 0.0


_KIND_SPECS: dict[str, _KindSpec] = {
    "spike": _KindSpec(1, 1, 6.0, 10.0),
    "level_shift": _KindSpec(20, 60, 3.0, 5.0),
    "drift": _KindSpec(60, 150, 4.0, 6.0),
    "stuck": _KindSpec(30, 80),
    "noise_burst": _KindSpec(20, 50, 3.0, 5.0),
    "broken_correlation": _KindSpec(40, 100),
}


@dataclass(frozen=True)
class AnomalyEvent:
    """One injected anomaly: what was done, from when to when (inclusive), to which sensors."""

    kind: str
    start: pd.Timestamp
    end: pd.Timestamp
    sensors: tuple[str, ...]


@dataclass(frozen=True, eq=False, repr=False)
class LabelledData:
    """Sensor data with its ground truth.

    data: DatetimeIndex named ``timestamp``, float64 sensor columns only (no label column).
    labels: bool Series named ``anomaly`` on the same index, True inside any event.
    culprits: bool frame shaped like ``data``, True where that sensor was altered.
    events: the injected :class:`AnomalyEvent` objects, in time order.
    name, description: a short name and one paragraph for an "about this data" panel.
    """

    data: pd.DataFrame
    labels: pd.Series
    culprits: pd.DataFrame
    events: tuple[AnomalyEvent, ...]
    name: str
    description: str

    def events_frame(self) -> pd.DataFrame:
        """One row per event: ``kind``, ``start``, ``end``, ``sensors`` (comma-joined), ``n_steps``."""
        index = self.data.index
        rows = [
            {
                "kind": e.kind,
                "start": e.start,
                "end": e.end,
                "sensors": ", ".join(e.sensors),
                "n_steps": int(index.get_loc(e.end) - index.get_loc(e.start) + 1),
            }
            for e in self.events
        ]
        frame = pd.DataFrame(rows, columns=["kind", "start", "end", "sensors", "n_steps"])
        return frame.astype({"n_steps": "int64"})

    def with_labels(self) -> pd.DataFrame:
        """A copy of ``data`` plus an ``anomaly`` int column (0/1), for label-aware tools."""
        out = self.data.copy()
        out["anomaly"] = self.labels.astype("int64")
        return out

    def __repr__(self) -> str:
        n_steps, n_sensors = self.data.shape
        return (f"LabelledData(name={self.name!r}, {n_steps} steps x {n_sensors} sensors, "
                f"{len(self.events)} events, {int(self.labels.sum())} anomalous steps)")


# --------------------------------------------------------------------------- validation


def _int_arg(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer; got {value!r}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}; got {value!r}")
    return int(value)


def _kinds_arg(kinds: str | Iterable[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    out = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not out:
        raise ConfigError(f"kinds is empty; choose from {', '.join(allowed)}.")
    for kind in out:
        if kind not in allowed:
            raise ConfigError(f"Unknown anomaly kind {kind!r}; choose from {', '.join(allowed)}.")
    return out


def _index(n_steps: int, start: Any, freq: str) -> pd.DatetimeIndex:
    try:
        return pd.date_range(start=pd.Timestamp(start), periods=n_steps, freq=freq, name="timestamp")
    except (ValueError, TypeError) as err:
        raise ConfigError(f"Cannot build timestamps from start={start!r}, freq={freq!r}: {err}") from err


def _streams(seed: Any) -> tuple[np.random.SeedSequence, np.random.Generator]:
    """(seed sequence of the clean signal, generator of the anomalies) for ``seed``."""
    seed = _int_arg(seed, "seed", 0)
    clean_ss, anomaly_ss = np.random.SeedSequence(seed).spawn(2)
    return clean_ss, np.random.default_rng(anomaly_ss)


# --------------------------------------------------------------------------- clean signals


def sensor_names(n_sensors: int) -> list[str]:
    """The plant sensor names: the eight named ones, then ``sensor_09``, ``sensor_10``, ..."""
    named = list(SENSOR_UNITS)
    return named[:n_sensors] + [f"sensor_{i:02d}" for i in range(len(named) + 1, n_sensors + 1)]


def _standardize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation per column (a constant column becomes zeros)."""
    centered = x - x.mean(axis=0)
    sd = centered.std(axis=0)
    return centered / np.where(sd > 0, sd, 1.0)


def _ar1(innovations: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Stationary unit-variance AR(1) noise, one column per sensor, from N(0, 1) innovations."""
    out = np.empty_like(innovations)
    out[0] = innovations[0]
    scale = np.sqrt(1.0 - phi**2)
    for t in range(1, len(innovations)):
        out[t] = phi * out[t - 1] + scale * innovations[t]
    return out


def _clean_sensors(n_steps: int, n_sensors: int, noise: float,
                   clean_ss: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
    """Clean plant data (steps x sensors, physical units) and each sensor's seasonal part.

    Three shared latent factors (daily cycle, weekly cycle, slow random walk) are mixed with
    per-sensor loadings; the daily cycle dominates so sensors are strongly correlated. Each
    sensor draws its parameters from its own child stream, so a sensor's series does not
    depend on how many sensors are generated.
    """
    shared_ss, *sensor_ss = clean_ss.spawn(1 + n_sensors)
    shared = np.random.default_rng(shared_ss)
    t = np.arange(n_steps, dtype=np.float64)
    daily_phase, weekly_phase = shared.uniform(0.0, 2 * np.pi, size=2)
    trend = _standardize(np.cumsum(shared.standard_normal(n_steps))[:, None])[:, 0]
    weekly = np.sin(2 * np.pi * t / WEEKLY_PERIOD + weekly_phase)

    seasonal = np.empty((n_steps, n_sensors))
    latent = np.empty((n_steps, n_sensors))
    innovations = np.empty((n_steps, n_sensors))
    phi = np.empty(n_sensors)
    offset = np.empty(n_sensors)
    scale = np.empty(n_sensors)
    units = list(SENSOR_UNITS.values())
    for j, ss in enumerate(sensor_ss):
        rng = np.random.default_rng(ss)
        lag = rng.uniform(0.0, 3.0)  # the sensor follows the daily cycle up to 3 steps late
        l_daily = rng.uniform(1.0, 1.5) * (-1.0 if rng.random() < 0.25 else 1.0)
        l_weekly = rng.uniform(0.25, 0.5) * rng.choice([-1.0, 1.0])
        l_trend = rng.uniform(0.25, 0.5) * rng.choice([-1.0, 1.0])
        phi[j] = rng.uniform(0.3, 0.8)
        if j < len(units):
            offset[j], scale[j] = units[j]
        else:
            scale[j] = 10.0 ** rng.uniform(-1.0, 2.0)
            offset[j] = scale[j] * rng.uniform(3.0, 8.0)
        daily = np.sin(2 * np.pi * (t - lag) / DAILY_PERIOD + daily_phase)
        seasonal[:, j] = l_daily * daily + l_weekly * weekly
        latent[:, j] = seasonal[:, j] + l_trend * trend
        innovations[:, j] = rng.standard_normal(n_steps)

    amplitude = latent.std(axis=0)
    amplitude = np.where(amplitude > 0, amplitude, 1.0)
    signal = latent + noise * amplitude * _ar1(innovations, phi)
    sd = signal.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    values = offset + scale * (signal - signal.mean(axis=0)) / sd
    return values, seasonal * (scale / sd)


def _clean_waves(n_steps: int, n_sensors: int, clean_ss: np.random.SeedSequence) -> np.ndarray:
    """Each column: back-to-back damped sine segments of 100-300 steps, plus a little noise."""
    values = np.empty((n_steps, n_sensors))
    for j, ss in enumerate(clean_ss.spawn(n_sensors)):
        rng = np.random.default_rng(ss)
        pieces, total = [], 0
        while total < n_steps:
            length = int(rng.integers(100, 301))
            period = rng.uniform(10.0, 40.0)
            tau = rng.uniform(50.0, 200.0)
            amplitude = rng.uniform(0.5, 2.0)
            phase = rng.uniform(0.0, 2 * np.pi)
            t = np.arange(length, dtype=np.float64)
            pieces.append(amplitude * np.exp(-t / tau) * np.sin(2 * np.pi * t / period + phase))
            total += length
        values[:, j] = np.concatenate(pieces)[:n_steps] + DAMPED_NOISE * rng.standard_normal(n_steps)
    return values


# --------------------------------------------------------------------------- anomaly injection


def _first_allowed(n_steps: int) -> int:
    """First index outside the first 10% of the series."""
    return -(-n_steps // WARMUP_FRACTION)


def _required_steps(kinds_seq: list[str], wiggle: Mapping[str, int]) -> int:
    """Smallest series length in which these events always fit, whatever their drawn lengths."""
    if not kinds_seq:
        return 1
    base = sum(_KIND_SPECS[k].max_len + wiggle.get(k, 0) for k in kinds_seq) + MIN_GAP * (len(kinds_seq) - 1)
    n = base
    while n - _first_allowed(n) < base:
        n += 1
    return n


def _check_fits(func: str, n_steps: int, kinds_seq: list[str], wiggle: Mapping[str, int]) -> None:
    needed = _required_steps(kinds_seq, wiggle)
    if n_steps < needed:
        raise ConfigError(
            f"{func}: {len(kinds_seq)} anomalies need n_steps >= {needed} (events up to their "
            f"longest, {MIN_GAP} clean steps between events, none in the first 10%); "
            f"got n_steps={n_steps}. Use more steps or fewer anomalies."
        )


def _window_deviation(kind: str, clean: np.ndarray, seasonal: np.ndarray | None, std: np.ndarray,
                      lo: int, length: int, wiggle: int) -> np.ndarray:
    """(wiggle + 1, sensors): largest |altered - clean| / std for each start offset and sensor."""
    block = slice(lo, lo + length + wiggle)
    if kind == "stuck":
        win = np.lib.stride_tricks.sliding_window_view(clean[block], length, axis=0)
        dev = np.abs(win - win[..., :1]).max(axis=-1)
    else:  # broken_correlation: the seasonal part s becomes -s, so the change is 2|s|
        win = np.lib.stride_tricks.sliding_window_view(seasonal[block], length, axis=0)
        dev = 2.0 * np.abs(win).max(axis=-1)
    return dev / std


def _inject(clean: np.ndarray, seasonal: np.ndarray | None, kinds_seq: list[str],
            wiggle: Mapping[str, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray,
                                                                          list[tuple[str, int, int, np.ndarray]]]:
    """Alter a copy of ``clean``; returns (values, culprit mask, [(kind, start, stop, sensors)])."""
    n_steps, n_sensors = clean.shape
    values = clean.copy()
    culprits = np.zeros(clean.shape, dtype=bool)
    if not kinds_seq:
        return values, culprits, []
    std = clean.std(axis=0)
    std = np.where(std > 0, std, 1.0)

    lengths = [int(rng.integers(_KIND_SPECS[k].min_len, _KIND_SPECS[k].max_len + 1)) for k in kinds_seq]
    reserved = [n + wiggle.get(k, 0) for k, n in zip(kinds_seq, lengths)]
    first = _first_allowed(n_steps)
    slack = n_steps - first - sum(reserved) - MIN_GAP * (len(kinds_seq) - 1)
    cuts = np.sort(rng.integers(0, slack + 1, size=len(kinds_seq)))  # extra clean steps before each

    events = []
    block_start = first
    for i, (kind, length) in enumerate(zip(kinds_seq, lengths)):
        lo = block_start + int(cuts[i])
        block_start += reserved[i] + MIN_GAP
        k = 2 if rng.random() < TWO_SENSOR_PROBABILITY and n_sensors >= 2 else 1
        w = wiggle.get(kind, 0)
        if kind in ("stuck", "broken_correlation"):
            # place it where the sensor is not already flat, so the event is visible
            dev = _window_deviation(kind, clean, seasonal, std, lo, length, w)
            ok = dev >= DETECTABLE_STD
            candidates = np.flatnonzero(ok.any(axis=0))
            if len(candidates) == 0:
                candidates = np.arange(n_sensors)
            sensors = np.sort(rng.choice(candidates, size=min(k, len(candidates)), replace=False))
            good = np.flatnonzero(ok[:, sensors].all(axis=1))
            offset = int(rng.choice(good)) if len(good) else int(np.argmax(dev[:, sensors].min(axis=1)))
            lo += offset
        else:
            sensors = np.sort(rng.choice(n_sensors, size=k, replace=False))
        span = slice(lo, lo + length)
        spec = _KIND_SPECS[kind]
        for j in sensors:
            size = rng.uniform(spec.low, spec.high) * std[j]
            sign = rng.choice([-1.0, 1.0])
            if kind == "spike":
                values[lo, j] += sign * size
            elif kind == "level_shift":
                values[span, j] += sign * size
            elif kind == "drift":
                values[span, j] += sign * size * np.arange(1, length + 1) / length
            elif kind == "stuck":
                values[span, j] = clean[lo, j]
            elif kind == "noise_burst":
                burst = rng.normal(0.0, size, length)
                while np.abs(burst).max() < DETECTABLE_STD * std[j]:
                    burst = rng.normal(0.0, size, length)
                values[span, j] += burst
            else:  # broken_correlation: the seasonal part is phase-inverted, the level is kept
                values[span, j] -= 2.0 * seasonal[span, j]
            culprits[span, j] = True
        events.append((kind, lo, lo + length, sensors))
    return values, culprits, events


def _assemble(values: np.ndarray, culprit_mask: np.ndarray, raw_events: list, index: pd.DatetimeIndex,
              names: list[str], name: str, description: str) -> LabelledData:
    columns = pd.Index(names)
    data = pd.DataFrame(values, index=index, columns=columns, dtype=np.float64)
    culprits = pd.DataFrame(culprit_mask, index=index, columns=columns, dtype=bool)
    labels = pd.Series(culprit_mask.any(axis=1), index=index, name="anomaly", dtype=bool)
    events = tuple(
        AnomalyEvent(kind=kind, start=index[lo], end=index[hi - 1], sensors=tuple(names[j] for j in sensors))
        for kind, lo, hi, sensors in raw_events
    )
    return LabelledData(data=data, labels=labels, culprits=culprits, events=events, name=name,
                        description=description)


def _kinds_text(kinds_seq: list[str]) -> str:
    return ", ".join(dict.fromkeys(k.replace("_", " ") for k in kinds_seq))


# --------------------------------------------------------------------------- public generators


def make_sensors(n_steps: int = 5000, n_sensors: int = 8, *, anomalies: int = 12,
                 kinds: str | Iterable[str] = ANOMALY_KINDS, freq: str = "h",
                 start: Any = "2024-01-01", noise: float = 0.05, seed: int = 0) -> LabelledData:
    """Realistic correlated plant sensors with injected, labelled anomalies.

    Sensors (``temperature``, ``pressure``, ``flow``, ``vibration``, ``current``, ``voltage``,
    ``humidity``, ``rpm``, then ``sensor_09``, ...) mix a daily cycle (24 steps), a weekly cycle
    (168 steps) and a slow random walk with their own loadings, plus AR(1) noise of relative
    scale ``noise``, in their own physical units. ``anomalies`` events cycle through ``kinds``
    in time order, after the first 10% of the series and at least 50 clean steps apart; each
    alters one or sometimes two sensors by several standard deviations:

    - ``spike``: one step, +-6..10 std; ``level_shift``: 20-60 steps, +-3..5 std;
    - ``drift``: 60-150 steps, a ramp reaching +-4..6 std; ``stuck``: 30-80 steps frozen at the
      first value; ``noise_burst``: 20-50 steps of extra noise of 3..5 std;
    - ``broken_correlation``: 40-100 steps whose seasonal part is phase-inverted (level kept).

    Raises :class:`~msda_widgets.errors.ConfigError` (a ``ValueError``) when a setting is out of
    range or the anomalies do not fit in ``n_steps`` (the message says how many steps are needed).
    """
    n_steps = _int_arg(n_steps, "n_steps", 1)
    n_sensors = _int_arg(n_sensors, "n_sensors", 1)
    anomalies = _int_arg(anomalies, "anomalies", 0)
    kinds = _kinds_arg(kinds, ANOMALY_KINDS)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not np.isfinite(noise) or noise < 0:
        raise ConfigError(f"noise must be a finite number >= 0; got {noise!r}")
    clean_ss, anomaly_rng = _streams(seed)
    index = _index(n_steps, start, freq)
    kinds_seq = [kinds[i % len(kinds)] for i in range(anomalies)]
    wiggle = {"stuck": DAILY_PERIOD, "broken_correlation": DAILY_PERIOD}
    _check_fits("make_sensors", n_steps, kinds_seq, wiggle)

    clean, seasonal = _clean_sensors(n_steps, n_sensors, float(noise), clean_ss)
    values, mask, raw_events = _inject(clean, seasonal, kinds_seq, wiggle, anomaly_rng)
    names = sensor_names(n_sensors)
    shown = ", ".join(names[:8]) + (f" and {n_sensors - 8} more" if n_sensors > 8 else "")
    injected = (f"{anomalies} anomalies were injected after the first 10% of the series "
                f"({_kinds_text(kinds_seq)}), each altering one or two sensors by several standard "
                f"deviations; `labels` marks the anomalous timestamps, `culprits` the altered "
                f"sensors and `events` what was done where." if anomalies else
                "No anomalies were injected: this is the clean reference.")
    description = (
        f"Synthetic plant data: {n_sensors} sensor{'s' if n_sensors > 1 else ''} ({shown}), "
        f"{n_steps} steps from {index[0]} at frequency {freq!r}. The sensors share a daily cycle "
        f"(24 steps), a weekly cycle (168 steps) and a slow random-walk trend, mixed with "
        f"per-sensor loadings so they move together, plus autocorrelated noise ({noise:g} of each "
        f"sensor's amplitude), each in its own physical units. {injected} Generated with seed {seed}."
    )
    return _assemble(values, mask, raw_events, index, names, "plant sensors", description)


def damped_sines(n_steps: int = 3000, n_sensors: int = 3, *, anomalies: int = 4,
                 seed: int = 0) -> LabelledData:
    """The classroom set: each sensor is a run of damped sine waves, with labelled faults.

    Each sensor (``wave_1``, ``wave_2``, ...) is made of segments of 100-300 steps, each
    ``A * exp(-t / tau) * sin(2 pi t / period + phase)`` with period 10-40 steps, decay tau
    50-200, amplitude 0.5-2, plus small noise, sampled every second from 2024-01-01. Faults
    cycle through spike, stuck, noise_burst and level_shift, with the same rules and
    bookkeeping as :func:`make_sensors`.
    """
    n_steps = _int_arg(n_steps, "n_steps", 1)
    n_sensors = _int_arg(n_sensors, "n_sensors", 1)
    anomalies = _int_arg(anomalies, "anomalies", 0)
    clean_ss, anomaly_rng = _streams(seed)
    index = _index(n_steps, "2024-01-01", "s")
    kinds_seq = [DAMPED_KINDS[i % len(DAMPED_KINDS)] for i in range(anomalies)]
    # the waves decay within a segment, so a stuck fault looks for a lively stretch
    wiggle = {"stuck": 150}
    _check_fits("damped_sines", n_steps, kinds_seq, wiggle)

    clean = _clean_waves(n_steps, n_sensors, clean_ss)
    values, mask, raw_events = _inject(clean, None, kinds_seq, wiggle, anomaly_rng)
    names = [f"wave_{i}" for i in range(1, n_sensors + 1)]
    description = (
        f"Damped sine waves: {n_sensors} independent sensor{'s' if n_sensors > 1 else ''}, {n_steps} "
        f"one-second steps, each a run of segments of 100-300 steps that ring and decay "
        f"(A exp(-t/tau) sin(2 pi t/period + phase), period 10-40 steps, tau 50-200, amplitude "
        f"0.5-2) plus a little noise - the classic exercise for a stacked LSTM forecaster. "
        + (f"{anomalies} faults were injected after the first 10% ({_kinds_text(kinds_seq)}); "
           f"`labels` marks them and `culprits` the altered waves. " if anomalies else
           "No faults were injected. ")
        + f"Generated with seed {seed}."
    )
    return _assemble(values, mask, raw_events, index, names, "damped sines", description)


def demo(seed: int = 0) -> LabelledData:
    """What the dashboard opens with: :func:`make_sensors` with its defaults."""
    return make_sensors(seed=seed)
