"""Models on the gateway: one onnxruntime session per model, swapped in and rolled back safely.

A :class:`LoadedModel` is a checked bundle (:mod:`models.bundle`) with its onnxruntime session
(one thread: the gateway's two or four cores have meters to poll). :meth:`LoadedModel.run` checks
what goes in (float32, as many columns as the card's inputs) and what comes out (one finite value
per row); anything else raises :class:`~nbedge.errors.InvalidOutput`.

A :class:`ModelSlot` holds the model of one kind in use and the one before it:

- :meth:`ModelSlot.offer` takes a bundle folder, checks it (:func:`models.bundle.load_bundle`),
  loads it, runs its card's check vector (the outputs must match those recorded when the bundle
  was written: the same ONNX file on this runtime gives the same answers) and only then puts it in
  use. A bundle that fails any step is refused with the reason; the model in use stays.
- :meth:`ModelSlot.run` runs the model in use; when it produces invalid output, the slot goes back
  to the previous model (if there is one), remembers the failed bundle's sha256 so that it is not
  offered again, and raises :class:`~nbedge.errors.InvalidOutput` for the caller to count.

Calls are synchronous and short (well under a millisecond to a few milliseconds); the gateway runs
them in its models thread, never on the event loop.

Memory: parsing a model's protobuf while a session is made leaves megabytes of freed heap that
glibc's malloc keeps for later instead of giving back to the system (about 5 MB for the shipped
demand model). :func:`open_session` hands it back (:func:`release_freed_heap`) so that the
runtime with one session stays within the gateway's budget.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from models.bundle import Bundle, load_bundle
from nbedge.errors import InvalidOutput, ModelRejected

if TYPE_CHECKING:
    import onnxruntime as ort
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

INPUT_NAME = "features"


def open_session(onnx: bytes) -> ort.InferenceSession:
    """An onnxruntime session on the CPU, one thread, from the model's bytes."""
    import onnxruntime as ort  # imported when a model is first used: it takes a while

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: the session's own warnings are noise here
    session = ort.InferenceSession(onnx, sess_options=options, providers=["CPUExecutionProvider"])
    release_freed_heap()  # what parsing the model freed, glibc would otherwise keep
    return session


