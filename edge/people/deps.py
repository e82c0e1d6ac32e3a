"""FastAPI dependencies for the people of the local API.

``install(app, store)`` puts an ``AccessGuard`` on ``app.state.access``; then, in a route,
``who: Annotated[Person, Depends(require(Role.INSTALLER))]`` gives the person whose bearer token
came with the request. No token, or one that is nobody's: 401 (``auth_failures``); a person
whose role is too low: 403, naming the role needed (``forbidden``). Both are counted and logged,
never with the token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edge.people.person import Person, Role
from edge.people.store import PeopleStore, well_formed
from edge.status import LocalApiStatus

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False)


class AccessGuard:
    """The people store of an app, and the count of refused requests."""

    def __init__(self, store: PeopleStore) -> None:
        self.store = store
        self.auth_failures = 0
        self.forbidden = 0

    def status(self) -> LocalApiStatus:
        """The people by role and the requests refused (``/api/status`` -> ``local_api``)."""
        return LocalApiStatus(
            people=self.store.counts(),
            from_configuration=len(self.store.operators),
            people_file_problem=self.store.problem,
            auth_failures=self.auth_failures,
            forbidden=self.forbidden,
        )

    def check(self, request: Request, token: str | None, role: Role) -> Person:
        """The person holding ``token`` if their role is at least ``role``; else 401 or 403."""
        if token is None:
            reason = "no bearer token"
        elif not well_formed(token):
            reason = "malformed bearer token"
        else:
            person = self.store.authenticate(token)
            if person is None:
                reason = "unknown bearer token"
            elif person.role < role:
                raise self._forbidden(request, person, role)
            else:
                return person
        raise self._unauthenticated(request, reason)

    def _unauthenticated(self, request: Request, reason: str) -> HTTPException:
        self.auth_failures += 1
        log.warning(
            "local API: refused, no valid token",
            extra={
                "reason": reason,
                "path": request.url.path,
                "client": request.client.host if request.client else None,
                "auth_failures": self.auth_failures,
            },
        )
        return HTTPException(
            status_code=401,
            detail="a bearer token of a person of this gateway is required",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def _forbidden(self, request: Request, person: Person, role: Role) -> HTTPException:
        self.forbidden += 1
        log.warning(
            "local API: refused, role too low",
            extra={
                "person": person.name,
                "role": str(person.role),
                "needed": str(role),
                "path": request.url.path,
                "forbidden": self.forbidden,
            },
        )
        return HTTPException(
            status_code=403,
            detail=f"this needs the {role} role; {person.name} is {person.role.a()}",
        )


def install(app: FastAPI, store: PeopleStore) -> AccessGuard:
    guard = AccessGuard(store)
    app.state.access = guard
    return guard


def require(role: Role) -> Callable[..., Awaitable[Person]]:
    """A dependency giving the person of the request, who must have ``role`` or a higher one."""

    async def person_with_role(  # async: it runs in the event loop, where the store lives
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Person:
        guard: AccessGuard = request.app.state.access
        token = None if credentials is None else credentials.credentials
        return guard.check(request, token, role)

    return person_with_role
