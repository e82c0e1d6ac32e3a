"""Who is asking: a person's bearer token (scripts, the API) or a console session (a browser).

``api_person(role)`` is the dependency of the JSON API: a bearer token, else a session cookie;
a ``POST`` on a session must carry the session's CSRF token in ``X-CSRF-Token`` (or the form's
``csrf`` field). ``page_person(role)`` is the pages' one: without a session it sends the browser
to the login page (``LoginNeeded``), and a role too low is a page saying which role is needed.
Refusals are counted (``auth_failures``, ``forbidden``, ``csrf_refused``) and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edge.people import PeopleStore, Person, Role
from edge.people.deps import AccessGuard
from edge.status import LocalApiStatus
from edge.web.sessions import COOKIE, LoginThrottle, Session, Sessions, same_token

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginNeeded(Exception):
    """A page asked without a live session: the browser goes to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class RoleTooLow(Exception):
    def __init__(self, person: Person, role: Role) -> None:
        super().__init__(str(role))
        self.person = person
        self.role = role


@dataclass(slots=True)
class Access:
    """The people, the sessions and the login throttle of one local app."""

    guard: AccessGuard
    sessions: Sessions
    throttle: LoginThrottle
    csrf_refused: int = 0

    @property
    def people(self) -> PeopleStore:
        return self.guard.store

    def session_of(self, request: Request) -> tuple[Session, Person] | None:
        """The request's live session and its person (as the people store has them now)."""
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            return None
        person = self.people.find(session.person)
        if person is None:  # removed since the login
            self.sessions.end(session.token)
            return None
        return session, person

    def check_csrf(self, request: Request, session: Session, given: str | None) -> None:
        if not same_token(session.csrf, given):
            self.csrf_refused += 1
            log.warning(
                "local API: refused, CSRF token missing or wrong",
                extra={"path": request.url.path, "person": session.person},
            )
            raise HTTPException(status_code=403, detail="the form is out of date: reload it")

    def status(self) -> LocalApiStatus:
        return self.guard.status().model_copy(
            update={
                "sessions": self.sessions.count(),
                "sessions_expired": self.sessions.ended_expired,
                "csrf_refused": self.csrf_refused,
                "logins_failed": self.throttle.failed,
                "logins_slowed": self.throttle.refused,
            }
        )


def api_person(role: Role) -> Callable[..., Awaitable[Person]]:
    """The person of an API request (bearer token or session), who must have ``role``."""

    async def person_with_role(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Person:
        access: Access = request.app.state.console_access
        if credentials is None:
            found = access.session_of(request)
            if found is not None:
                session, person = found
                if request.method not in SAFE_METHODS:
                    access.check_csrf(request, session, request.headers.get("x-csrf-token"))
                if person.role < role:
                    raise access.guard._forbidden(request, person, role)
                return person
        token = None if credentials is None else credentials.credentials
        return access.guard.check(request, token, role)

    return person_with_role


def page_person(role: Role) -> Callable[..., Awaitable[tuple[Session, Person]]]:
    """The session and person of a page request, who must have ``role``."""

    async def session_with_role(request: Request) -> tuple[Session, Person]:
        access: Access = request.app.state.console_access
        found = access.session_of(request)
        if found is None:
            raise LoginNeeded(request.url.path)
        if found[1].role < role:
            access.guard.forbidden += 1
            raise RoleTooLow(found[1], role)
        return found

    return session_with_role


async def optional_person(request: Request) -> Person | None:
    """The person of a bearer token or a session, if any (no refusal, nothing counted)."""
    access: Access = request.app.state.console_access
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return access.people.authenticate(token.strip())
    found = access.session_of(request)
    return None if found is None else found[1]
