"""Files the gateway's commands write for the service: whole or not at all, mode and owner first.

``replace_file(path, data, mode=, owner=)`` writes ``data`` beside ``path`` with its mode (and, as
root, its owner) set before a byte is in it, then renames it over ``path``: a reader sees the old
file or the new one, never a part, and never a moment with a wider mode.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["replace_file"]


def replace_file(path: Path, data: bytes, *, mode: int, owner: tuple[int, int] | None) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` and ``owner`` (uid, gid) or the
    caller's."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
