"""Real servers for the central API's tests and benchmark: PostgreSQL and uvicorn processes.

- ``postgres_cluster()``: a throw-away PostgreSQL cluster (Debian's postgresql package) in a
  temporary folder, on a free loopback port, fsync off, removed afterwards. PostgreSQL refuses to
  run as root, so as root it runs as the ``postgres`` user (``runuser``) in a folder it owns.
- ``central_process()``: the central API in its own ``uvicorn`` process (or several workers).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from tests.conftest import free_port

MISSING_POSTGRES = (
    "PostgreSQL's server binaries (initdb, pg_ctl) are missing: run `make test`, which installs "
    "the Debian package postgresql, or `sudo apt-get install postgresql`"
)


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are not installed or the cluster did not start."""


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster: superuser ``nbedge``, trust authentication, on 127.0.0.1:``port``."""

    port: int
    user: str = "nbedge"
    host: str = "127.0.0.1"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create ``name`` (a copy of ``template`` if given) and return its URL."""
        sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())
        return self.url(name)


def postgres_bindir() -> Path:
    """The folder of Debian's PostgreSQL server binaries (the newest version installed)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_of)
    on_path = shutil.which("initdb")
    if candidates:
        return Path(candidates[-1]).parent
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable(MISSING_POSTGRES)


def _version_of(initdb: str) -> int:
    version = Path(initdb).parent.parent.name
    return int(version) if version.isdigit() else 0


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Start a throw-away cluster; stop it and delete its files on exit."""
    bindir = postgres_bindir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="nbedge-pg-"))  # in /tmp: postgres can reach it
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    port = free_port()

    def run(*command: str) -> None:
        done = subprocess.run(
            [*as_postgres, *command], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            log = (folder / "log").read_text() if (folder / "log").exists() else ""
            raise PostgresUnavailable(f"{command[0]} failed: {done.stderr}{done.stdout}{log}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "nbedge", "-E", "UTF8")
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run(
            str(bindir / "pg_ctl"),
            *("-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "-t", "30"),
            "start",
        )
        _wait_for_postgres(port)
        yield PostgresCluster(port)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_postgres(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="nbedge", dbname="postgres", connect_timeout=2
            ):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PostgresUnavailable(f"PostgreSQL did not accept connections: {exc}") from exc
            time.sleep(0.05)


@contextlib.contextmanager
def central_process(
    database_url: str, platform_token: str, *, workers: int = 1, port: int | None = None
) -> Iterator[str]:
    """Run the central API in a ``uvicorn`` process on 127.0.0.1; yield its base URL."""
    port = port or free_port()
    env = dict(os.environ) | {
        "NBEDGE_CENTRAL_DATABASE_URL": database_url,
        "NBEDGE_CENTRAL_PLATFORM_TOKEN": platform_token,
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "cloud_sync.central.app:app_from_environment",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        *(["--workers", str(workers)] if workers > 1 else []),
    ]
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url, proc)
        yield base_url
    finally:
        _stop(proc)


def _wait_healthy(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the central API exited with status {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/v1/health", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"the central API at {base_url} was not healthy after {timeout_s} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (uvicorn and its workers), then SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
