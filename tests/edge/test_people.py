"""People and their roles on real files: scrypt hashes, hashed tokens, re-reading a changed file,
keeping the last good copy of a broken one, the configuration's operators as installers."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.people import PeopleError, PeopleFileError, PeopleStore, Role
from edge.people import passwords as passwords_module
from edge.people.passwords import MAX_PASSWORD, PasswordHash, scrypt_memory
from edge.people.schemas import decode, encode
from edge.schemas import OperatorSection

MIB = 1024 * 1024


class Ticks:
    """A monotonic clock that moves when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_scrypt_takes_16_mib_and_a_hash_verifies_its_password_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert 128 * passwords_module.R * passwords_module.N == 16 * MIB
    assert scrypt_memory(passwords_module.N, passwords_module.R, passwords_module.P) < 17 * MIB
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    hashed = PasswordHash.make("correct horse")
    monkeypatch.setattr(hmac, "compare_digest", spy)

    assert (hashed.n, hashed.r, hashed.p) == (2**14, 8, 1)
    assert len(hashed.salt) == 16
    assert hashed.verify("correct horse")
    assert not hashed.verify("correct horsf")
    assert not hashed.verify("")
    full_width = "correct horse".translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
    assert hashed.verify(full_width), "as some phones type it: the same after NFKC"
    assert len(compared) == 4, "every verification compares with hmac.compare_digest"
    assert PasswordHash.make("correct horse").salt != hashed.salt


def test_a_hash_keeps_its_parameters_so_the_defaults_can_change() -> None:
    weak = PasswordHash.make("an older password", n=2**10, r=4)
    store_back = decode(Path("people.json"), _file_with(weak))
    assert store_back[0].password == weak
    assert store_back[0].password.verify("an older password")


def test_passwords_too_short_empty_or_too_long_are_refused_and_never_match() -> None:
    for bad, message in (("", "empty"), ("short", "shorter than 8"), ("x" * 1025, "longer")):
        with pytest.raises(PeopleError, match=message):
            PasswordHash.make(bad)
    longest = "y" * MAX_PASSWORD
    hashed = PasswordHash.make(longest)
    assert hashed.verify(longest)
    assert not hashed.verify(longest + "y"), "a longer password is not its first 1024 characters"


def test_the_file_holds_hashes_only_with_mode_0600(tmp_path: Path) -> None:
    store = PeopleStore(tmp_path / "people.json")
    person, token = store.add(
        "wang.fang", Role.RESPONDER, display="王芳", password="correct horse", token_label="phone"
    )
    assert token is not None
    path = tmp_path / "people.json"
    text = path.read_text(encoding="utf-8")
    assert path.stat().st_mode & 0o777 == 0o600
    assert token not in text
    assert "correct horse" not in text
    assert hashlib.sha256(token.encode()).hexdigest() in text
    assert "王芳" in text, "the display name is kept readable, not escaped"
    assert json.loads(text)["format"] == 1
    assert list(tmp_path.glob(".people.json.*")) == [tmp_path / ".people.json.lock"]

    again = PeopleStore(path)
    assert again.authenticate(token) == person
    assert again.verify_password("Wang.Fang", "correct horse") == person  # names in any case
    assert again.verify_password("wang.fang", "wrong horse!") is None
    assert again.verify_password("nobody", "correct horse") is None
    assert again.find("WANG.FANG") == person


def test_a_person_without_a_password_cannot_log_in_with_one(tmp_path: Path) -> None:
    store = PeopleStore(tmp_path / "people.json")
    store.add("door.tablet", Role.VIEWER, token_label="tablet")
    assert store.verify_password("door.tablet", "") is None
    assert store.verify_password("door.tablet", "anything at all") is None


