"""A latency predictor fitted on measured archs: linear in a cost record's features, saved as JSON.

`LatencyModel.fit(features_list, latencies)` fits non-negative weights (ms per unit of each feature
of `search.cost.LatencyFeatures`) plus a free intercept by least squares; `predict(features)` is
`sum(weights * features) + intercept`. Non-negative weights keep the model physical (more work never
makes a model faster) and stable when features are correlated, as MACs and outputs are. The JSON
file records where the latencies were measured (device, threads, TF version) and for what (family,
input size, fit set size), because a predictor holds for that device and those settings only.

`bin/benchmark.py --what=latency` measures archs, fits a model and writes it; a search compares the
predicted latency when `config.search.cost_measure = "latency_ms"` and `config.search.latency_model`
names the file (`Experiment.cost_of`).

Also the arithmetic of judging a predictor: `spearman` (rank correlation, ties averaged) and
`median_absolute_error`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import platform
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from scalenas_tf import workdir

FORMAT = "scalenas_tf.latency_model/1"
# Subsets of features are enumerated for the exact non-negative fit (2^n least-squares solves).
MAX_FEATURES = 16


class LatencyModelError(ValueError):
    """A latency model file or fit input that is malformed; the message names the field."""


def device_description() -> str:
    """The CPU model (from /proc/cpuinfo where there is one, else `platform.processor()`) and its cores."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name} ({os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()})"


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _finite(value) -> bool:
    return _is_number(value) and math.isfinite(float(value))


# === Arithmetic ===


def _ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of `a` and `b` (the Pearson correlation of their tie-averaged
    ranks); NaN when either is constant.

    Raises:
        ValueError: different lengths, fewer than 2 values, or a non-finite value.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"`a` and `b` must be 1-D of one length >= 2. Received: shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("`a` and `b` must be finite")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denominator if denominator > 0 else math.nan


