"""Training of the anomaly model's "expected value" regressor, ONNX export, and its honest figures.

Training data (no labels): the 20 Cambridge estates buildings, 2016-2019, hourly electricity
(zeros read as missing, as :func:`models.series.load_cambridge_estates` does by default), local
time Europe/London with the public holidays of England. Rows: :data:`ROWS_PER_BUILDING` hours
drawn at random (fixed seed) per building among those with a known value and a level; the matrix
is built by :func:`models.anomaly.anomaly_features` itself (one feature function for training and
the gateway). Target ``value / L``. Model: scikit-learn ``HistGradientBoostingRegressor`` with the
absolute-error loss (the median: robust to the anomalies that unlabelled training data holds), no
early stopping, ``random_state=0``; exported with skl2onnx (one input ``features`` float32
``[None, F]``, output ``[None, 1]``).

Labels are used for two global constants only, the threshold quantile and floor
(:data:`models.anomaly.QUANTILE`, :data:`models.anomaly.FLOOR`), chosen on the 6 LEAD buildings
from :data:`GRID` by the mean LEAD F1 at 24 h. The honest figure is leave-one-building-out
(:func:`leave_one_building_out`): for each LEAD building, the constants are chosen on the other
five and the building is scored with them. No LEAD building is in the regressor's training data.

Measured here (``train(data_root)`` with the shared data, 2 busy cores): fit 25 s, 32 s in all
with the evaluation grid; ONNX 685 kB, the same bytes on two runs. Leave-one-building-out, 6 LEAD
buildings (per building: point / lead 12 h / lead 24 h / event 12 h / event 24 h)::

    lead_1074  0.176  0.387  0.432  0.263  0.389
    lead_118   0.698  0.824  0.867  0.522  0.583
    lead_121   0.690  0.895  0.932  0.667  0.714
    lead_254   0.518  0.787  0.822  0.375  0.438
    lead_685   0.566  0.873  0.879  0.750  0.788
    lead_697   0.138  0.471  0.597  0.261  0.340
    median     0.542  0.805  0.844  0.448  0.510   (baseline rolling_median: 0.379 0.715 0.720
    mean       0.464  0.706  0.755  0.473  0.542    0.397 0.397; same_hour_7d lead 24 h 0.630)

The LEAD columns are the paper's measure: compare the mean, 0.706 / 0.755 at 12 / 24 h, with
Prabhu et al. 2024 Table 4 (mean over 200 buildings, thresholds tuned per building on its own
labels): 1-D CNN autoencoder 0.605 / 0.652, best GAN 0.603 / 0.673. Six buildings are few: the
figure is indicative, not a like-for-like comparison.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from models.anomaly import (
    CONTEXT_H,
    FEATURE_NAMES,
    FEATURE_VERSION,
    FLOOR,
    METHODS,
    N_FEATURES,
    QUANTILE,
    TOLERANCES_H,
    AnomalyReport,
    BuildingScore,
    Float32Array,
    Residuals,
    anomaly_features,
    flags_for_series,
    recent_level,
    residuals_for,
    score_flags,
)
from models.bundle import TrainedModel
from models.calendar import Calendar
from models.metrics import FloatArray
from models.onnx_export import TARGET_OPSET, integer_missing_flags
from models.runtime import open_session
from models.series import HourlySeries, load_cambridge_estates, load_lead

NAME = "anomaly"
ROWS_PER_BUILDING = 6000
SEED = 0
CAMBRIDGE_CALENDAR = Calendar(timezone="Europe/London", country="GB", subdivision="ENG")
HYPER_PARAMETERS: dict[str, Any] = {
    "loss": "absolute_error",
    "max_iter": 300,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "l2_regularization": 0.0,
    "early_stopping": False,
    "random_state": 0,
}
GRID: tuple[tuple[float, float], ...] = tuple(
    (q, f) for q in (0.97, 0.98, 0.985, 0.99) for f in (4.0, 5.0, 6.0, 7.0, 8.0)
)
CRITERION = ("lead", 24)  # mean over buildings of lead_f1 at 24 h


def training_matrix(
    series: Sequence[HourlySeries],
    calendar: Calendar,
    rows_per_building: int = ROWS_PER_BUILDING,
    seed: int = SEED,
) -> tuple[Float32Array, FloatArray]:
    """Rows of :func:`models.anomaly.anomaly_features` and targets ``value / L``, at most
    ``rows_per_building`` random scored hours with a known value per building."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for building in series:
        rows = anomaly_features(building.values, building.timestamps, calendar)
        target = building.values / recent_level(building.values)
        usable = np.flatnonzero(np.isfinite(target))
        if usable.size > rows_per_building:
            usable = np.sort(rng.choice(usable, rows_per_building, replace=False))
        xs.append(rows[usable])
        ys.append(target[usable])
    return np.concatenate(xs), np.concatenate(ys)


