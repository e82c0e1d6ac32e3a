"""Backup and restore of what a gateway cannot get back by itself: an SD-card swap.

``kept_files(config_path, config)`` lists them: the configuration, the credential
(``uplink.token_file``), the central API's CA (``uplink.ca_file``), the console's certificate and
key, the credential key and the people of the state folder, and device profiles named by path.
``write_backup(out, ...)`` puts those that exist in a tar.gz archive (mode 0600) with their modes
and owners and a manifest; ``restore(archive, force=...)`` checks the configuration in it and
puts each file back at its path, with its mode and owner (by name), refusing to replace a file
that differs unless forced. The store is not kept: docs/installer.md says why.
"""

from __future__ import annotations

import datetime as dt
import grp
import io
import json
import os
import pwd
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

import nbedge
from edge.config import issues_from_validation, load_config
from edge.files import replace_file
from edge.people.store import PEOPLE_FILE
from edge.schemas import GatewayConfig
from firmware_bridge.modbus.profiles import profile_file
from nbedge.errors import ConfigError, ConfigIssue, NbedgeError

__all__ = [
    "MANIFEST",
    "BackupError",
    "Kept",
    "Restored",
    "kept_files",
    "restore",
    "write_backup",
]

MANIFEST = "nbedge-backup.json"
FORMAT = 1
_FILES = "files"  # the archive's folder of kept files, under their absolute paths


class BackupError(NbedgeError):
    """A backup cannot be made, or an archive cannot be restored; the message says why."""


@dataclass(frozen=True, slots=True)
class Kept:
    """A file a gateway keeps across an SD-card swap, and what it is to the gateway."""

    path: Path
    what: str


def kept_files(config_path: Path, config: GatewayConfig) -> list[Kept]:
    """Every file the configuration at ``config_path`` relies on that cannot be made again."""
    from edge.layout import CREDENTIAL_KEY_FILE

    state = config.gateway.state_dir
    files = [Kept(config_path, "configuration")]
    if config.uplink is not None:
        if config.uplink.token_file is not None:
            files.append(Kept(config.uplink.token_file, "credential"))
        if config.uplink.ca_file is not None:
            files.append(Kept(config.uplink.ca_file, "central API's CA"))
    if config.local_api.tls_cert is not None and config.local_api.tls_key is not None:
        files.append(Kept(config.local_api.tls_cert, "console's certificate"))
        files.append(Kept(config.local_api.tls_key, "console's key"))
    files.append(Kept(state / CREDENTIAL_KEY_FILE, "credential key"))
    files.append(Kept(state / PEOPLE_FILE, "people"))
    for device in config.modbus.devices:
        path = profile_file(device.profile)
        if path is not None:
            files.append(Kept(path, f"profile of {device.name}"))
    unique: dict[Path, Kept] = {}
    for kept in files:
        unique.setdefault(kept.path.absolute(), Kept(kept.path.absolute(), kept.what))
    return list(unique.values())


