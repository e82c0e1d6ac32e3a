"""The Debian package: ``make deb`` builds it, and ``dpkg`` installs, upgrades, removes and purges
it in a throwaway root.

The throwaway root is this machine seen through overlays: in a private mount namespace, /etc,
/var, /usr and /opt are overlay mounts whose writes land in the test's folder, so the real
``dpkg`` and the package's maintainer scripts run as on a fresh install, and the machine's own
files, users and package database are left as they were. Building and installing need root (the
mount namespace); CI is root, elsewhere these tests skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbedge import __version__
from tests.conftest import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging" / "deb"
OVERLAID = ("etc", "var", "usr", "opt")
CONFIG = "/etc/nbedge/gateway.toml"
STATE = "/var/lib/nbedge"


def _why_no_throwaway_root() -> str | None:
    """None when this machine can build the package and mount a throwaway root; else why not."""
    for tool in ("dpkg", "dpkg-deb", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "building and installing the package need root (a private mount namespace)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"no private mount namespace here: {probe.stderr.strip()}"
    return None


def _need_throwaway_root() -> None:
    reason = _why_no_throwaway_root()
    if reason is None:
        return
    if os.environ.get("CI"):  # CI is root on Debian: there, a missing piece is a failure
        pytest.fail(f"the package cannot be tested: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class ThrowawayRoot:
    """This machine with every write to /etc, /var, /usr and /opt kept in ``folder``."""

    folder: Path

    def run(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``script`` (sh) inside the throwaway root; its changes persist to the next run."""
        mounts = []
        for name in OVERLAID:
            upper, work = self.folder / "upper" / name, self.folder / "work" / name
            upper.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True, exist_ok=True)
            mounts.append(
                f"mount -t overlay overlay -o lowerdir=/{name},upperdir={upper},workdir={work}"
                f" /{name}"
            )
        result = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-euc",
                "\n".join(mounts) + "\n" + script,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"},
        )
        if check:
            assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
        return result


