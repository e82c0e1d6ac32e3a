"""Train the shipped models and write their bundles: ``nbedge models train``.

Each kind has a training module (``models.train_<kind>``, scikit-learn and skl2onnx: the ``train``
extra) whose ``train(data_root)`` returns a :class:`~models.bundle.TrainedModel`. This module turns
that into a bundle:

- the check vector: feature rows made by the gateway's own feature code from a fixed synthetic
  week (with missing hours), and the outputs onnxruntime gives for them; a gateway runs them again
  before it takes the bundle;
- the version: the feature version and the first 8 hex digits of the ONNX file's sha256, so that
  the same training gives the same version;
- the signature, when a private key is given (``--key``); the project's release bundles are
  signed with the release key, which is kept off the repository.

Training is deterministic: the same data and library versions give the same ONNX bytes.
:func:`compare` says whether a bundle reproduces another (same model bytes, same card apart from
the library versions, or else how far apart their check outputs are).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.bundle import ModelCard, TrainedModel, build_card, load_private_key, write_bundle
from models.calendar import Calendar
from models.runtime import open_session

KINDS = ("demand", "anomaly")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
_LIBRARIES = ("numpy", "scikit-learn", "skl2onnx", "onnxruntime", "onnx")


def synthetic_week(hours: int = 24 * 21, seed: int = 7) -> tuple[npt.NDArray[np.datetime64], Any]:
    """Hourly timestamps and an office-like load (day and week cycles, noise, missing hours)."""
    rng = np.random.default_rng(seed)
    stamps = np.arange(
        np.datetime64("2024-03-04T00", "h"), np.datetime64("2024-03-04T00", "h") + hours
    )
    hour = np.arange(hours) % 24
    day = (np.arange(hours) // 24) % 7
    load = 20 + 30 * ((hour >= 8) & (hour < 18) & (day < 5)) + rng.normal(0, 2, hours)
    load[rng.choice(hours, size=hours // 40, replace=False)] = np.nan
    return stamps, load


def check_rows(kind: str) -> npt.NDArray[np.float32]:
    """Feature rows for the check vector, made by the gateway's feature code."""
    stamps, load = synthetic_week()
    calendar = Calendar("Europe/London", "GB", "ENG")
    if kind == "demand":
        from models import demand

        temperature = 10 + 5 * np.sin(np.arange(demand.HISTORY_H) / 24 * 2 * np.pi)
        rows = []
        for end in (24 * 10, 24 * 14 + 7):
            history = load[end - demand.HISTORY_H : end]
            for temps, keep in ((temperature, demand.HORIZON_H), (None, 6)):
                made = demand.demand_features(history, temps, stamps[end], calendar)
                if made is None:
                    raise ValueError("the synthetic week has too few known hours to forecast")
                rows.append(made[0][:keep])
        return np.concatenate(rows).astype(np.float32)
    if kind == "anomaly":
        from models import anomaly

        features = anomaly.anomaly_features(load, stamps, calendar)
        return np.asarray(features[-48:], dtype=np.float32)
    raise ValueError(f"unknown model kind {kind!r}")


def bundle_card(trained: TrainedModel, kind: str) -> ModelCard:
    content = dict(trained.card)
    if content.get("kind") != kind:  # a training module's longer wording goes to the description
        content.setdefault("description", str(content.get("kind", "")))
        content["kind"] = kind
    trained = TrainedModel(trained.name, trained.onnx, content)
    rows = check_rows(kind)
    output = open_session(trained.onnx).run(None, {"features": rows})[0]
    sha = hashlib.sha256(trained.onnx).hexdigest()
    return build_card(
        trained,
        version=f"{trained.card['feature_version']}+{sha[:8]}",
        check_features=rows.tolist(),
        check_output=np.asarray(output, dtype=np.float64).reshape(-1).tolist(),
        created_with={name: _version(name) for name in _LIBRARIES},
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def train(
    data_root: Path, out_dir: Path, *, kinds: Sequence[str] = KINDS, key: Path | None = None
) -> list[Path]:
    """Train each kind from ``data_root`` and write its bundle to ``out_dir/<kind>/``."""
    private = None if key is None else load_private_key(key)
    written = []
    for kind in kinds:
        module = importlib.import_module(f"models.train_{kind}")
        trained: TrainedModel = module.train(data_root)
        card = bundle_card(trained, kind)
        written.append(write_bundle(out_dir / kind, trained.onnx, card, private))
    return written


@dataclass(frozen=True, slots=True)
class Comparison:
    same_model: bool
    same_card: bool
    max_check_difference: float


def compare(new: ModelCard, shipped: ModelCard) -> Comparison:
    """Does ``new`` reproduce ``shipped``? (Library versions and the version string aside.)"""
    ignore = {"created_with"}
    a = new.model_dump(mode="json", exclude=ignore)
    b = shipped.model_dump(mode="json", exclude=ignore)
    outputs_a = np.asarray(new.check.output)
    outputs_b = np.asarray(shipped.check.output)
    difference = (
        float(np.max(np.abs(outputs_a - outputs_b)))
        if outputs_a.shape == outputs_b.shape
        else np.inf
    )
    return Comparison(new.sha256 == shipped.sha256, a == b, difference)
