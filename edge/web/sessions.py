"""Console sessions, their CSRF tokens, and the slowing of failed logins (all in memory).

A session is a random token in an HttpOnly cookie naming a person of the people store; it ends
when unused for ``idle_s``, ``max_s`` after its login, at logout, or when the person's password
changes (their other sessions end). Sessions live in memory: a restart of the gateway logs
everybody out, which a shared phone only gains from. Each session has its own CSRF token, which
every form and every cookie-authenticated ``POST`` carries.

Failed logins are slowed per client address and per account: after the n-th failure in a row,
the next attempt waits ``min(30, 2 ** (n - 1))`` seconds (1, 2, 4 ... 30 s). An attempt before
then is answered at once with 429 and ``Retry-After``, and its password is not even checked. An
account is never locked: its owner can always log in after at most 30 s, and a success forgets
the failures of that address and account. Failures are forgotten after ``FORGET_S`` without one.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

COOKIE: Final = "nbedge_session"
LOGIN_COOKIE: Final = "nbedge_login"
"""Before a login: the CSRF token of the login form (double-submit), nothing else."""
MAX_SESSIONS: Final = 1000
"""The oldest session ends when a new one would exceed this (memory stays bounded)."""


@dataclass(slots=True)
class Session:
    token: str
    person: str
    """The person's name (``edge.people.Person.name``)."""
    csrf: str
    started: float
    used: float


@dataclass(slots=True)
class Sessions:
    idle_s: float
    max_s: float
    monotonic: Callable[[], float] = time.monotonic
    _by_token: OrderedDict[str, Session] = field(default_factory=OrderedDict)
    ended_expired: int = 0

    def start(self, person: str) -> Session:
        now = self.monotonic()
        session = Session(secrets.token_urlsafe(32), person, secrets.token_urlsafe(32), now, now)
        self._by_token[session.token] = session
        while len(self._by_token) > MAX_SESSIONS:
            self._by_token.popitem(last=False)
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its use is noted), or ``None``."""
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        now = self.monotonic()
        if now - session.used > self.idle_s or now - session.started > self.max_s:
            del self._by_token[token]
            self.ended_expired += 1
            return None
        session.used = now
        self._by_token.move_to_end(token)
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def end_all(self, person: str, *, keep: str | None = None) -> int:
        """End every session of ``person`` (any case) but ``keep``; how many ended."""
        key = person.casefold()
        ended = [
            token
            for token, session in self._by_token.items()
            if session.person.casefold() == key and token != keep
        ]
        for token in ended:
            del self._by_token[token]
        return len(ended)

    def count(self) -> int:
        return len(self._by_token)


def same_token(expected: str, given: str | None) -> bool:
    """A CSRF token compared in constant time."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


@dataclass(slots=True)
class LoginThrottle:
    """Failed logins per client address and per account; how long the next attempt waits."""

    base_s: float = 1.0
    max_s: float = 30.0
    forget_s: float = 15 * 60.0
    limit: int = 10_000
    monotonic: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)
    refused: int = 0
    """Attempts answered 429 without checking the password."""
    failed: int = 0

    def wait_s(self, address: str, account: str) -> float:
        """Seconds until an attempt from ``address`` on ``account`` is checked (0: now)."""
        now = self.monotonic()
        wait = 0.0
        for key in self._keys(address, account):
            entry = self._failures.get(key)
            if entry is None:
                continue
            if now - entry.last > self.forget_s:
                del self._failures[key]
                continue
            delay = min(self.max_s, self.base_s * 2 ** (entry.count - 1))
            wait = max(wait, entry.last + delay - now)
        return wait

    def refuse(self) -> None:
        self.refused += 1

    def failure(self, address: str, account: str) -> None:
        now = self.monotonic()
        self.failed += 1
        for key in self._keys(address, account):
            entry = self._failures.pop(key, None)
            self._failures[key] = _Failures(1 if entry is None else entry.count + 1, now)
        while len(self._failures) > self.limit:
            self._failures.popitem(last=False)

    def success(self, address: str, account: str) -> None:
        for key in self._keys(address, account):
            self._failures.pop(key, None)

    @staticmethod
    def _keys(address: str, account: str) -> tuple[str, str]:
        return f"address {address}", f"account {account.strip().casefold()[:64]}"