def test_a_changed_file_is_seen_at_the_next_check_a_second_later(tmp_path: Path) -> None:
    path = tmp_path / "people.json"
    ticks = Ticks()
    daemon = PeopleStore(path, monotonic=ticks)
    cli = PeopleStore(path)
    assert daemon.people() == ()

    _, token = cli.add("li.lei", Role.INSTALLER, token_label="phone")
    assert token is not None
    ticks.now += 0.5
    assert daemon.authenticate(token) is None, "not checked again within the second"
    ticks.now += 0.5
    assert daemon.authenticate(token) is not None

    cli.remove("li.lei")
    assert daemon.authenticate(token) is not None
    ticks.now += 1.0
    assert daemon.authenticate(token) is None


def test_an_unchanged_file_is_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "people.json"
    PeopleStore(path).add("li.lei", Role.VIEWER)
    reads: list[Path] = []
    real = decode

    def counting(where: Path, data: bytes) -> tuple:  # type: ignore[type-arg]
        reads.append(where)
        return real(where, data)

    monkeypatch.setattr("edge.people.store.schemas.decode", counting)
    ticks = Ticks()
    daemon = PeopleStore(path, monotonic=ticks)
    for _ in range(10):
        daemon.people()
        ticks.now += 1.0
    assert reads == [path]


