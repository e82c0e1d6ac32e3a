"""Model bundles: an ONNX file, its model card and a signature, written and verified.

A bundle is a folder::

    demand/
        model.onnx    the model (one float32 input ``features`` [N, F], one float output)
        card.json     the model card (:class:`ModelCard`): inputs, feature version, training data,
                      evaluation, the sha256 of model.onnx, and a check vector
        card.sig      ``ed25519 <key id> <base64 signature of the exact bytes of card.json>``

The card carries the sha256 of ``model.onnx``, so the signature over the card covers the model.
A gateway accepts a bundle only when every check passes (:func:`load_bundle`):

1. the three files exist and the card parses;
2. the sha256 of ``model.onnx`` equals the card's;
3. the signature verifies with one of the trusted public keys (the project's release key shipped
   in ``models/keys/`` and the keys of ``[models] trusted_keys`` in the gateway's config);
4. the card's ``feature_version`` is the one this gateway's feature code computes: a model trained
   on other features would be fed columns it does not know.

Loading it into onnxruntime and running the card's check vector (rows of features and the outputs
the model gave at training) is the runtime's part (:mod:`models.runtime`).

Keys are Ed25519 (the ``cryptography`` package). A public key is written as one line,
``ed25519:<base64 of the 32 raw bytes>``; its id is the first 16 hex digits of its sha256. Private
keys are PKCS #8 PEM files, mode 0600, and never belong in the repository.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nbedge.errors import ModelRejected

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
SIGNATURE_FILE = "card.sig"
KEYS_DIR = Path(__file__).parent / "keys"
_KEY_PREFIX = "ed25519:"


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """What a training entry point returns: the ONNX bytes and the card's content.

    ``card`` holds ``kind``, ``feature_version``, ``inputs`` (feature names in column order),
    ``output``, ``training_data``, ``evaluation``, ``parameters`` and ``limitations``; the bundle
    writer adds the name, the sha256 of the ONNX file and the check vector.
    """

    name: str
    onnx: bytes
    card: dict[str, Any] = field(default_factory=dict)


class CheckVector(BaseModel):
    """Feature rows and the outputs the model gave for them when the bundle was written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: list[list[float | None]]  # None: a missing feature (NaN)
    output: list[float]
    tolerance: float = 1e-4


class ModelCard(BaseModel):
    """The card of a bundle: what the model is, what it needs and how good it was."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    description: str = ""
    version: str = Field(min_length=1)
    feature_version: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=1)
    inputs: list[str] = Field(min_length=1)
    output: str
    training_data: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    limitations: list[str] = Field(default_factory=list)
    created_with: dict[str, str] = Field(default_factory=dict)
    check: CheckVector


@dataclass(frozen=True, slots=True)
class Bundle:
    """A bundle that passed :func:`load_bundle`'s checks (not yet loaded into onnxruntime)."""

    path: Path
    card: ModelCard
    onnx: bytes
    key_id: str

    @property
    def label(self) -> str:
        return f"{self.card.name} {self.card.version} ({self.card.sha256[:12]})"


