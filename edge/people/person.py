"""A person who may use the gateway's local API, their role and their tokens (values only).

``Role`` is ordered and cumulative: ``person.role >= Role.RESPONDER`` holds for responders and
installers. ``Person.name`` is a stable identifier (``[A-Za-z0-9][A-Za-z0-9_.-]*``, at most 64
characters) for logs, command records and MQTT user names, unique regardless of case;
``Person.display`` is an optional name in any script (王芳) for pages. ``check_name``,
``check_display`` and ``check_label`` raise ``PeopleError`` with a message for the user.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from edge.people.errors import PeopleError
from edge.people.passwords import PasswordHash

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_TEXT = 64  # characters of a display name or a token label

Source = Literal["people file", "configuration"]


class Role(enum.IntEnum):
    """What a person may do; each role may do all that the roles below it may."""

    VIEWER = 1
    """sees the status, the alerts and the readings"""
    RESPONDER = 2
    """and acts on alerts (acknowledge, resolve)"""
    INSTALLER = 3
    """and commands gates and manages the gateway"""

    def __str__(self) -> str:
        return self.name.lower()

    def a(self) -> str:
        """``an installer``, ``a viewer``."""
        return f"{'an' if self is Role.INSTALLER else 'a'} {self}"

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(str(role) for role in cls)
            raise PeopleError(f"unknown role {text!r}: choose {choices}") from None


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token as the gateway keeps it: only the SHA-256 of the token (hex)."""

    label: str
    sha256: str
    created: str | None
    """ISO 8601 UTC; ``None`` for an operator's token from the configuration."""


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    role: Role
    display: str | None = None
    password: PasswordHash | None = None
    tokens: tuple[Token, ...] = ()
    created: str | None = None
    source: Source = "people file"

    @property
    def key(self) -> str:
        """The name as compared: names are unique regardless of case."""
        return self.name.casefold()

    def shown(self) -> str:
        """``wang.fang (王芳)``, or the name alone."""
        return self.name if self.display is None else f"{self.name} ({self.display})"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise PeopleError(
            f"{name!r} is not a valid name: 1 to 64 letters A-Z, digits, '_', '.' or '-', "
            "starting with a letter or digit (put a name such as 王芳 in --display)"
        )
    return name


def check_display(text: str) -> str:
    return _check_text(text, "display name")


def check_label(text: str) -> str:
    return _check_text(text, "token label")


def _check_text(text: str, what: str) -> str:
    text = unicodedata.normalize("NFC", text.strip())
    if not text:
        raise PeopleError(f"the {what} is empty")
    if len(text) > MAX_TEXT:
        raise PeopleError(f"the {what} is longer than {MAX_TEXT} characters")
    if any(unicodedata.category(char).startswith("C") for char in text):
        raise PeopleError(f"the {what} {text!r} holds control or unassigned characters")
    return text
