"""People with roles on the gateway's local API: viewers, responders and installers.

``PeopleStore`` holds them (``<state_dir>/people.json`` and the configuration's operators) and
answers ``authenticate(token)`` and ``verify_password(name, password)`` with a ``Person``, whose
``role`` is a ``Role`` (viewer < responder < installer, each allowed what the ones below are).
For FastAPI routes, ``edge.people.deps.require(Role.RESPONDER)`` is a dependency that gives the
person or answers 401/403. ``nbedge users`` (``edge.people.commands``) manages them.
docs/people.md says how it works and why.
"""

from edge.people.errors import PeopleError, PeopleFileError
from edge.people.passwords import PasswordHash
from edge.people.person import Person, Role, Token
from edge.people.store import PEOPLE_FILE, PeopleStore

__all__ = [
    "PEOPLE_FILE",
    "PasswordHash",
    "PeopleError",
    "PeopleFileError",
    "PeopleStore",
    "Person",
    "Role",
    "Token",
]