# -- keys


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_text(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its one-line form ``ed25519:<base64>``; ValueError if malformed."""
    text = text.strip()
    if not text.startswith(_KEY_PREFIX):
        raise ValueError(f"a public key starts with {_KEY_PREFIX!r}")
    try:
        raw = base64.b64decode(text.removeprefix(_KEY_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"public key is not base64: {exc}") from exc
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def generate_key(private_path: Path) -> str:
    """Write a new private key (PEM, mode 0600) and return its public key's one-line form."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return public_key_text(private.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{path} is not an Ed25519 private key")
    return key


def shipped_keys() -> list[Ed25519PublicKey]:
    """The project's release keys (``models/keys/*.pub``)."""
    return [parse_public_key(p.read_text()) for p in sorted(KEYS_DIR.glob("*.pub"))]


def trusted_keys(extra: Iterable[str] = ()) -> dict[str, Ed25519PublicKey]:
    """Key id -> key: the shipped release keys and the one-line keys in ``extra`` (config)."""
    keys = shipped_keys() + [parse_public_key(text) for text in extra]
    return {key_id(key): key for key in keys}


# -- writing


def card_bytes(card: ModelCard) -> bytes:
    """The card as written: keys sorted, two-space indent, final newline (stable bytes)."""
    data = card.model_dump(mode="json")
    return (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def sign(card_json: bytes, private: Ed25519PrivateKey) -> str:
    signature = base64.b64encode(private.sign(card_json)).decode("ascii")
    return f"ed25519 {key_id(private.public_key())} {signature}\n"


def build_card(
    trained: TrainedModel,
    *,
    version: str,
    check_features: Sequence[Sequence[float]],
    check_output: Sequence[float],
    created_with: Mapping[str, str] | None = None,
) -> ModelCard:
    """The card of ``trained``: its content plus name, version, sha256, size and check vector."""
    content = dict(trained.card)
    content.update(
        name=trained.name,
        version=version,
        sha256=hashlib.sha256(trained.onnx).hexdigest(),
        size_bytes=len(trained.onnx),
        created_with=dict(created_with or {}),
        check=CheckVector(
            features=[[None if v != v else float(v) for v in row] for row in check_features],
            output=[float(v) for v in check_output],
        ),
    )
    return ModelCard.model_validate(content)


def write_bundle(
    folder: Path, onnx: bytes, card: ModelCard, private: Ed25519PrivateKey | None = None
) -> Path:
    """Write the bundle into ``folder`` (created); signed when a private key is given.

    The files are written to a sibling temporary folder that is then renamed into place, so a
    gateway watching ``folder`` never sees half a bundle.
    """
    if hashlib.sha256(onnx).hexdigest() != card.sha256:
        raise ValueError("the card's sha256 is not that of the ONNX bytes")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    staging.mkdir()
    (staging / MODEL_FILE).write_bytes(onnx)
    card_json = card_bytes(card)
    (staging / CARD_FILE).write_bytes(card_json)
    if private is not None:
        (staging / SIGNATURE_FILE).write_text(sign(card_json, private))
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    if old.exists():
        for child in old.iterdir():
            child.unlink()
        old.rmdir()
    return folder


def sign_bundle(folder: Path, private: Ed25519PrivateKey) -> None:
    """Sign an existing bundle's card (replacing any earlier signature)."""
    card_json = (folder / CARD_FILE).read_bytes()
    (folder / SIGNATURE_FILE).write_text(sign(card_json, private))


# -- verifying


def _verify_signature(folder: Path, card_json: bytes, keys: Mapping[str, Ed25519PublicKey]) -> str:
    try:
        text = (folder / SIGNATURE_FILE).read_text()
    except FileNotFoundError:
        raise ModelRejected(str(folder), f"no {SIGNATURE_FILE}: the bundle is not signed") from None
    parts = text.split()
    if len(parts) != 3 or parts[0] != "ed25519":
        raise ModelRejected(str(folder), f"{SIGNATURE_FILE} is not 'ed25519 <key id> <signature>'")
    _, kid, encoded = parts
    key = keys.get(kid)
    if key is None:
        raise ModelRejected(str(folder), f"signed by key {kid}, which is not trusted")
    try:
        key.verify(base64.b64decode(encoded, validate=True), card_json)
    except (InvalidSignature, binascii.Error):
        raise ModelRejected(str(folder), f"the signature does not verify with key {kid}") from None
    return kid


def load_bundle(
    folder: Path,
    *,
    keys: Mapping[str, Ed25519PublicKey],
    kind: str | None = None,
    feature_version: str | None = None,
) -> Bundle:
    """Read and check the bundle in ``folder``; :class:`ModelRejected` says which check failed."""
    where = str(folder)
    try:
        card_json = (folder / CARD_FILE).read_bytes()
        onnx = (folder / MODEL_FILE).read_bytes()
    except OSError as exc:
        raise ModelRejected(where, f"cannot read the bundle: {exc}") from exc
    kid = _verify_signature(folder, card_json, keys)
    try:
        card = ModelCard.model_validate_json(card_json)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ModelRejected(
            where, f"card.json is invalid at {loc or '<root>'}: {first['msg']}"
        ) from None
    digest = hashlib.sha256(onnx).hexdigest()
    if digest != card.sha256:
        raise ModelRejected(
            where, f"{MODEL_FILE} has sha256 {digest[:12]}, card says {card.sha256[:12]}"
        )
    if kind is not None and card.kind != kind:
        raise ModelRejected(where, f"a {card.kind!r} model where a {kind!r} model belongs")
    if feature_version is not None and card.feature_version != feature_version:
        raise ModelRejected(
            where,
            f"feature version {card.feature_version!r}, this gateway computes {feature_version!r}",
        )
    return Bundle(path=folder, card=card, onnx=onnx, key_id=kid)