def _libc_names() -> Iterator[str | None]:
    yield "libc.so.6"
    yield ctypes.util.find_library("c")  # only if glibc's own name did not load


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows).

    Looked up once, when first needed: nothing is loaded on import. glibc's own name comes
    first because ``find_library`` may start ``ldconfig`` or a compiler to find it.
    """
    for name in _libc_names():
        if name is None:
            continue
        try:
            trim = ctypes.CDLL(name).malloc_trim
        except (OSError, AttributeError):  # no such library, or no such function in it
            continue
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
        return trim
    return None


def release_freed_heap() -> bool:
    """Give the heap that is free back to the system; True if it ran, False without glibc.

    glibc's malloc keeps memory it has been given back for later allocations, so a burst of
    short-lived allocations (onnxruntime parsing a model's protobuf) leaves the process that much
    larger for good. ``malloc_trim(0)`` returns every free page of the heap (and of its other
    arenas) to the system; it takes well under a millisecond, cheap enough after each session.
    Other C libraries (musl, macOS) have no such call, and the budget is the gateway's, which
    runs glibc: elsewhere this does nothing.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    try:
        trim(0)
    except Exception:  # noqa: BLE001 (a memory nicety must never fail loading a model)
        return False
    return True


def predict(session: Any, rows: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """One finite output per row of ``rows`` from an onnxruntime session (or a
    :class:`SlotSession`); :class:`~nbedge.errors.InvalidOutput` for anything else."""
    features = np.ascontiguousarray(rows, dtype=np.float32)
    if features.shape[0] == 0:
        return np.zeros(0)
    try:
        raw = session.run(None, {INPUT_NAME: features})[0]
    except InvalidOutput:
        raise
    except Exception as exc:  # onnxruntime raises its own unrelated classes
        raise InvalidOutput(f"the model failed on {features.shape} features: {exc}") from exc
    out = np.asarray(raw, dtype=np.float64)
    if out.shape not in ((len(features),), (len(features), 1)):
        raise InvalidOutput(f"the model returned shape {out.shape} for {len(features)} rows")
    out = out.reshape(len(features))
    if not np.all(np.isfinite(out)):
        raise InvalidOutput(f"the model output is not finite ({int(np.sum(~np.isfinite(out)))})")
    return out


@dataclass(frozen=True, slots=True)
class LoadedModel:
    bundle: Bundle
    session: ort.InferenceSession

    @property
    def n_features(self) -> int:
        return len(self.bundle.card.inputs)

    def run(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """One output per row of ``features`` ([N, F]); InvalidOutput if not one finite each."""
        rows = np.asarray(features, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise InvalidOutput(
                f"{self.bundle.label}: features of shape {rows.shape}, "
                f"the model takes [N, {self.n_features}]"
            )
        try:
            return predict(self.session, rows)
        except InvalidOutput as exc:
            raise InvalidOutput(f"{self.bundle.label}: {exc}") from exc

    def self_test(self) -> None:
        """Run the card's check vector; InvalidOutput when the answers differ from the card's."""
        check = self.bundle.card.check
        rows = [[math.nan if v is None else v for v in row] for row in check.features]
        got = self.run(np.asarray(rows, dtype=np.float32))
        want = np.asarray(check.output, dtype=np.float64)
        if got.shape != want.shape or not np.allclose(
            got, want, rtol=check.tolerance, atol=check.tolerance
        ):
            worst = float(np.max(np.abs(got - want))) if got.shape == want.shape else math.inf
            raise InvalidOutput(
                f"{self.bundle.label}: check vector differs from the card by up to {worst:.3g}"
            )


def load_model(bundle: Bundle) -> LoadedModel:
    """Open the bundle's session and run its check vector; ModelRejected if either fails."""
    try:
        session = open_session(bundle.onnx)
    except Exception as exc:  # onnxruntime's load errors (bad protobuf, unknown op) vary
        raise ModelRejected(str(bundle.path), f"onnxruntime cannot load it: {exc}") from exc
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ModelRejected(
            str(bundle.path), f"model inputs {[i.name for i in inputs]}, not ['features']"
        )
    model = LoadedModel(bundle, session)
    try:
        model.self_test()
    except InvalidOutput as exc:
        raise ModelRejected(str(bundle.path), str(exc)) from exc
    return model


@dataclass
class ModelSlot:
    """The model of one kind in use, the one before it, and the bundles refused so far."""

    kind: str
    feature_version: str
    keys: dict[str, Ed25519PublicKey]
    active: LoadedModel | None = None
    previous: LoadedModel | None = None
    refused: dict[str, str] = field(default_factory=dict)  # sha256 (or folder) -> reason
    swaps: int = 0
    rollbacks: int = 0
    invalid_outputs: int = 0

    def offer(self, folder: Path) -> LoadedModel:
        """Check, load and self-test the bundle in ``folder``, then put it in use.

        Raises ModelRejected (the model in use stays) when any step fails.
        """
        try:
            bundle = load_bundle(
                folder, keys=self.keys, kind=self.kind, feature_version=self.feature_version
            )
            self._not_refused_before(bundle)
            model = load_model(bundle)
        except ModelRejected as exc:
            log.warning("model bundle refused", extra={"bundle": str(folder), "reason": exc.reason})
            raise
        if self.active is not None and self.active.bundle.card.sha256 == bundle.card.sha256:
            return self.active  # the same model again: nothing to swap
        self.previous, self.active = self.active, model
        self.swaps += 1
        log.info(
            "model in use",
            extra={"kind": self.kind, "model": bundle.label, "bundle": str(folder)},
        )
        return model

    def _not_refused_before(self, bundle: Bundle) -> None:
        reason = self.refused.get(bundle.card.sha256)
        if reason is not None:
            raise ModelRejected(str(bundle.path), f"refused before: {reason}")

    def as_session(self) -> SlotSession:
        """The slot in the shape of an onnxruntime session, for code written against one."""
        return SlotSession(self)

    def run(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Run the model in use; on invalid output go back to the previous one and re-raise."""
        if self.active is None:
            raise InvalidOutput(f"no {self.kind} model is loaded")
        try:
            return self.active.run(features)
        except InvalidOutput as exc:
            self.invalid_outputs += 1
            failed = self.active
            self.refused[failed.bundle.card.sha256] = f"invalid output: {exc}"
            if self.previous is not None:
                self.active, self.previous = self.previous, None
                self.rollbacks += 1
                log.error(  # noqa: TRY400 (the reason is in the record; a traceback adds nothing)
                    "model gave invalid output; back to the previous model",
                    extra={
                        "kind": self.kind,
                        "failed": failed.bundle.label,
                        "model": self.active.bundle.label,
                        "reason": str(exc),
                    },
                )
            raise


@dataclass(frozen=True, slots=True)
class SlotSession:
    """``run(None, {"features": rows})`` through a :class:`ModelSlot`: checks and rollback."""

    slot: ModelSlot

    def run(self, output_names: object, feeds: dict[str, npt.ArrayLike]) -> list[Any]:
        return [self.slot.run(feeds[INPUT_NAME])]
