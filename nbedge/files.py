"""Writing files that only their owner may read (mode 0600): credentials, keys, the people file.

``write_private(path, data)`` replaces ``path`` atomically: a temporary file in the same folder,
written, flushed to disk (fsync), renamed over ``path``, and the folder synced, so a reader or a
power cut sees the old file or the new one, never half of one. ``exclusive=True`` creates ``path``
instead and raises ``FileExistsError`` when it is there. ``owner=(uid, gid)`` gives the new file
to that user before it appears (a command run as root writing a file the service must read).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private(
    path: Path,
    data: bytes | str,
    *,
    exclusive: bool = False,
    owner: tuple[int, int] | None = None,
) -> None:
    """Write ``data`` (str as UTF-8) to ``path`` with mode 0600; see the module doc."""
    content = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        _fill(fd, content, owner)
    else:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, PRIVATE_MODE)
            _fill(fd, content, owner)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
    _sync_folder(path.parent)


def _fill(fd: int, content: bytes, owner: tuple[int, int] | None) -> None:
    with os.fdopen(fd, "wb") as handle:
        if owner is not None:
            os.fchown(handle.fileno(), *owner)
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    """Make the new directory entry durable too (the rename or the creation)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
