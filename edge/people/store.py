"""The people of a gateway: the people file in its state folder, plus the configuration's operators.

``PeopleStore(path, operators)`` answers ``authenticate(token)`` and ``verify_password(name,
password)`` with a ``Person`` or ``None``; ``people()`` lists everyone. Each answer first checks
the file's ``stat`` (at most once every ``check_interval_s``) and re-reads it when it changed, so
a running daemon sees ``nbedge users`` changes within a second. A file it cannot use is logged
and the last good copy kept. Each ``[[local_api.operators]]`` entry is an installer.

The changes (``add``, ``issue_token``, ``revoke_token``, ``set_password``, ``set_role``,
``remove``) read the file afresh under a lock, refuse a file they cannot use, and write it
atomically with mode 0600. They raise ``PeopleError`` with a message for the user.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from edge.people import schemas
from edge.people.errors import PeopleError, PeopleFileError
from edge.people.passwords import PasswordHash
from edge.people.person import Person, Role, Token, check_display, check_label, check_name
from nbedge.files import write_private

if TYPE_CHECKING:
    from edge.schemas import GatewayConfig, OperatorSection

log = logging.getLogger(__name__)

PEOPLE_FILE = "people.json"
"""In the state folder."""
MAX_FILE_BYTES = 1 << 20
TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{1,512}")
"""What a bearer token may be: visible ASCII, at most 512 characters."""
_Result = TypeVar("_Result")
_Signature = tuple[int, ...]
_Added = tuple[Person, str | None]


def well_formed(token: str) -> bool:
    return TOKEN_PATTERN.fullmatch(token) is not None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PeopleStore:
    def __init__(
        self,
        path: Path,
        operators: Sequence[OperatorSection] = (),
        *,
        check_interval_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``monotonic`` paces the checks of the file; ``wall`` dates new people and tokens."""
        self.path = path
        self.operators = tuple(_installer(operator) for operator in operators)
        self.check_interval_s = check_interval_s
        self._monotonic = monotonic
        self._wall = wall
        self._from_file: tuple[Person, ...] = ()
        self._signature: _Signature | None = None
        self._checked_at: float | None = None
        self.problem: str | None = None
        """Why the file as it is now is not in use (the last good copy is); ``None`` if it is."""

    @classmethod
    def for_gateway(cls, config: GatewayConfig) -> PeopleStore:
        return cls(config.gateway.state_dir / PEOPLE_FILE, config.local_api.operators)

    # --- what the local API asks -----------------------------------------------------------

    def people(self) -> tuple[Person, ...]:
        """The configuration's operators, then the people of the file (re-read if it changed)."""
        self._refresh()
        return self.operators + self._from_file

    def load(self) -> tuple[Person, ...]:
        """Like ``people()``, reading the file now; ``PeopleFileError`` if it cannot be used."""
        self._from_file = self._read()
        self.problem = None
        return self.operators + self._from_file

    def authenticate(self, token: str) -> Person | None:
        """The person holding ``token``, or ``None``. Every stored hash is compared, each in
        constant time."""
        if not well_formed(token):
            return None
        digest = token_sha256(token)
        found: Person | None = None
        for person in self.people():
            for held in person.tokens:
                if hmac.compare_digest(digest, held.sha256) and found is None:
                    found = person
        return found

    def verify_password(self, name: str, password: str) -> Person | None:
        """The person called ``name`` (any case) if ``password`` is theirs, else ``None``. Takes
        as long for an unknown name or a person without a password (a hash is checked all the
        same). Blocking for tens of milliseconds: call it in a thread."""
        person = self.find(name)
        held = person.password if person is not None else None
        matches = (held or _unusable_hash()).verify(password)
        return person if matches and held is not None else None

    def find(self, name: str) -> Person | None:
        key = name.casefold()
        return next((person for person in self.people() if person.key == key), None)

    def in_file(self, name: str) -> Person:
        """The person of the file called ``name`` (any case), or ``PeopleError`` saying why not."""
        return self._in(self._read(), name)

    def counts(self) -> dict[str, int]:
        """How many people have each role (the configuration's operators among installers)."""
        everyone = self.people()
        return {str(role): sum(1 for p in everyone if p.role == role) for role in Role}

    # --- changes (nbedge users) ------------------------------------------------------------

    def add(
        self,
        name: str,
        role: Role,
        *,
        display: str | None = None,
        password: str | None = None,
        token_label: str | None = None,
    ) -> tuple[Person, str | None]:
        """Add a person; with ``token_label``, also a first token, returned once."""
        check_name(name)
        shown = None if display is None else check_display(display)
        hashed = None if password is None else PasswordHash.make(password)
        self._not_an_operator(name)

        def edit(people: tuple[Person, ...]) -> tuple[tuple[Person, ...], _Added]:
            same = [person.name for person in people if person.key == name.casefold()]
            if same:
                raise PeopleError(
                    f"there is already a person called {same[0]!r} (names are compared "
                    "regardless of case)"
                )
            person = Person(name, role, shown, hashed, (), self._now())
            token = None
            if token_label is not None:
                person, token = self._with_token(person, token_label)
            return (*people, person), (person, token)

        return self._change(edit)

    def issue_token(self, name: str, label: str | None = None) -> tuple[Person, str]:
        """A new token for ``name`` (label default ``token-N``), returned once."""

        def edit(people: tuple[Person, ...]) -> tuple[tuple[Person, ...], tuple[Person, str]]:
            person = self._in(people, name)
            changed, token = self._with_token(person, label or _next_label(person))
            return _replaced(people, changed), (changed, token)

        return self._change(edit)

    def revoke_token(self, name: str, label: str) -> Person:
        def edit(people: tuple[Person, ...]) -> tuple[tuple[Person, ...], Person]:
            person = self._in(people, name)
            kept = tuple(token for token in person.tokens if token.label != label)
            if len(kept) == len(person.tokens):
                labels = ", ".join(t.label for t in person.tokens) or "none"
                raise PeopleError(f"{person.name} has no token labelled {label!r} (has: {labels})")
            changed = replace(person, tokens=kept)
            return _replaced(people, changed), changed

        return self._change(edit)

    def set_password(self, name: str, password: str | None) -> Person:
        """Set (or, with ``None``, remove) ``name``'s password."""
        hashed = None if password is None else PasswordHash.make(password)

        def edit(people: tuple[Person, ...]) -> tuple[tuple[Person, ...], Person]:
            changed = replace(self._in(people, name), password=hashed)
            return _replaced(people, changed), changed

        return self._change(edit)

    def set_role(self, name: str, role: Role) -> Person:
        def edit(people: tuple[Person, ...]) -> tuple[tuple[Person, ...], Person]:
            changed = replace(self._in(people, name), role=role)
            return _replaced(people, changed), changed

        return self._change(edit)

    def remove(self, name: str) -> Person:
        def edit(people: tuple[Person, ...]) -> tuple[tuple[Person, ...], Person]:
            gone = self._in(people, name)
            return tuple(p for p in people if p.key != gone.key), gone

        return self._change(edit)

    # --- the file ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        now = self._monotonic()
        if self._checked_at is not None and now - self._checked_at < self.check_interval_s:
            return
        self._checked_at = now
        try:
            signature = _signature(self.path)
        except OSError as exc:
            signature = (-1, exc.errno or 0)
            if signature != self._signature:
                self._refuse(PeopleFileError(self.path, f"cannot read: {exc.strerror}"))
            self._signature = signature
            return
        if signature == self._signature:
            return
        self._signature = signature
        try:
            people = self._read()
        except PeopleFileError as exc:
            self._refuse(exc)
            return
        self._from_file = people
        self.problem = None
        log.info("people file read", extra={"path": str(self.path), "people": len(people)})

    def _refuse(self, exc: PeopleFileError) -> None:
        self.problem = exc.problem
        log.error(
            "people file refused; the last good copy stays in use",
            extra={"path": str(self.path), "problem": exc.problem, "people": len(self._from_file)},
        )

    def _read(self) -> tuple[Person, ...]:
        """The file's people (none if it is missing), or ``PeopleFileError``."""
        try:
            with self.path.open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return ()
        except OSError as exc:
            raise PeopleFileError(self.path, f"cannot read: {exc.strerror}") from exc
        if len(data) > MAX_FILE_BYTES:
            raise PeopleFileError(self.path, f"larger than {MAX_FILE_BYTES >> 20} MiB")
        return schemas.decode(self.path, data)

    def _change(
        self, edit: Callable[[tuple[Person, ...]], tuple[tuple[Person, ...], _Result]]
    ) -> _Result:
        try:
            with self._locked():
                people, result = edit(self._read())
                write_private(self.path, schemas.encode(people), owner=self._owner())
        except OSError as exc:
            raise PeopleFileError(self.path, f"cannot change it: {exc.strerror}") from exc
        self._from_file = people
        self._signature = _signature(self.path)
        self.problem = None
        return result

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One change at a time (two installers at once, each reading then writing)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            owner = self._owner()
            if owner is not None:
                os.fchown(fd, *owner)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _owner(self) -> tuple[int, int] | None:
        """Run as root, the file goes to the state folder's owner (the service reads it)."""
        if os.geteuid() != 0:
            return None
        folder = self.path.parent.stat()
        return folder.st_uid, folder.st_gid

    # --- helpers ----------------------------------------------------------------------------

    def _in(self, people: tuple[Person, ...], name: str) -> Person:
        key = name.casefold()
        for person in people:
            if person.key == key:
                return person
        self._not_an_operator(name)
        raise PeopleError(f"no person called {name!r} (nbedge users list shows who there is)")

    def _not_an_operator(self, name: str) -> None:
        if any(operator.key == name.casefold() for operator in self.operators):
            raise PeopleError(
                f"{name!r} is an operator of the configuration ([[local_api.operators]]): "
                "change it there, or remove it there and restart the gateway before adding "
                "them with nbedge users add"
            )

    def _with_token(self, person: Person, label: str) -> tuple[Person, str]:
        label = check_label(label)
        if any(token.label == label for token in person.tokens):
            raise PeopleError(f"{person.name} already has a token labelled {label!r}")
        token = secrets.token_urlsafe(32)
        held = Token(label, token_sha256(token), self._now())
        return replace(person, tokens=(*person.tokens, held)), token

    def _now(self) -> str:
        return datetime.fromtimestamp(self._wall(), tz=UTC).isoformat(timespec="seconds")


def _signature(path: Path) -> _Signature | None:
    """What tells a changed file (``None``: there is none); ``OSError`` if it cannot be seen."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _installer(operator: OperatorSection) -> Person:
    return Person(
        name=operator.name,
        role=Role.INSTALLER,
        tokens=(Token("configuration", operator.token_sha256, None),),
        source="configuration",
    )


def _replaced(people: tuple[Person, ...], changed: Person) -> tuple[Person, ...]:
    return tuple(changed if person.key == changed.key else person for person in people)


def _next_label(person: Person) -> str:
    labels = {token.label for token in person.tokens}
    return next(f"token-{n}" for n in range(1, len(labels) + 2) if f"token-{n}" not in labels)


@functools.cache
def _unusable_hash() -> PasswordHash:
    """A hash no password matches, checked when there is no real one (same time taken)."""
    return PasswordHash.make(secrets.token_urlsafe(32))
