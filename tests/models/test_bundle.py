"""Bundles and the runtime slot: every check refuses what it should, swaps and rollbacks work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.bundle import (
    CARD_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    TrainedModel,
    build_card,
    generate_key,
    load_bundle,
    load_private_key,
    parse_public_key,
    shipped_keys,
    sign_bundle,
    trusted_keys,
    write_bundle,
)
from models.runtime import ModelSlot, open_session
from nbedge.errors import InvalidOutput, ModelRejected

skl2onnx = pytest.importorskip("skl2onnx")
linear_model = pytest.importorskip("sklearn.linear_model")

N_FEATURES = 3


def linear_onnx(coef: list[float], intercept: float) -> bytes:
    from skl2onnx.common.data_types import FloatTensorType

    x = np.random.default_rng(0).normal(size=(20, N_FEATURES))
    model = linear_model.LinearRegression().fit(x, x @ np.asarray(coef) + intercept)
    onx = skl2onnx.convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return bytes(onx.SerializeToString())


def trained(coef: list[float], intercept: float = 0.0) -> TrainedModel:
    return TrainedModel(
        name="demand",
        onnx=linear_onnx(coef, intercept),
        card={
            "kind": "demand",
            "feature_version": "test-1",
            "inputs": ["a", "b", "c"],
            "output": "value relative to the level",
            "limitations": ["a test model"],
        },
    )


def make_bundle(
    folder: Path, private_key: Path, coef: list[float], *, check_output: list[float] | None = None
) -> Path:
    model = trained(coef)
    check = np.array([[1.0, 2.0, 3.0], [0.5, float("nan"), 1.0]], dtype=np.float32)
    check[1, 1] = 0.0  # a linear model has no NaN semantics
    output = open_session(model.onnx).run(None, {"features": check})[0].reshape(-1)
    card = build_card(
        model,
        version="t1",
        check_features=check.tolist(),
        check_output=check_output if check_output is not None else output.tolist(),
    )
    return write_bundle(folder, model.onnx, card, load_private_key(private_key))


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    private = tmp_path / "key.pem"
    public = generate_key(private)
    assert private.stat().st_mode & 0o777 == 0o600
    return private, public


def test_a_signed_bundle_loads_and_every_tampering_is_refused(
    tmp_path: Path, key: tuple[Path, str]
) -> None:
    private, public = key
    keys = trusted_keys([public])
    folder = make_bundle(tmp_path / "demand", private, [1.0, 2.0, 3.0])
    bundle = load_bundle(folder, keys=keys, kind="demand", feature_version="test-1")
    assert bundle.card.inputs == ["a", "b", "c"]
    assert bundle.card.size_bytes == len(bundle.onnx)

    with pytest.raises(ModelRejected, match="feature version 'test-1'"):
        load_bundle(folder, keys=keys, feature_version="test-2")
    with pytest.raises(ModelRejected, match="'demand' model where a 'anomaly'"):
        load_bundle(folder, keys=keys, kind="anomaly")
    with pytest.raises(ModelRejected, match="not trusted"):
        load_bundle(folder, keys=trusted_keys())  # only the release keys

    onnx = (folder / MODEL_FILE).read_bytes()
    (folder / MODEL_FILE).write_bytes(onnx[:-1] + bytes([onnx[-1] ^ 1]))
    with pytest.raises(ModelRejected, match="sha256"):
        load_bundle(folder, keys=keys)
    (folder / MODEL_FILE).write_bytes(onnx)

    card = json.loads((folder / CARD_FILE).read_text())
    card["feature_version"] = "test-2"  # a card edited after signing
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelRejected, match="does not verify"):
        load_bundle(folder, keys=keys)
    sign_bundle(folder, load_private_key(private))  # signed again by the key holder: accepted
    assert load_bundle(folder, keys=keys).card.feature_version == "test-2"

    (folder / SIGNATURE_FILE).unlink()
    with pytest.raises(ModelRejected, match="not signed"):
        load_bundle(folder, keys=keys)


def test_public_keys_parse_and_the_release_key_is_shipped() -> None:
    assert len(shipped_keys()) >= 1
    with pytest.raises(ValueError, match="starts with"):
        parse_public_key("ssh-ed25519 AAAA")
    with pytest.raises(ValueError, match="32 bytes"):
        parse_public_key("ed25519:AAAA")


def test_the_slot_swaps_refuses_and_rolls_back(tmp_path: Path, key: tuple[Path, str]) -> None:
    private, public = key
    slot = ModelSlot("demand", "test-1", trusted_keys([public]))
    first = slot.offer(make_bundle(tmp_path / "v1", private, [1.0, 0.0, 0.0]))
    assert slot.run([[2.0, 9.0, 9.0]]) == pytest.approx([2.0], abs=1e-4)

    # a bundle whose check vector differs from what the model computes is refused
    wrong = make_bundle(tmp_path / "bad-check", private, [0.0, 1.0, 0.0], check_output=[7.0, 7.0])
    with pytest.raises(ModelRejected, match="check vector differs"):
        slot.offer(wrong)
    assert slot.active is first

    # a bundle whose ONNX file is not a model is refused by onnxruntime
    garbage = tmp_path / "garbage"
    model = trained([1.0, 1.0, 1.0])
    card = build_card(
        TrainedModel(model.name, b"not a model", model.card),
        version="t2",
        check_features=[[1.0, 1.0, 1.0]],
        check_output=[3.0],
    )
    write_bundle(garbage, b"not a model", card, load_private_key(private))
    with pytest.raises(ModelRejected, match="cannot load"):
        slot.offer(garbage)
    assert slot.active is first

    # a good new bundle swaps in; invalid output later sends the slot back to the first
    second = slot.offer(make_bundle(tmp_path / "v2", private, [0.0, 1.0e30, 0.0]))
    assert slot.active is second
    assert slot.previous is first
    assert slot.run([[1.0, 2.0, 3.0]]) == pytest.approx([2.0e30], rel=1e-3)
    with pytest.raises(InvalidOutput, match="not finite"):
        slot.run([[1.0, 1.0e30, 3.0]])  # overflows float32
    assert slot.active is first
    assert (slot.rollbacks, slot.invalid_outputs) == (1, 1)
    assert slot.run([[5.0, 2.0, 3.0]]) == pytest.approx([5.0], abs=1e-4)
    # the failed bundle is not taken again
    with pytest.raises(ModelRejected, match="refused before"):
        slot.offer(tmp_path / "v2")
    with pytest.raises(InvalidOutput, match="takes \\[N, 3\\]"):
        slot.run([[1.0, 2.0]])
