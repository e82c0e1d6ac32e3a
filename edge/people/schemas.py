"""The people file (``<state_dir>/people.json``): its format, and its translation to ``Person``.

``decode(path, data)`` validates the file's bytes and returns the people in it, or raises
``PeopleFileError`` naming the file and the problem; ``encode(people)`` is its inverse. The file
carries ``"format": 1``; a file of another format is refused, never guessed at. docs/people.md
shows an example.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.people.errors import PeopleError, PeopleFileError
from edge.people.passwords import MAX_MEMORY, PasswordHash, scrypt_memory
from edge.people.person import NAME_PATTERN, Person, Role, Token, check_display, check_label

FORMAT: Final = 1
Hex = Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){16,128}$")]
RoleName = Literal["viewer", "responder", "installer"]
_ROLE_NAMES: dict[Role, RoleName] = {
    Role.VIEWER: "viewer",
    Role.RESPONDER: "responder",
    Role.INSTALLER: "installer",
}


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PasswordEntry(_Entry):
    scheme: Literal["scrypt"]
    n: Annotated[int, Field(ge=2, le=2**20)]
    r: Annotated[int, Field(ge=1, le=64)]
    p: Annotated[int, Field(ge=1, le=16)]
    salt: Hex
    hash: Hex

    @model_validator(mode="after")
    def _bounded(self) -> PasswordEntry:
        if self.n & (self.n - 1):
            raise ValueError(f"scrypt n must be a power of 2, not {self.n}")
        if scrypt_memory(self.n, self.r, self.p) > MAX_MEMORY:
            raise ValueError(f"scrypt parameters need more than {MAX_MEMORY >> 20} MiB")
        return self


class TokenEntry(_Entry):
    label: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    created: AwareDatetime

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        return _checked(check_label, value)


class PersonEntry(_Entry):
    name: Annotated[str, Field(pattern=f"^{NAME_PATTERN.pattern}$")]
    display: str | None = None
    role: RoleName
    password: PasswordEntry | None = None
    tokens: list[TokenEntry] = []
    created: AwareDatetime

    @field_validator("display")
    @classmethod
    def _display(cls, value: str | None) -> str | None:
        return None if value is None else _checked(check_display, value)

    @model_validator(mode="after")
    def _labels_unique(self) -> PersonEntry:
        labels = [token.label for token in self.tokens]
        if len(set(labels)) != len(labels):
            raise ValueError(f"{self.name} has two tokens with one label")
        return self


class PeopleFile(_Entry):
    format: Literal[1]
    people: list[PersonEntry] = []

    @model_validator(mode="after")
    def _unique(self) -> PeopleFile:
        names = [person.name.casefold() for person in self.people]
        if len(set(names)) != len(names):
            raise ValueError("two people have one name (names are compared regardless of case)")
        hashes = [token.sha256 for person in self.people for token in person.tokens]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two tokens have one hash")
        return self


def decode(path: Path, data: bytes) -> tuple[Person, ...]:
    """The people in the file's bytes ``data``; ``PeopleFileError`` if it is not a valid file."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PeopleFileError(path, f"not a JSON file: {exc}") from exc
    if not isinstance(raw, dict) or "format" not in raw:
        raise PeopleFileError(path, 'not a people file (no "format" key)')
    if raw["format"] != FORMAT:
        raise PeopleFileError(
            path,
            f"format {raw['format']!r}, but this nbedge reads format {FORMAT}: "
            "upgrade nbedge, or restore the file from a backup",
        )
    try:
        parsed = PeopleFile.model_validate(raw)
    except ValidationError as exc:
        from edge.config import issues_from_validation

        issues = issues_from_validation(exc)
        shown = "; ".join(str(issue) for issue in issues[:3])
        more = f" (and {len(issues) - 3} more)" if len(issues) > 3 else ""
        raise PeopleFileError(path, shown + more) from exc
    return tuple(_person(entry) for entry in parsed.people)


def encode(people: tuple[Person, ...]) -> bytes:
    """The file's bytes for ``people`` (those of the people file only): JSON, UTF-8, as is."""
    entries = [_entry(person) for person in people if person.source == "people file"]
    document = PeopleFile(format=FORMAT, people=entries).model_dump(mode="json")
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()


def _person(entry: PersonEntry) -> Person:
    password = entry.password
    return Person(
        name=entry.name,
        role=Role[entry.role.upper()],
        display=entry.display,
        password=None
        if password is None
        else PasswordHash(
            password.n,
            password.r,
            password.p,
            bytes.fromhex(password.salt),
            bytes.fromhex(password.hash),
        ),
        tokens=tuple(Token(t.label, t.sha256, t.created.isoformat()) for t in entry.tokens),
        created=entry.created.isoformat(),
    )


def _entry(person: Person) -> PersonEntry:
    password = person.password
    return PersonEntry(
        name=person.name,
        display=person.display,
        role=_ROLE_NAMES[person.role],
        password=None
        if password is None
        else PasswordEntry(
            scheme="scrypt",
            n=password.n,
            r=password.r,
            p=password.p,
            salt=password.salt.hex(),
            hash=password.digest.hex(),
        ),
        tokens=[
            TokenEntry(label=t.label, sha256=t.sha256, created=_time(t.created))
            for t in person.tokens
        ],
        created=_time(person.created),
    )


def _time(text: str | None) -> datetime:
    if text is None:
        raise PeopleError("a person or token of the people file has no creation time")
    return datetime.fromisoformat(text)


def _checked(check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except PeopleError as exc:
        raise ValueError(str(exc)) from None
