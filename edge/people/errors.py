"""The errors of ``edge.people``: a change refused, and a people file that cannot be used."""

from __future__ import annotations

from pathlib import Path

from nbedge.errors import NbedgeError


class PeopleError(NbedgeError):
    """A change that cannot be made (unknown person, duplicate, bad name or password): tell the
    user and change nothing."""


class PeopleFileError(PeopleError):
    """The people file cannot be read or holds what this version cannot use. The daemon keeps its
    last good copy; the CLI changes nothing."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")