def build(out: Path) -> Path:
    env = {**os.environ, "DEB_OUT": str(out), "VENV": str(Path(sys.prefix))}
    built = subprocess.run(
        ["sh", str(ROOT / "scripts" / "build-deb.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
        cwd=ROOT,
    )
    assert built.returncode == 0, built.stderr
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    package = out / f"nbedge_{__version__}_{arch}.deb"
    assert package.is_file(), built.stdout
    return package


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_throwaway_root()
    return build(tmp_path_factory.mktemp("deb"))


def deb(*args: str) -> str:
    return subprocess.run(
        ["dpkg-deb", *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout


def field(info: str, name: str) -> str:
    match = re.search(rf"^ {name}: (.*)$", info, re.MULTILINE)
    assert match is not None, f"no {name} in the control file"
    return match.group(1)


def entries(package: Path) -> dict[str, tuple[str, str]]:
    """Path -> (mode string, owner/group) of every file in the package."""
    listing: dict[str, tuple[str, str]] = {}
    for line in deb("--contents", str(package)).splitlines():
        mode, owner, _size, _date, _time, path, *_link = line.split()
        listing[path.removeprefix(".")] = (mode, owner)
    return listing


@pytest.mark.parametrize("script", ["postinst", "prerm", "postrm"])
def test_maintainer_scripts_parse_and_are_executable(script: str) -> None:
    path = PACKAGING / script
    assert os.access(path, os.X_OK)
    for shell in ("sh", "dash", "bash"):
        if shutil.which(shell):
            checked = subprocess.run([shell, "-n", str(path)], capture_output=True, check=False)
            assert checked.returncode == 0, checked.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)  # a first build downloads the wheels
def test_the_package_holds_the_gateway_and_nothing_of_the_central_api(package: Path) -> None:
    info = deb("--info", str(package))
    assert field(info, "Package") == "nbedge"
    assert field(info, "Version") == __version__
    depends = [d.strip() for d in field(info, "Depends").split(",")]
    assert f"python{sys.version_info.major}.{sys.version_info.minor}" in depends
    assert "libc6" in depends
    files = entries(package)
    assert files["/etc/nbedge/gateway.toml"] == ("-rw-r-----", "root/root")
    assert files["/lib/systemd/system/nbedge-gateway.service"][0] == "-rw-r--r--"
    assert "/lib/systemd/system/nbedge-central.service" not in files  # the gateway only
    assert "/usr/lib/systemd/journald.conf.d/nbedge.conf" in files
    assert files["/usr/bin/nbedge"][0].startswith("l")
    assert "/opt/nbedge/bin/nbedge" in files
    assert all(owner == "root/root" for _mode, owner in files.values())
    site = f"/opt/nbedge/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    distributions = {
        path.removeprefix(site + "/").split("-")[0].lower()
        for path in files
        if path.startswith(site) and path.endswith(".dist-info/")
    }
    assert {"nbedge", "onnxruntime", "pymodbus", "aiomqtt", "fastapi"} <= distributions
    extras = {"sqlalchemy", "alembic", "psycopg", "scikit_learn", "skl2onnx", "pytest", "mypy"}
    assert distributions & extras == set()

    control = Path(package.parent / "control")
    subprocess.run(["dpkg-deb", "--control", str(package), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == [CONFIG]
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(control / script, os.X_OK)
        assert subprocess.run(["sh", "-n", str(control / script)], check=False).returncode == 0
    shipped = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(package)], capture_output=True, check=True
    ).stdout
    unit = (ROOT / "systemd" / "nbedge-gateway.service").read_bytes()
    assert unit in shipped  # the unit tests/edge/test_systemd.py checks is the one shipped


@pytest.fixture
def root(tmp_path: Path) -> Iterator[ThrowawayRoot]:
    _need_throwaway_root()
    yield ThrowawayRoot(tmp_path / "root")
    shutil.rmtree(tmp_path / "root", ignore_errors=True)  # an installed package: 300 MB


def test_the_throwaway_root_leaves_the_machine_alone(root: ThrowawayRoot) -> None:
    marker = "/etc/nbedge-throwaway-root-probe"
    root.run(f"touch {marker} && test -e {marker}")
    assert not Path(marker).exists()
    assert root.run(f"test -e {marker}").returncode == 0  # kept for the next step


def installed(root: ThrowawayRoot, command: str) -> str:
    return root.run(command).stdout.strip()


@pytest.mark.slow
@pytest.mark.timeout(900)  # a first build downloads the wheels
def test_install_upgrade_remove_purge(package: Path, root: ThrowawayRoot, tmp_path: Path) -> None:
    """An installer's whole path with the real dpkg: what each step keeps and what it removes."""
    had_bluetooth = root.run("getent group bluetooth", check=False).returncode == 0
    assert not had_bluetooth, "the first install is on a machine without a bluetooth group"

    apt = "apt-get install --yes --no-install-recommends"  # every Depends is here: no download
    root.run(f"{apt} {package}")
    assert installed(root, "nbedge --version") == f"nbedge {__version__}"
    central = root.run("nbedge central add-gateway --site s --gateway g", check=False)
    assert central.returncode == 69  # the package has no central API: it says so
    assert "the central API is not installed here" in central.stderr
    checked = installed(root, f"nbedge config check {CONFIG}")
    assert checked == f"{CONFIG}: ok (gateway gw-0001, site maple-court-12, 1 Modbus device(s))"
    # The service user reads the configuration; nobody else does.
    assert installed(root, f"runuser -u nbedge -- nbedge config check {CONFIG}").startswith(CONFIG)
    assert installed(root, f"stat -c '%a %U:%G' {CONFIG} {STATE}").split("\n") == [
        "640 root:nbedge",
        "750 nbedge:nbedge",
    ]
    groups = installed(root, "id -nG nbedge").split()
    assert "dialout" in groups
    assert "bluetooth" not in groups
    # Every compiled module finds its libraries on this machine: the Depends are enough.
    ldd = "find /opt/nbedge -name '*.so*' -type f -exec ldd {} + | grep 'not found' || true"
    missing = installed(root, ldd)
    assert missing == ""
    # Installed, not enabled, not started.
    wants = "/etc/systemd/system/multi-user.target.wants/nbedge-gateway.service"
    assert root.run(f"test -e {wants}", check=False).returncode != 0

    # Provisioned as the installer does, with the central API on loopback: the credential is the
    # service user's, and the packaged configuration is filled in.
    with central_api(tmp_path, "gw-42") as (url, code):
        said = installed(root, f"nbedge provision --central {url} --code {code}")
    assert f"credential written to {STATE}/credential (mode 0600, owner nbedge)" in said
    assert f"{CONFIG}: set gateway.id, gateway.site" in said
    assert installed(root, f"stat -c '%a %U:%G' {STATE}/credential") == "600 nbedge:nbedge"
    assert installed(root, f"runuser -u nbedge -- cat {STATE}/credential")
    assert "gateway gw-42, site maple-12" in installed(root, f"nbedge config check {CONFIG}")
    credential = installed(root, f"cat {STATE}/credential")

    # The configuration and the gateway's state survive a reinstall and an upgrade.
    root.run(f"dpkg --install {package}")
    newer_version = f"{__version__}+1"
    newer = repack(package, tmp_path / "newer", newer_version)
    upgraded = root.run(f"dpkg --install {newer}")
    assert "conffile" not in upgraded.stdout  # no question: the package's own file did not change
    assert installed(root, "dpkg-query -W -f '${Version}' nbedge") == newer_version
    assert "gateway gw-42" in installed(root, f"nbedge config check {CONFIG}")
    assert installed(root, f"cat {STATE}/credential") == credential
    assert installed(root, f"stat -c '%a %U:%G' {CONFIG}") == "640 root:nbedge"
    root.run("nbedge backup /var/tmp/gw-42.tar.gz")

    # Back to the previous package, as docs/upgrades.md says.
    root.run(f"{apt} --allow-downgrades {package}")
    assert installed(root, "nbedge --version") == f"nbedge {__version__}"
    assert "gateway gw-42" in installed(root, f"nbedge config check {CONFIG}")

    # remove: the program goes, the configuration and the state stay.
    root.run("dpkg --remove nbedge")
    gone = root.run("test -e /opt/nbedge/bin/nbedge || test -L /usr/bin/nbedge", check=False)
    assert gone.returncode != 0
    assert installed(root, f"cat {STATE}/credential") == credential
    assert "gw-42" in installed(root, f"cat {CONFIG}")

    # purge: the configuration and the state go; the user stays (docs/installer.md).
    root.run("dpkg --purge nbedge")
    assert root.run(f"test -e {CONFIG} || test -e {STATE}", check=False).returncode != 0
    assert installed(root, f"dpkg-statoverride --list {CONFIG} || true") == ""
    assert root.run("id nbedge", check=False).returncode == 0

    # A new card: the package again, then the backup of the old one.
    root.run(f"dpkg --install {newer}")
    refused = root.run("nbedge restore /var/tmp/gw-42.tar.gz", check=False)
    assert refused.returncode == 1  # the package's fresh configuration differs from the backup's
    root.run("nbedge restore --force /var/tmp/gw-42.tar.gz")
    assert installed(root, f"cat {STATE}/credential") == credential
    assert installed(root, f"stat -c '%a %U:%G' {STATE}/credential {CONFIG}").split("\n") == [
        "600 nbedge:nbedge",
        "640 root:nbedge",
    ]
    assert "gateway gw-42" in installed(root, f"runuser -u nbedge -- nbedge config check {CONFIG}")


@pytest.mark.slow
@pytest.mark.timeout(900)  # a first build downloads the wheels
def test_the_installed_gateway_runs_as_its_user(package: Path, root: ThrowawayRoot) -> None:
    """The package's own gateway, as its unit starts it (user nbedge, the packaged paths): it
    answers on its local API, the package's doctor finds it and the files' modes right, and it
    stops cleanly on SIGTERM."""
    port = free_port()
    config = (
        '[gateway]\nid = "gw-run"\nsite = "site-run"\n\n[mqtt]\nenabled = false\n\n'
        f"[local_api]\nport = {port}\n"
    )
    status = f"http://127.0.0.1:{port}/api/status"
    ran = root.run(
        f"dpkg --install {package} >/dev/null\n"
        f"printf '%s' '{config}' > {CONFIG}\n"
        "setpriv --reuid nbedge --regid nbedge --init-groups -- "
        f"nbedge run --config {CONFIG} >/var/tmp/gateway.log 2>&1 &\n"
        "gateway=$!\n"
        "for _ in $(seq 1 150); do\n"
        f"  /opt/nbedge/bin/python -c \"import httpx; print(httpx.get('{status}').text)\" "
        "2>/dev/null && break\n"
        "  sleep 0.2\n"
        "done\n"
        f"nbedge doctor --config {CONFIG} --json > /var/tmp/doctor.json || true\n"
        "kill -TERM $gateway || true\n"
        "if wait $gateway; then echo stopped cleanly; else echo exit status $?; fi\n"
        f"stat -c '%U:%G' {STATE}/gateway.db || true\n"
        "cat /var/tmp/gateway.log >&2\n",
        check=False,
    )
    doctor = json.loads(root.run("cat /var/tmp/doctor.json").stdout)["checks"]
    said = ran.stdout.strip().split("\n")
    assert any('"gw-run"' in line for line in said), ran.stderr  # its log
    assert "stopped cleanly" in said, ran.stderr
    assert said[-1] == "nbedge:nbedge"
    # nbedge doctor of the package finds the running gateway, and the modes the package gave.
    levels = {(check["check"], check["subject"]): check["level"] for check in doctor}
    assert levels[("config", "")] == "ok"
    assert levels[("daemon", "")] == "ok", doctor
    files = {subject: level for (check, subject), level in levels.items() if check == "files"}
    assert CONFIG in files
    assert set(files.values()) == {"ok"}, doctor


@contextlib.contextmanager
def central_api(tmp_path: Path, gateway: str) -> Iterator[tuple[str, str]]:
    """A central API on loopback (this checkout's, the package has none) and a claim code."""
    nbedge = [sys.executable, "-m", "edge.cli"]
    env = {
        **os.environ,
        "NBEDGE_CENTRAL_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
        "NBEDGE_CENTRAL_PLATFORM_TOKEN": "platform-token-for-tests-0123456789",
    }
    code = subprocess.run(
        [*nbedge, "central", "claim-code", "--site", "maple-12", "--gateway", gateway],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    port = free_port()
    central = subprocess.Popen(
        [*nbedge, "central", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout_s=30)
        yield f"http://127.0.0.1:{port}", code
    finally:
        central.terminate()
        central.wait(10)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a first build downloads the wheels
def test_the_service_user_joins_bluetooth_where_that_group_exists(
    package: Path, root: ThrowawayRoot
) -> None:
    root.run(f"groupadd --system bluetooth && dpkg --install {package}")
    assert {"dialout", "bluetooth"} <= set(installed(root, "id -nG nbedge").split())


def repack(package: Path, folder: Path, version: str) -> Path:
    """The same package under another version: an upgrade without a second build."""
    tree = folder / "tree"
    folder.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--raw-extract", str(package), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    control.write_text(
        re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.MULTILINE)
    )
    out = folder / f"nbedge_{version}.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zzstd", "-z1", "--build", str(tree), str(out)])
    return out


def run(command: Sequence[str]) -> None:
    subprocess.run(command, capture_output=True, timeout=600, check=True)