BROKEN = {
    "not JSON": (b'{"format": 1, "people": [', "not a JSON file"),
    "no format": (b'{"people": []}', 'no "format" key'),
    "newer format": (b'{"format": 2, "people": []}', "format 2, but this nbedge reads format 1"),
    "unknown role": (
        b'{"format": 1, "people": [{"name": "x", "role": "boss", '
        b'"created": "2026-01-01T00:00:00Z"}]}',
        "people.0.role",
    ),
    "bad name": (
        b'{"format": 1, "people": [{"name": "a b", "role": "viewer", '
        b'"created": "2026-01-01T00:00:00Z"}]}',
        "people.0.name",
    ),
    "names in two cases": (
        b'{"format": 1, "people": [{"name": "Ann", "role": "viewer", "created": '
        b'"2026-01-01T00:00:00Z"}, {"name": "ann", "role": "viewer", "created": '
        b'"2026-01-01T00:00:00Z"}]}',
        "two people have one name",
    ),
    "greedy scrypt": (
        b'{"format": 1, "people": [{"name": "x", "role": "viewer", "created": '
        b'"2026-01-01T00:00:00Z", "password": {"scheme": "scrypt", "n": 1048576, "r": 8, '
        b'"p": 1, "salt": "' + b"00" * 16 + b'", "hash": "' + b"00" * 32 + b'"}}]}',
        "more than 64 MiB",
    ),
    "not UTF-8": (b'{"format": 1, "people": [\xff]}', "not a JSON file"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_file_is_refused_naming_the_file_and_the_last_good_copy_stays(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    data, problem = BROKEN[case]
    path = tmp_path / "people.json"
    _, token = PeopleStore(path).add("li.lei", Role.RESPONDER, token_label="phone")
    assert token is not None
    ticks = Ticks()
    daemon = PeopleStore(path, monotonic=ticks)
    assert daemon.authenticate(token) is not None
    caplog.set_level(logging.INFO, logger="edge.people")

    path.write_bytes(data)
    for _ in range(3):
        ticks.now += 1.0
        assert daemon.authenticate(token) is not None, "the last good copy is in use"
    assert daemon.problem is not None
    assert problem in daemon.problem
    refused = [r for r in caplog.records if r.getMessage().startswith("people file refused")]
    assert len(refused) == 1, "logged once, not at every check"
    assert refused[0].levelno == logging.ERROR
    assert refused[0].path == str(path)  # type: ignore[attr-defined]

    with pytest.raises(PeopleFileError, match=f"{path}: .*{problem[:12]}"):
        PeopleStore(path).add("someone", Role.VIEWER)
    with pytest.raises(PeopleFileError):
        PeopleStore(path).load()
    assert path.read_bytes() == data, "nothing changed"

    path.unlink()
    PeopleStore(path).add("li.lei", Role.VIEWER)
    ticks.now += 1.0
    assert daemon.authenticate(token) is None
    assert daemon.problem is None
    assert [p.role for p in daemon.people()] == [Role.VIEWER]


def test_operators_of_the_configuration_are_installers(tmp_path: Path) -> None:
    token = "field-crew-token-0123456789"
    operator = OperatorSection(
        name="field-crew", token_sha256=hashlib.sha256(token.encode()).hexdigest()
    )
    store = PeopleStore(tmp_path / "people.json", [operator])

    person = store.authenticate(token)
    assert person is not None
    assert (person.name, person.role, person.source) == (
        "field-crew",
        Role.INSTALLER,
        "configuration",
    )
    assert store.counts() == {"viewer": 0, "responder": 0, "installer": 1}
    for change in (
        lambda: store.add("Field-Crew", Role.VIEWER),
        lambda: store.remove("field-crew"),
        lambda: store.issue_token("field-crew"),
    ):
        with pytest.raises(PeopleError, match="operator of the configuration"):
            change()
    assert not (tmp_path / "people.json").exists()


@pytest.mark.parametrize(
    "token",
    ["", "x" * 513, "x" * 100_000, "tok en", "tök", "tok\x00en", "tok\nen", "\u200btoken"],
    ids=["empty", "513", "huge", "space", "umlaut", "nul", "newline", "zero-width"],
)
def test_odd_tokens_are_nobodys(tmp_path: Path, token: str) -> None:
    store = PeopleStore(tmp_path / "people.json")
    store.add("li.lei", Role.INSTALLER, token_label="phone")
    before = (tmp_path / "people.json").read_bytes()
    assert store.authenticate(token) is None
    assert (tmp_path / "people.json").read_bytes() == before


def test_roles_are_cumulative_and_spelt_in_lower_case() -> None:
    assert Role.VIEWER < Role.RESPONDER < Role.INSTALLER
    assert Role.parse(" Responder ") is Role.RESPONDER
    assert [str(role) for role in Role] == ["viewer", "responder", "installer"]
    assert Role.INSTALLER.a() == "an installer"
    with pytest.raises(PeopleError, match="unknown role 'admin': choose viewer, responder"):
        Role.parse("admin")


@pytest.mark.parametrize(
    ("display", "message"),
    [("", "empty"), ("a\nb", "control"), ("x" * 65, "longer than 64"), ("a\u200db", "control")],
)
def test_display_names_with_control_characters_or_too_long_are_refused(
    tmp_path: Path, display: str, message: str
) -> None:
    store = PeopleStore(tmp_path / "people.json")
    with pytest.raises(PeopleError, match=message):
        store.add("li.lei", Role.VIEWER, display=display)
    assert not (tmp_path / "people.json").exists()


DISPLAY = st.text(
    alphabet=st.characters(categories=("L", "M", "N", "P", "S")), min_size=1, max_size=64
).filter(lambda text: 0 < len(unicodedata.normalize("NFC", text)) <= 64)


@settings(max_examples=60, deadline=None)
@given(display=DISPLAY, label=DISPLAY)
def test_display_names_and_labels_in_any_script_round_trip(display: str, label: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "people.json"
        added, _ = PeopleStore(path).add("p", Role.VIEWER, display=display, token_label=label)
        (read,) = PeopleStore(path).load()
    assert read == added
    assert read.display == unicodedata.normalize("NFC", display)
    assert read.tokens[0].label == unicodedata.normalize("NFC", label)


def _file_with(password: PasswordHash) -> bytes:
    from edge.people import Person

    return encode(
        (Person("old", Role.VIEWER, password=password, created="2026-01-01T00:00:00+00:00"),)
    )


def test_a_token_is_compared_with_every_stored_hash_in_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PeopleStore(tmp_path / "people.json")
    _, first = store.add("li.lei", Role.INSTALLER, token_label="phone")
    store.issue_token("li.lei", "tablet")
    store.add("wang.fang", Role.VIEWER, token_label="phone")
    assert first is not None
    compared: list[str] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    person = store.authenticate(first)
    assert person is not None
    assert person.name == "li.lei"
    assert sorted(compared) == sorted(t.sha256 for p in store.people() for t in p.tokens)
    assert len(compared) == 3, "no early exit at the first match"
