"""What ``nbedge provision`` writes on the gateway once the central API gave its credential.

``write_credential(path, token, user)`` writes the credential (mode 0600, atomically) and, run as
root, gives it to the service user, so the gateway can read it whoever ran the command.
``fill_in(parse(text), settings)`` sets ``[gateway] id/site`` and ``[uplink] url/token_file`` (and
``ca_file``) in a configuration file's text, keeping every other line and comment (tomlkit);
``write_config`` checks the result against the configuration schema and replaces the file only
when it is valid, keeping the file's mode and owner.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AbstractTable

from edge.config import parse_config
from edge.files import replace_file
from edge.layout import SERVICE_USER
from nbedge.errors import ConfigError, ConfigIssue

__all__ = [
    "Settings",
    "fill_in",
    "parse",
    "service_owner",
    "write_config",
    "write_credential",
]


@dataclass(frozen=True, slots=True)
class Settings:
    """What a claim settles in the configuration."""

    gateway_id: str
    site_id: str
    url: str
    token_file: Path
    ca_file: Path | None = None

    def lines(self) -> str:
        """The settings as TOML, for a person to copy where the file is not written."""
        ca = f'ca_file = "{self.ca_file}"\n' if self.ca_file is not None else ""
        return (
            f'[gateway]\nid = "{self.gateway_id}"\nsite = "{self.site_id}"\n\n'
            f'[uplink]\nurl = "{self.url}"\ntoken_file = "{self.token_file}"\n{ca}'
        )


def write_credential(path: Path, token: str, user: str = SERVICE_USER) -> str:
    """Write ``token`` to ``path`` (0600, never half-written) and return who owns it.

    Run as root, the file (and a folder made for it) goes to ``user`` when that user exists.
    """
    owner = service_owner(user) if os.geteuid() == 0 else None
    if not path.parent.exists():
        path.parent.mkdir(mode=0o750, parents=True)
        if owner is not None:
            os.chown(path.parent, *owner)
    replace_file(path, (token + "\n").encode(), mode=0o600, owner=owner)
    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a user id without a name
        return str(uid)


def service_owner(user: str) -> tuple[int, int] | None:
    """The user id and group id of ``user``; None when the machine has no such user."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def parse(text: str, *, source: str) -> tomlkit.TOMLDocument:
    """The configuration's text as a document ``fill_in`` can edit, or ``ConfigError``."""
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(source, [ConfigIssue("(syntax)", str(exc))]) from exc


def fill_in(document: tomlkit.TOMLDocument, settings: Settings, *, source: str) -> str:
    """The document's text with the claim's settings in it; every other line and comment as it
    was. ``ConfigError`` when it names ``gateway`` or ``uplink`` as something not a table."""
    gateway = _table(document, "gateway", source)
    gateway["id"] = settings.gateway_id
    gateway["site"] = settings.site_id
    uplink = _table(document, "uplink", source)
    uplink["url"] = settings.url
    uplink["token_file"] = str(settings.token_file)
    if "token" in uplink:  # one credential: the file's, from now on
        del uplink["token"]
    if settings.ca_file is not None:
        uplink["ca_file"] = str(settings.ca_file)
    return tomlkit.dumps(document)


def _table(document: tomlkit.TOMLDocument, name: str, source: str) -> AbstractTable:
    if name not in document:
        document.add(name, tomlkit.table())
    table = document[name]
    if not isinstance(table, AbstractTable):
        raise ConfigError(source, [ConfigIssue(name, "is not a table")])
    return table


def write_config(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` if it is a valid configuration (else ``ConfigError``).

    The new file keeps the old one's mode, owner and group (0640 root:nbedge as packaged), and
    replaces it at once: a reader sees the old file or the new one, never a part.
    """
    parse_config(text, source=str(path))
    old = path.stat()
    owner = (old.st_uid, old.st_gid) if os.geteuid() == 0 else None
    replace_file(path, text.encode(), mode=old.st_mode & 0o7777, owner=owner)