def fit(x: Float32Array, y: FloatArray, **overrides: Any) -> HistGradientBoostingRegressor:
    """The regressor with :data:`HYPER_PARAMETERS` (``overrides`` replace some: tests).

    One OpenMP thread: on a machine whose cores are busy, scikit-learn's default of one thread
    per core made a 6,000-row fit take 50 s instead of 0.2 s (measured here)."""
    model = HistGradientBoostingRegressor(**{**HYPER_PARAMETERS, **overrides})
    with threadpool_limits(limits=1):
        model.fit(x, y)
    return model


def to_onnx(model: HistGradientBoostingRegressor) -> bytes:
    """ONNX bytes: input ``features`` float32 ``[None, N_FEATURES]``, one output ``[None, 1]``."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    with integer_missing_flags():
        onx = convert_sklearn(
            model,
            initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
            target_opset=TARGET_OPSET,
            name=NAME,  # the default is a random identifier: the same model would differ in bytes
        )
    data: bytes = onx.SerializeToString()
    return data


@dataclass(frozen=True, slots=True)
class HeldOut:
    """One LEAD building scored with the constants chosen on the other buildings."""

    building: str
    quantile: float
    floor: float
    scores: dict[str, BuildingScore]  # per method


def _criterion(score: BuildingScore) -> float:
    kind, tol = CRITERION
    return score.lead[tol].f1 if kind == "lead" else score.event[tol].f1


def grid_scores(
    lead: Sequence[HourlySeries],
    session: ort.InferenceSession,
    calendar: Calendar,
    methods: Sequence[str] = METHODS,
    grid: Sequence[tuple[float, float]] = GRID,
) -> dict[tuple[str, str, float, float], BuildingScore]:
    """Every (building, method, quantile, floor) scored: residuals once, thresholds many."""
    table = {}
    for building in lead:
        if building.labels is None:
            raise ValueError(f"{building.name} has no labels")
        for method in methods:
            res: Residuals = residuals_for(method, building, session, calendar)
            for q, f in grid:
                flags = flags_for_series(building, res, quantile=q, floor=f)
                table[building.name, method, q, f] = score_flags(
                    building.name, method, building.labels, flags
                )
    return table


def leave_one_building_out(
    table: dict[tuple[str, str, float, float], BuildingScore],
    buildings: Sequence[str],
    methods: Sequence[str] = METHODS,
    grid: Sequence[tuple[float, float]] = GRID,
) -> list[HeldOut]:
    """For each building: per method, the grid point with the best mean criterion over the
    other buildings (first in grid order on ties), and the held-out building's scores there.
    The quantile/floor reported are the model's."""
    out = []
    for held in buildings:
        others = [b for b in buildings if b != held]
        chosen: dict[str, BuildingScore] = {}
        best_model = GRID[0]
        for method in methods:
            best = best_global(table, others, method, grid)
            chosen[method] = table[held, method, best[0], best[1]]
            if method == "model":
                best_model = best
        out.append(HeldOut(held, best_model[0], best_model[1], chosen))
    return out


def best_global(
    table: dict[tuple[str, str, float, float], BuildingScore],
    buildings: Sequence[str],
    method: str = "model",
    grid: Sequence[tuple[float, float]] = GRID,
) -> tuple[float, float]:
    """The grid point with the best mean criterion over all buildings (what is shipped)."""
    return max(
        grid,
        key=lambda g: float(np.mean([_criterion(table[b, method, g[0], g[1]]) for b in buildings])),
    )


def _summary(scores: Sequence[BuildingScore]) -> dict[str, dict[str, float]]:
    report = AnomalyReport(scores=tuple(scores), quantile=QUANTILE, floor=FLOOR)
    method = scores[0].method
    return {how: report.summary(method, how) for how in ("median", "mean")}


def _per_building(score: BuildingScore) -> dict[str, float]:
    row = {"point": round(score.point.f1, 4)}
    for t in TOLERANCES_H:
        row[f"lead_{t}h"] = round(score.lead[t].f1, 4)
        row[f"event_{t}h"] = round(score.event[t].f1, 4)
    return row