def median_absolute_error(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """median(|predicted - measured|)."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if p.shape != m.shape or p.ndim != 1 or len(p) < 1:
        raise ValueError(f"Expected two 1-D sequences of one length. Received: shapes {p.shape} and {m.shape}")
    return float(np.median(np.abs(p - m)))


def nonnegative_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin ||a x - b|| over x >= 0, exactly, for a few columns.

    The optimum is the unconstrained least-squares solution on its own support, so every subset
    of columns is solved and the best solution with no negative entry kept (2^n solves, n <= 16).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = a.shape[1]
    if n > MAX_FEATURES:
        raise ValueError(f"At most {MAX_FEATURES} features. Received: {n}")
    best, best_residual = np.zeros(n), float(b @ b)
    for size in range(1, n + 1):
        for subset in itertools.combinations(range(n), size):
            columns = list(subset)
            solution, _, rank, _ = np.linalg.lstsq(a[:, columns], b, rcond=None)
            if rank < size or (solution < 0).any():
                continue
            residual = b - a[:, columns] @ solution
            value = float(residual @ residual)
            if value < best_residual * (1 - 1e-12):
                best, best_residual = np.zeros(n), value
                best[columns] = solution
    return best


# === The model ===


@dataclasses.dataclass(frozen=True)
class LatencyModel:
    """Latency in ms = sum(weights[name] * features[name]) + intercept_ms.

    Attributes:
        weights: feature name -> ms per unit (>= 0 when fitted), in feature order.
        intercept_ms: the fixed cost of a call (ms).
        family: the search-space family whose counters produce the features.
        device: where the latencies were measured (`device_description()`).
        threads: the interpreter threads of the measurements.
        tf_version: the TensorFlow version that converted the models.
        input_size: `(height, width)` the archs were measured at (ScaleNet: the config's; each arch
            runs at its own resolution).
        fit_size: how many measured archs the weights were fitted on.
        extra: anything else worth keeping (task, config, runtime, validation figures); JSON-ready.

    Example:
    >>> model = LatencyModel.fit([{"conv_macs": 1e6}, {"conv_macs": 3e6}], [1.5, 3.5], family="scalenas")
    >>> round(model.predict({"conv_macs": 2e6}), 6)
    2.5
    """

    weights: dict[str, float]
    intercept_ms: float
    family: str
    device: str = ""
    threads: int = 1
    tf_version: str = ""
    input_size: tuple[int, int] | None = None
    fit_size: int = 0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def predict(self, features: Mapping[str, float]) -> float:
        """The predicted latency (ms) of one arch from its features (a cost record's `features`).

        Raises:
            ValueError: a feature the model weighs is missing or not a finite number.
        """
        total = self.intercept_ms
        for name, weight in self.weights.items():
            value = features.get(name) if isinstance(features, Mapping) else None
            if not _finite(value):
                raise ValueError(
                    f"Latency features must hold a finite number for {name!r} (the model's features: "
                    f"{list(self.weights)}). Received: {value!r}"
                )
            total += weight * float(value)
        return float(total)

    @classmethod
    def fit(
        cls,
        features_list: Sequence[Mapping[str, float]],
        latencies: Sequence[float],
        feature_names: Sequence[str] | None = None,
        **metadata,
    ) -> LatencyModel:
        """Fits non-negative weights and a free intercept by least squares.

        Args:
            features_list: one features dict per measured arch.
            latencies: the measured latency (ms) of each.
            feature_names: the features to weigh, default those of the first dict, in its order.
            **metadata: the other fields (`family`, `device`, `threads`, ...); `fit_size` is set.

        Raises:
            LatencyModelError: mismatched lengths, fewer archs than features + 1, missing or
                non-finite values.
        """
        if len(features_list) != len(latencies):
            raise LatencyModelError(
                f"One latency per features dict. Received: {len(features_list)} features, {len(latencies)} latencies"
            )
        if not features_list:
            raise LatencyModelError("Nothing to fit: no measured archs")
        names = tuple(feature_names if feature_names is not None else features_list[0])
        if len(features_list) < len(names) + 1:
            raise LatencyModelError(
                f"Fitting {len(names)} weights and an intercept needs >= {len(names) + 1} archs. "
                f"Received: {len(features_list)}"
            )
        x = np.empty((len(features_list), len(names)))
        for i, features in enumerate(features_list):
            for j, name in enumerate(names):
                value = features.get(name)
                if not _finite(value):
                    raise LatencyModelError(
                        f"features_list[{i}][{name!r}] must be a finite number. Received: {value!r}"
                    )
                x[i, j] = value
        y = np.asarray(latencies, dtype=np.float64)
        if y.shape != (len(features_list),) or not np.isfinite(y).all():
            raise LatencyModelError("latencies must be finite numbers")
        # A free intercept: solve on centred data. Scaling each column to unit spread conditions the
        # solves (MACs are ~1e6 times the op counts); a constant column gets weight 0.
        mean_x, mean_y = x.mean(axis=0), y.mean()
        centred = x - mean_x
        scale = np.abs(centred).max(axis=0)
        usable = scale > 0
        weights = np.zeros(len(names))
        if usable.any():
            solution = nonnegative_least_squares(centred[:, usable] / scale[usable], y - mean_y)
            weights[usable] = solution / scale[usable]
        intercept = float(mean_y - mean_x @ weights)
        metadata = {**metadata, "fit_size": len(features_list)}
        return cls(dict(zip(names, (float(w) for w in weights))), intercept, **metadata)

    # === JSON ===

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "family": self.family,
            "weights": dict(self.weights),
            "intercept_ms": self.intercept_ms,
            "device": self.device,
            "threads": self.threads,
            "tf_version": self.tf_version,
            "input_size": None if self.input_size is None else list(self.input_size),
            "fit_size": self.fit_size,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: Any) -> LatencyModel:
        """The model from `to_dict()` output.

        Raises:
            LatencyModelError: a missing, unknown or malformed field (the message names it).
        """
        if not isinstance(data, dict):
            raise LatencyModelError(f"A latency model is a JSON object. Received: {type(data).__name__}")
        known = set(_FIELDS)
        unknown = sorted(set(data) - known)
        if unknown:
            raise LatencyModelError(f"Unknown field(s) in the latency model: {unknown}. Known: {sorted(known)}")
        for name in ("format", "family", "weights", "intercept_ms"):
            if name not in data:
                raise LatencyModelError(f"The latency model is missing the field {name!r}")
        if data["format"] != FORMAT:
            raise LatencyModelError(f"format must be {FORMAT!r}. Received: {_short(data['format'])}")
        if not isinstance(data["family"], str) or not data["family"]:
            raise LatencyModelError(f"family must be a non-empty string. Received: {_short(data['family'])}")
        weights = data["weights"]
        if not isinstance(weights, dict) or not weights:
            raise LatencyModelError(f"weights must be a non-empty object of numbers. Received: {_short(weights)}")
        for name, value in weights.items():
            if not _finite(value) or value < 0:
                raise LatencyModelError(f"weights[{name!r}] must be a finite number >= 0. Received: {_short(value)}")
        if not _finite(data["intercept_ms"]):
            raise LatencyModelError(f"intercept_ms must be a finite number. Received: {_short(data['intercept_ms'])}")
        for name in ("device", "tf_version"):
            if not isinstance(data.get(name, ""), str):
                raise LatencyModelError(f"{name} must be a string. Received: {_short(data[name])}")
        for name, low in (("threads", 1), ("fit_size", 0)):
            value = data.get(name, low)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise LatencyModelError(f"{name} must be an int >= {low}. Received: {_short(value)}")
        size = data.get("input_size")
        if size is not None and (
            not isinstance(size, list)
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
        ):
            raise LatencyModelError(
                f"input_size must be [height, width] positive ints or null. Received: {_short(size)}"
            )
        if not isinstance(data.get("extra", {}), dict):
            raise LatencyModelError(f"extra must be an object. Received: {_short(data['extra'])}")
        return cls(
            weights={str(k): float(v) for k, v in weights.items()},
            intercept_ms=float(data["intercept_ms"]),
            family=data["family"],
            device=data.get("device", ""),
            threads=data.get("threads", 1),
            tf_version=data.get("tf_version", ""),
            input_size=None if size is None else (size[0], size[1]),
            fit_size=data.get("fit_size", 0),
            extra=dict(data.get("extra", {})),
        )

    def save(self, path: str | os.PathLike) -> str:
        """Writes the JSON to `path` atomically (`workdir.atomic_write_json`: a temporary file in its
        directory, created if missing, then renamed into place).

        Raises:
            IsADirectoryError: `path` is a directory. WorkdirError: it cannot be written.
        """
        path = os.fspath(path)
        if os.path.isdir(path):
            raise IsADirectoryError(f"The latency model path is a directory: {path}")
        return workdir.atomic_write_json(path, self.to_dict(), indent=2)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyModel:
        """Reads a model written by `save`.

        Raises:
            FileNotFoundError: no such file. LatencyModelError: not JSON, or a malformed field.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Latency model file not found: {path}")
        try:
            data = workdir.read_json(path, "latency model")
        except workdir.WorkdirError as e:
            raise LatencyModelError(str(e)) from None
        try:
            return cls.from_dict(data)
        except LatencyModelError as e:
            raise LatencyModelError(f"{path}: {e}") from None


_FIELDS = (
    "format",
    "family",
    "weights",
    "intercept_ms",
    "device",
    "threads",
    "tf_version",
    "input_size",
    "fit_size",
    "extra",
)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
