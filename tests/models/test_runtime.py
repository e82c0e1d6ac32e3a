"""The runtime's sessions: freed heap goes back to the system, the shipped model's answers stay."""

from __future__ import annotations

import math
import platform
from pathlib import Path

import numpy as np
import pytest

from models import runtime
from models.bundle import load_bundle, trusted_keys
from models.runtime import load_model, open_session, predict, release_freed_heap

DEMAND = Path(runtime.__file__).resolve().parent / "artifacts" / "demand"


def test_release_freed_heap_runs_with_glibc_and_never_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done = release_freed_heap()
    assert isinstance(done, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert done is True
        assert release_freed_heap() is True  # the C library is looked up once, then reused

    # a C library without malloc_trim (musl, macOS), or a call that fails: False, no exception
    monkeypatch.setattr(runtime, "_malloc_trim", lambda: None)
    assert release_freed_heap() is False

    def failing(pad: int) -> int:
        raise OSError(pad)

    monkeypatch.setattr(runtime, "_malloc_trim", lambda: failing)
    assert release_freed_heap() is False


def test_the_shipped_demand_model_scores_as_its_card_and_as_without_the_trim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = load_bundle(DEMAND, keys=trusted_keys(), kind="demand")
    model = load_model(bundle)  # runs the card's check vector, recorded when the bundle was made
    model.self_test()

    check = np.asarray(
        [[math.nan if v is None else v for v in row] for row in bundle.card.check.features],
        dtype=np.float32,
    )
    rng = np.random.default_rng(5)
    rows = np.concatenate([check, rng.normal(check.mean(axis=0), 1.0, (50, check.shape[1]))])
    rows = rows.astype(np.float32)
    trimmed = open_session(bundle.onnx)
    with monkeypatch.context() as patch:  # the session as it was opened before the trim
        patch.setattr(runtime, "release_freed_heap", lambda: False)
        expected = predict(open_session(bundle.onnx), rows)
    np.testing.assert_array_equal(predict(trimmed, rows), expected)
    np.testing.assert_array_equal(model.run(rows), expected)
    np.testing.assert_allclose(
        expected[: len(check)],
        bundle.card.check.output,
        rtol=bundle.card.check.tolerance,
        atol=bundle.card.check.tolerance,
    )