def lobo_evaluation(held: Sequence[HeldOut]) -> dict[str, Any]:
    """The card's leave-one-building-out section: per building and median/mean, per method."""
    out: dict[str, Any] = {}
    for method in METHODS:
        scores = [h.scores[method] for h in held]
        summ = _summary(scores)
        out[method] = {
            "per_building": {s.building: _per_building(s) for s in scores},
            "median": {k: round(v, 4) for k, v in summ["median"].items()},
            "mean": {k: round(v, 4) for k, v in summ["mean"].items()},
        }
    out["chosen_threshold"] = {h.building: {"quantile": h.quantile, "floor": h.floor} for h in held}
    return out


def train(data_root: Path) -> TrainedModel:
    """Train the shipped model on Cambridge, evaluate it on LEAD (module docstring)."""
    started = time.monotonic()
    cambridge = load_cambridge_estates(data_root / "cambridge_estates", with_temperature=False)
    x, y = training_matrix(cambridge, CAMBRIDGE_CALENDAR)
    model = fit(x, y)
    onnx = to_onnx(model)
    fit_s = time.monotonic() - started

    session = open_session(onnx)
    lead = load_lead(data_root / "lead_subset")
    names = [b.name for b in lead]
    table = grid_scores(lead, session, Calendar())
    held = leave_one_building_out(table, names)
    shipped = best_global(table, names)
    in_sample = {method: [table[n, method, QUANTILE, FLOOR] for n in names] for method in METHODS}
    card: dict[str, Any] = {
        "kind": "anomaly: expected-value regressor + per-meter robust threshold",
        "feature_version": FEATURE_VERSION,
        "inputs": list(FEATURE_NAMES),
        "output": (
            "expected value of the hour divided by the meter's recent level L (median of the "
            "168 hours before); expected = output * L; score = |value/L - output - centre| / scale"
        ),
        "training_data": {
            "source": "Cambridge University estates (EECi archive, MIT), hourly electricity",
            "buildings": [b.name for b in cambridge],
            "period": "2016-01-01 .. 2019-12-31 (UTC), zeros read as missing",
            "calendar": "Europe/London, public holidays GB-ENG",
            "rows": int(x.shape[0]),
            "labels_used": "none for the regressor; LEAD labels chose quantile and floor only",
        },
        "evaluation": {
            "data": "LEAD1.0 subset, 6 buildings, 2016, labelled hours (none seen in training)",
            "protocol": (
                "per building: calibrate centre/scale/threshold on its own whole year (labels "
                "unused), flag hours, compare with labels: point F1, lead_f1 (Prabhu et al. 2024 "
                "get_measures; its mean over buildings is comparable with their Table 4) and "
                "event_f1 (runs), at 12 h and 24 h. Quantile and floor chosen from the grid "
                f"{list(GRID)} by mean lead_f1 at 24 h over the other 5 buildings "
                "(leave-one-building-out); baselines use the same code and choice."
            ),
            "leave_one_building_out": lobo_evaluation(held),
            "shipped_constants_in_sample": {
                method: {
                    "per_building": {s.building: _per_building(s) for s in scores},
                    **{
                        how: {k: round(v, 4) for k, v in summ.items()}
                        for how, summ in _summary(scores).items()
                    },
                }
                for method, scores in in_sample.items()
            },
            "best_global_grid_point": {"quantile": shipped[0], "floor": shipped[1]},
            "published": {
                "source": "Prabhu, Valadi, Arjunan 2024 (arXiv 2402.14384) Table 4, 200 LEAD "
                "buildings, mean F1, thresholds tuned per building on its labels",
                "f1_12h_24h": {
                    "DCGAN_soft-DTW_SSM": [0.603, 0.673],
                    "1-D CNN autoencoder": [0.605, 0.652],
                    "Seq-LOF": [0.495, 0.595],
                },
            },
        },
        "parameters": {
            "regressor": "sklearn HistGradientBoostingRegressor",
            **HYPER_PARAMETERS,
            "rows_per_building": ROWS_PER_BUILDING,
            "seed": SEED,
            "context_h": CONTEXT_H,
            "quantile": QUANTILE,
            "floor": FLOOR,
            "training_seconds": round(fit_s, 1),
        },
        "limitations": [
            "Evaluated on 6 LEAD buildings only; the published figures average 200.",
            "The evaluation calibrates each building on its own whole year, anomalies included; "
            "the gateway calibrates on the history it has.",
            "Hours with fewer than 24 known hours in the week before are not scored.",
            "Labelled LEAD anomalies include public holidays that look like weekends; with a "
            "country in the Calendar the model expects holidays to be quiet and does not flag "
            "them.",
            "Trained on electricity of UK university buildings; water meters are scored by the "
            "same normalised model and the run detectors, without labelled evaluation.",
        ],
    }
    return TrainedModel(name=NAME, onnx=onnx, card=card)
