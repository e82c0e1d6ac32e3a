"""Maintenance mode: while an installer tests sensors, the alerts raised are tests.

``nbedge maintenance on --for 2h`` writes ``<state_dir>/maintenance.json`` (when it began, when it
ends, who, why); the running gateway reads it whenever the file changes. An alert raised while it
lasts carries ``test: true`` in its parameters (on MQTT, in the console and at the central API),
its texts begin with "Test:", and it is never escalated: nobody is paged. It still needs its
usual resolution, so a test leaves no open alert behind unnoticed. The window ends by itself.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.files import replace_file

FILE = "maintenance.json"
MAX_S = 7 * 86_400.0
"""The longest window: a forgotten one ends within a week."""
_DURATION = re.compile(
    r"^(?:([0-9]{1,7})d)?(?:([0-9]{1,7})h)?(?:([0-9]{1,7})m(?:in)?)?(?:([0-9]{1,7})s)?$"
)


class Window(BaseModel):
    """A maintenance window, as the file holds it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    since: float
    until: float
    by: str = Field(default="", max_length=64)
    reason: str = Field(default="", max_length=200)

    def active(self, now: float) -> bool:
        return self.since <= now < self.until


def parse_duration(text: str) -> float:
    """Seconds of ``2h``, ``90m``, ``1h 30m``, ``45s`` or ``1d`` (full-width digits and
    letters too, as a Chinese keyboard types them); ValueError otherwise."""
    match = _DURATION.match(unicodedata.normalize("NFKC", text).lower().replace(" ", ""))
    if not match or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r} (for example 2h, 90m, 1h30m)")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = float(days * 86_400 + hours * 3600 + minutes * 60 + seconds)
    if not 0 < total <= MAX_S:
        raise ValueError(f"a maintenance window lasts more than 0 s and at most 7 days: {text!r}")
    return total


def write(state_dir: Path, window: Window) -> Path:
    """Put ``window`` in force (atomically; readable by the service user)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE
    # Nothing secret: the gateway, whoever it runs as, must read it.
    replace_file(path, window.model_dump_json().encode(), mode=0o644, owner=None)
    return path


def end(state_dir: Path) -> bool:
    """End the window in force; False when there was none."""
    try:
        (state_dir / FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def read(state_dir: Path) -> Window | None:
    """The window in the file (ended or not), or None: no file, or one that cannot be read."""
    try:
        return Window.model_validate_json((state_dir / FILE).read_bytes())
    except (OSError, ValidationError, json.JSONDecodeError):
        return None


@dataclass
class Maintenance:
    """The state folder's window, read again when its file changes."""

    state_dir: Path
    now: Callable[[], float] = time.time
    _signature: tuple[int, int] | None = None
    _window: Window | None = None

    def window(self) -> Window | None:
        """The window in force now, if any."""
        try:
            info = (self.state_dir / FILE).stat()
            signature: tuple[int, int] | None = (info.st_mtime_ns, info.st_size)
        except OSError:
            signature = None
        if signature != self._signature:
            self._signature = signature
            self._window = None if signature is None else read(self.state_dir)
        window = self._window
        return window if window is not None and window.active(self.now()) else None

    def active(self) -> bool:
        return self.window() is not None