def write_backup(out: Path, config_path: Path) -> tuple[list[Kept], list[Kept]]:
    """Write the archive of ``config_path``'s gateway to ``out`` (mode 0600).

    Returns the files kept and those the configuration names that do not exist (yet).
    ``ConfigError`` for an invalid configuration; ``BackupError`` for a file it cannot read.
    """
    config = load_config(config_path)
    kept: list[Kept] = []
    missing: list[Kept] = []
    for entry in kept_files(config_path, config):
        (kept if entry.path.exists() else missing).append(entry)
    manifest = {
        "format": FORMAT,
        "nbedge": nbedge.__version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gateway": config.gateway.id,
        "site": config.gateway.site,
        "config": str(kept[0].path),
        "files": [{"path": str(entry.path), "what": entry.what} for entry in kept],
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        _add_bytes(archive, MANIFEST, json.dumps(manifest, indent=2).encode())
        folders: set[Path] = set()
        for entry in kept:
            folders.add(entry.path.parent)
            _add_file(archive, entry.path)
        for folder in sorted(folders):
            archive.add(folder, arcname=_member(folder), recursive=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_file(out, buffer.getvalue(), mode=0o600, owner=None)
    return kept, missing


def _member(path: Path) -> str:
    return f"{_FILES}{path}"


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(dt.datetime.now(dt.UTC).timestamp())
    archive.addfile(info, io.BytesIO(data))


def _add_file(archive: tarfile.TarFile, path: Path) -> None:
    try:
        with path.open("rb") as handle:
            info = archive.gettarinfo(fileobj=handle, arcname=_member(path))
            archive.addfile(info, handle)
    except PermissionError as exc:
        raise BackupError(f"cannot read {path}: run nbedge backup as root") from exc


@dataclass(frozen=True, slots=True)
class Restored:
    """What ``restore`` put back, and under which configuration."""

    config: Path
    gateway: str
    site: str
    files: list[Kept]
    unchanged: list[Kept]


def restore(archive_path: Path, *, force: bool = False) -> Restored:
    """Put the files of the backup ``archive_path`` back at their paths, modes and owners.

    Checks everything first and writes nothing when a check fails: ``BackupError`` for an
    archive that is not an nbedge backup, a file that exists and differs (unless ``force``), or
    an owner this machine lacks; ``ConfigError`` when the configuration in it is not valid.
    """
    try:
        archive = tarfile.open(archive_path, "r:gz")  # noqa: SIM115  # closed by the with below
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"cannot read the archive {archive_path}: {exc}") from exc
    with archive:
        manifest = _manifest(archive, archive_path)
        entries = [
            Kept(Path(item["path"]), str(item.get("what", "file"))) for item in manifest["files"]
        ]
        contents = {entry.path: _content(archive, entry.path) for entry in entries}
        config_path = Path(str(manifest.get("config", "")))
        config = _check_config(config_path, contents)
        as_root = os.geteuid() == 0
        changed, unchanged, differ = [], [], []
        for entry in entries:
            data, _info = contents[entry.path]
            if not entry.path.exists():
                changed.append(entry)
            elif entry.path.read_bytes() == data:
                unchanged.append(entry)
            else:
                differ.append(entry)
                changed.append(entry)
        if differ and not force:
            listed = "\n".join(f"  {entry.path} ({entry.what})" for entry in differ)
            raise BackupError(
                f"these files exist and differ from the backup's:\n{listed}\n"
                "stop the gateway, and restore with --force to replace them"
            )
        folders = {
            Path(info.name.removeprefix(_FILES)): info
            for info in archive.getmembers()
            if info.isdir() and info.name.startswith(_FILES + "/")
        }
        # Every owner is looked up before anything is written.
        owners = {path: _owner(info) if as_root else None for path, (_, info) in contents.items()}
        folder_owners = {path: _owner(info) if as_root else None for path, info in folders.items()}
        for entry in changed:
            _make_folders(entry.path.parent, folders, folder_owners)
            data, info = contents[entry.path]
            replace_file(entry.path, data, mode=info.mode & 0o7777, owner=owners[entry.path])
    load_config(config_path)  # and now with the profiles and keys in place
    return Restored(config_path, config.gateway.id, config.gateway.site, changed, unchanged)


def _manifest(archive: tarfile.TarFile, source: Path) -> dict[str, Any]:
    not_ours = BackupError(f"{source} is not a backup made by nbedge backup")
    try:
        member = archive.extractfile(MANIFEST)
    except KeyError as exc:
        raise not_ours from exc
    if member is None:
        raise not_ours
    try:
        manifest = json.loads(member.read())
    except ValueError as exc:
        raise not_ours from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{source}: a backup format this nbedge does not know")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(isinstance(item, dict) for item in files):
        raise not_ours
    for item in files:
        path = PurePosixPath(str(item.get("path", "")))
        if not path.is_absolute() or ".." in path.parts:
            raise BackupError(f"{source}: names {path}, not an absolute path: refused")
    return manifest


def _content(archive: tarfile.TarFile, path: Path) -> tuple[bytes, tarfile.TarInfo]:
    try:
        info = archive.getmember(_member(path))
    except KeyError as exc:
        raise BackupError(f"the archive lacks {path}, which its manifest names") from exc
    member = archive.extractfile(info) if info.isreg() else None
    if member is None:
        raise BackupError(f"{path} in the archive is not a regular file: refused")
    return member.read(), info


def _check_config(path: Path, contents: dict[Path, tuple[bytes, tarfile.TarInfo]]) -> GatewayConfig:
    """The backup's configuration, checked against the schema before anything is written (its
    profile files are checked once they are back in place)."""
    if path not in contents:
        raise BackupError(f"the archive lacks its configuration {path}")
    try:
        raw = tomllib.loads(contents[path][0].decode("utf-8"))
        return GatewayConfig.model_validate(raw)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} in the backup", [ConfigIssue("(syntax)", str(exc))]) from exc
    except ValidationError as exc:
        raise ConfigError(f"{path} in the backup", issues_from_validation(exc)) from exc


def _owner(info: tarfile.TarInfo) -> tuple[int, int]:
    """The owner of a file as this machine knows the name: user ids differ between machines."""
    try:
        uid = pwd.getpwnam(info.uname).pw_uid if info.uname else info.uid
        gid = grp.getgrnam(info.gname).gr_gid if info.gname else info.gid
    except KeyError as exc:
        raise BackupError(
            f"{info.name.removeprefix(_FILES)} belongs to {info.uname}:{info.gname}, whom this "
            "machine does not know: install the nbedge package first (it makes the nbedge user)"
        ) from exc
    return uid, gid


def _make_folders(
    folder: Path,
    archived: dict[Path, tarfile.TarInfo],
    owners: dict[Path, tuple[int, int] | None],
) -> None:
    """Make ``folder`` and its missing parents, with the archived mode and owner where known."""
    if folder.exists():
        return
    _make_folders(folder.parent, archived, owners)
    info = archived.get(folder)
    mode = 0o755 if info is None else info.mode & 0o7777
    folder.mkdir(mode=mode)
    os.chmod(folder, mode)  # mkdir's mode passes through the umask
    owner = owners.get(folder)
    if owner is not None:
        os.chown(folder, *owner)
